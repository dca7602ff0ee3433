#!/usr/bin/env python
"""Benchmark: the set-based overdue sweep against a per-row ORM loop, on the same data.

Creates a database of its own (default ``bnpl_bench`` on the local PostgreSQL), fills it
with ``--rows`` installments (4 per plan, 2.5 plans per customer) of which 10 % are past
due, then times

- the sweep (``bnpl.services.overdue_sweep``): its wall time and number of queries;
- the naive approach: load the past-due installments through the ORM and save each one
  (and its customer) in a loop, in one transaction;

resetting the data between the two, and prints both with their ratio.

    python bench/sweep.py                      # 1,000,000 installments
    python bench/sweep.py --rows 100000
"""

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="installments to create (multiple of 4)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bnpl_bench"),
        help="a PostgreSQL database the benchmark may fill and empty (created if missing)",
    )
    parser.add_argument("--skip-autocommit", action="store_true", help="time only the one-transaction loop")
    parser.add_argument("--repeat", type=int, default=3, help="sweep runs to take the median of")
    return parser.parse_args()


def ensure_database(url: str) -> None:
    import psycopg2

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = psycopg2.connect(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname="postgres",
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if not cursor.fetchone():
            cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


SEED_SQL = """
TRUNCATE events_eventdelivery, events_event, events_notification, refunds_refundevent, refunds_refund,
         payments_paymentallocation, payments_payment,
         payments_idempotencykey, bnpl_reminder, bnpl_latefee, bnpl_installment, bnpl_sweeprun, payments_posting,
         payments_journalentry, bnpl_plan, accounts_user RESTART IDENTITY CASCADE;

INSERT INTO accounts_user (password, is_superuser, username, email, is_staff, is_active, date_joined,
    user_id, full_name, role, status, credit_limit, phone_number, passport_number,
    card_brand, card_first6, card_last4, card_token, webhook_secret, webhook_url, autopay, created_at, updated_at)
SELECT '!', false, 'bench-' || g, '', false, true, now(), 'bench-' || g, '',
       CASE WHEN g = 0 THEN 'MERCHANT' ELSE 'CUSTOMER' END, 'NORMAL', 0, '', '', '', '', '', '', '', '', false,
       now(), now()
FROM generate_series(0, %(customers)s) AS g;

INSERT INTO bnpl_plan (customer_id, merchant_id, total_amount, currency, installment_count, frequency,
    status, merchant_reference, purchase_date, created_at, updated_at)
SELECT 2 + (p %% %(customers)s), 1, 400.00, 'USD', 4, 'MONTHLY', 'ACTIVE', '', %(today)s, now(), now()
FROM generate_series(0, %(plans)s - 1) AS p;

-- Every tenth installment is past due, the rest fall due later.
INSERT INTO bnpl_installment (plan_id, customer_id, sequence, amount_due, amount_paid, due_date, status,
    created_at, updated_at)
SELECT p.id, p.customer_id, s, 100.00, 0.00,
       CASE WHEN (p.id * 4 + s) %% 10 = 0 THEN %(today)s::date - 5 ELSE %(today)s::date + 30 * s END,
       'UPCOMING', now(), now()
FROM bnpl_plan p CROSS JOIN generate_series(1, 4) AS s;
"""

RESET_SQL = """
UPDATE bnpl_installment SET status = 'UPCOMING', overdue_since = NULL WHERE status = 'OVERDUE';
UPDATE accounts_user SET status = 'NORMAL' WHERE status = 'DEBT_USER';
TRUNCATE bnpl_sweeprun, events_eventdelivery, events_event;
"""


def seed(rows: int, today) -> None:
    from django.db import connection

    plans = rows // 4
    customers = max(plans * 2 // 5, 1)
    with connection.cursor() as cursor:
        cursor.execute(SEED_SQL, {"customers": customers, "plans": plans, "today": today})
    vacuum()


def vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE bnpl_installment")
        cursor.execute("VACUUM ANALYZE accounts_user")


def reset() -> None:
    """Back to the seeded state, vacuumed and checkpointed, so every run starts alike."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(RESET_SQL)
    vacuum()
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")  # no background flush of the reset lands inside a measurement


def state() -> tuple[int, int]:
    from accounts.models import User
    from bnpl.models import Installment

    return Installment.objects.filter(status="OVERDUE").count(), User.objects.filter(status="DEBT_USER").count()


def naive_loop(today, *, atomic: bool) -> None:
    """What one writes without thinking in sets: fetch the late rows, save them one by one.

    ``atomic=False`` is how such a loop runs in a Celery task (Django autocommits each
    save); ``atomic=True`` wraps it in one transaction, the kindest baseline.
    """
    from contextlib import nullcontext

    from django.db import transaction
    from django.db.models import F

    from accounts.models import User
    from bnpl.models import Installment

    with transaction.atomic() if atomic else nullcontext():
        late = Installment.objects.filter(
            status=Installment.Status.UPCOMING, due_date__lt=today, amount_paid__lt=F("amount_due")
        ).select_related("plan__customer")
        for installment in late.iterator(chunk_size=2000):
            installment.status = Installment.Status.OVERDUE
            installment.overdue_since = today
            installment.save(update_fields=["status", "overdue_since", "updated_at"])
            customer = installment.plan.customer
            if customer.status != User.Status.DEBT_USER:
                customer.status = User.Status.DEBT_USER
                customer.save(update_fields=["status", "updated_at"])


def timed(fn) -> tuple[float, int]:
    """Wall time of ``fn()`` and the number of SQL statements it sent."""
    from django.db import connection

    count = 0

    def counting(execute, sql, params, many, context):
        nonlocal count
        count += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        started = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - started
    return elapsed, count


def main() -> None:
    args = parse_args()
    rows = args.rows - args.rows % 4
    ensure_database(args.database_url)
    setup_django(args.database_url)
    from bnpl.schedule import business_today
    from bnpl.services import overdue_sweep

    today = business_today()
    started = time.perf_counter()
    seed(rows, today)
    print(f"seeded {rows:,} installments in {time.perf_counter() - started:.1f} s")

    # One sweep and reset first, unmeasured: afterwards every run (the loops' too) starts
    # from the same reset-and-vacuumed pages, not the freshly loaded ones.
    reset()
    overdue_sweep(today=today, late_fees=False)
    sweeps = []
    for _ in range(args.repeat):
        reset()
        sweeps.append(timed(lambda: overdue_sweep(today=today, late_fees=False)))
        sweep_state = state()
    sweep_s, sweep_q = sorted(sweeps)[len(sweeps) // 2]
    loops = {}
    for label, atomic in (("per-row ORM loop, one transaction", True), ("per-row ORM loop, autocommit", False)):
        if label.endswith("autocommit") and args.skip_autocommit:
            continue
        reset()
        loops[label] = timed(lambda atomic=atomic: naive_loop(today, atomic=atomic))
        if state() != sweep_state:
            raise SystemExit(f"{label} disagrees with the sweep: {state()} vs {sweep_state}")

    overdue, debtors = sweep_state
    runs = ", ".join(f"{t:.2f}" for t, _ in sweeps)
    print(f"past due: {overdue:,} installments ({overdue / rows:.1%}), {debtors:,} customers marked DEBT_USER")
    print()
    print("| approach | time (s) | queries | sweep is faster by |")
    print("|---|---:|---:|---:|")
    print(f"| set-based sweep (median of {len(sweeps)}: {runs}) | {sweep_s:.3f} | {sweep_q} | |")
    for label, (loop_s, loop_q) in loops.items():
        print(f"| {label} | {loop_s:.3f} | {loop_q:,} | {loop_s / sweep_s:.1f}x |")


if __name__ == "__main__":
    main()
