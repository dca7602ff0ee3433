#!/usr/bin/env python
"""Benchmark: the overdue sweep fanned out over real Celery workers, against a bare SQL
script that makes the same rows, one bare UPDATE and the naive per-row loop.

Seeds a database of its own (default ``bnpl_bench_seed`` on the local PostgreSQL) with
``--rows`` installments (4 per plan, 2.5 plans per customer) of which 10 % are past due,
then, one measurement after the other in one go, each on a fresh copy of the seed:

- **bare SQL script**: the rows the sweep makes, written by hand in one transaction of five
  statements (``BARE_SWEEP_SQL``): the restore of customers in debt with nothing overdue,
  the plans' bounds, the run's row, then one statement for the installments marked OVERDUE
  with their ``installment.overdue`` events, the first late fees (within each plan's cap),
  a LATE_FEE journal entry per chunk of ``--chunk-plans`` plans and currency with a
  receivable posting per fee and one fee-income posting, the customers into DEBT_USER and
  the run's chunks, done; last the run's counts. What the sweep must leave is computed from
  the seed first, and the same checks hold the script and every sweep to it (so both are
  shown to make the same rows);
- **bare UPDATE** (information): one ``UPDATE … SET status = 'OVERDUE'`` of exactly the
  past-due rows, nothing else (no events, no fees, no customers);
- **the sweep** with each worker count in ``--workers``: ``overdue_sweep(fan_out=True,
  late_fees=True)`` publishes the chunks of ``--chunk-plans`` plans, a task each, to
  ``celery worker --pool=prefork --concurrency=N``, timed until the run is closed by its
  last chunk (every installment marked, with its event, first late fee and ledger entry,
  every customer marked DEBT_USER), then checked as the bare script is;
- **the naive loop** on a sample of ``--sample`` past-due rows: what one writes without
  thinking in sets (load the row, save it, save its customer, create its fee, post the fee,
  record the event, each in autocommit as a task would), timed per row and scaled to all;
- **stale statistics** (docs/SCALING.md): no plan may depend on statistics being fresh after
  a mass change, and autovacuum may be off or not yet round. On a copy the sweep has just
  run on (every past-due installment OVERDUE, its customer DEBT_USER, while the statistics
  still say none is), without ANALYZE between: an **idle sweep** (nothing to do), and a
  **sweep after a mass change** (half the customers in debt pay what is overdue, another
  tenth of the installments fall past due); each timed again on the same rows after
  ``ANALYZE`` (fresh statistics). These sweeps run in this process, one chunk after the
  other (what ``overdue_sweep()`` without workers does); stale must stay within 2x fresh.

Prints the machine's cores and load, the table with the ratios (sweep vs the bare script,
the target being 1.5x, and vs the bare UPDATE, naive vs sweep, N workers vs 1, stale vs
fresh statistics), each refused when other processes used more than a core while a
measurement it depends on ran (bench.machine); exits 1 if a check fails.

    python bench/sweep.py                                  # 1,000,000 installments, 1 and 2 workers
    python bench/sweep.py --rows 4000 --sample 100 --workers 1     # a smoke run
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.autopay import (  # noqa: E402
    add_run_arguments,
    admin,
    checks_table,
    close_connections,
    copy_seed,
    database_name,
    error_lines,
    no_other_worker,
    origination_params,
    origination_sql,
    redis_client,
    scalar,
    seeded_template,
    start_worker,
    stop_worker,
    wait_ready,
    worker_env,
)
from bench.machine import TreeWatch, machine_line, ratio_or_refusal  # noqa: E402

POLL_SECONDS = 0.2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="installments to create (multiple of 4)")
    parser.add_argument("--chunk-plans", type=int, default=10_000, help="plans per sweep chunk (one task each)")
    parser.add_argument("--sample", type=int, default=10_000, help="past-due rows the naive loop is timed on")
    add_run_arguments(parser, "SWEEP", "bnpl_bench", redis_db=6)
    parser.add_argument("--timeout", type=float, default=1800, help="give up on a sweep after this many seconds")
    args = parser.parse_args()
    args.rows -= args.rows % 4
    args.workers = [int(n) for n in args.workers.split(",") if n.strip()]
    if args.rows < 4 or not args.workers or min(args.workers) < 1 or args.sample < 1:
        parser.error("--rows, --sample and every --workers count must be positive")
    return args


SEED_SQL = """
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


def seed(rows: int, today) -> None:
    """The users, plans, installments and origination entries, set-based; vacuumed and analysed."""
    from django.db import connection, transaction

    from ledger.accounts import ledger_accounts

    plans = rows // 4
    customers = max(plans * 2 // 5, 1)
    with transaction.atomic():
        ledger_accounts()
        with connection.cursor() as cursor:
            cursor.execute(
                SEED_SQL + origination_sql(),
                {
                    "customers": customers,
                    "plans": plans,
                    "today": today,
                    **origination_params(),
                },
            )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (FREEZE, ANALYZE)")  # every copy starts with settled pages and statistics


def fresh_copy(args, seed_url: str) -> None:
    """The run database as a new copy of the seed, its Redis empty, the disk quiet."""
    close_connections()
    copy_seed(args.database_url, seed_url)
    redis_client(args.redis_url).flushdb()
    admin(args.database_url, "CHECKPOINT")


def bare_update(today) -> tuple[float, int]:
    """One set-based UPDATE of the past-due rows, nothing else: its time and row count."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE bnpl_installment SET status = 'OVERDUE', overdue_since = %s, updated_at = now() "
            "WHERE status = 'UPCOMING' AND due_date < %s AND amount_paid < amount_due",
            [today, today],
        )
        rows = cursor.rowcount
    return time.perf_counter() - started, rows


# The bare SQL script: the rows the sweep makes, written as one would by hand in one
# transaction, knowing the seed (nothing overdue, no fee, no debtor before; at most one
# past-due installment per plan, so each fee is the first fee within the plan's cap):
# customers in debt with nothing overdue set back (none here), the run's row, then one
# statement for the marks, their events, the fees, one LATE_FEE journal entry per chunk and
# currency with a receivable line per fee and one fee-income line (what each of the sweep's
# chunks posts), the customers into debt and the chunks' rows; the run's counts last.
BARE_STATEMENTS = 5  # the restore, the plans' bounds, the run, the marks and all that follows, the run's counts
BARE_RESTORE_SQL = """
UPDATE accounts_user SET status = 'NORMAL', updated_at = %(now)s
WHERE status = 'DEBT_USER' AND id NOT IN (SELECT customer_id FROM bnpl_installment WHERE status = 'OVERDUE')
"""
BARE_SWEEP_SQL = """
WITH marked AS MATERIALIZED (
  UPDATE bnpl_installment SET status = 'OVERDUE', overdue_since = %(today)s, updated_at = %(now)s
  WHERE status = 'UPCOMING' AND due_date < %(cutoff)s AND amount_paid < amount_due
  RETURNING id, plan_id, sequence, amount_due, amount_paid, due_date, status
), rows AS MATERIALIZED (
  SELECT m.*, p.merchant_id, p.customer_id, p.currency, p.merchant_reference,
         (m.plan_id - %(first)s) / %(size)s AS chunk,
         LEAST(%(first_fee)s::numeric, %(cap_amount)s::numeric,
               floor(p.total_amount * %(cap_percent)s::numeric) / 100) AS fee
  FROM marked m JOIN bnpl_plan p ON p.id = m.plan_id
), events AS (
  INSERT INTO events_event (public_id, merchant_id, type, data, created_at, delivery_status, attempts,
                            next_attempt_at, give_up_at)
  SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), r.merchant_id, 'installment.overdue',
         {event_data}, %(now)s, 'PENDING', 0, %(now)s, %(give_up)s
  FROM rows r ORDER BY r.id
), fees AS (
  INSERT INTO bnpl_latefee (installment_id, plan_id, kind, amount, amount_paid, status, waived_reason, created_at)
  SELECT id, plan_id, 'FIRST', fee, 0, 'DUE', '', %(now)s FROM rows ORDER BY plan_id, sequence
), debtors AS (
  UPDATE accounts_user u SET status = 'DEBT_USER', updated_at = %(now)s
  FROM (SELECT DISTINCT customer_id FROM rows) d WHERE u.id = d.customer_id AND u.status = 'NORMAL'
  RETURNING u.id
), per_chunk AS (
  SELECT chunk, count(*) AS marked FROM rows GROUP BY chunk
), chunks AS (
  INSERT INTO bnpl_sweepchunk (run_id, first_plan_id, last_plan_id, done_at, installments_marked_overdue,
                               late_fees_created)
  SELECT %(run)s, %(first)s + g * %(size)s, LEAST(%(first)s + (g + 1) * %(size)s - 1, %(last)s), %(now)s,
         COALESCE(c.marked, 0), COALESCE(c.marked, 0)
  FROM generate_series(0, (%(last)s - %(first)s) / %(size)s) AS g LEFT JOIN per_chunk c ON c.chunk = g
), entry AS (
  SELECT r.chunk || ' ' || r.currency AS entry_key, 'LATE_FEE' AS kind,
         'Late fees of sweep run ' || %(run)s || ', plans ' || (%(first)s + r.chunk * %(size)s) || '-'
           || LEAST(%(first)s + (r.chunk + 1) * %(size)s - 1, %(last)s) || ': ' || count(*) || ' in ' || r.currency
           AS memo,
         NULL::bigint AS plan_id, %(now)s::timestamptz AS created_at, r.currency, sum(r.fee) AS amount
  FROM rows r GROUP BY r.chunk, r.currency
), legs AS (
  SELECT r.chunk || ' ' || r.currency AS entry_key, %(receivable)s::bigint AS account_id, r.fee AS amount,
         r.currency, r.plan_id, r.customer_id AS party_id, row_number() OVER (ORDER BY r.plan_id, r.sequence)
         AS leg_order
  FROM rows r
  UNION ALL
  SELECT entry_key, %(fee_income)s::bigint, -amount, currency, NULL, NULL, 9223372036854775807 FROM entry
), {ledger_post}
SELECT (SELECT count(*) FROM rows), (SELECT count(*) FROM debtors), (SELECT count(*) FROM per_chunk)
"""


def bare_script(today, chunk_plans: int) -> tuple[float, dict[str, int]]:
    """The bare SQL script (BARE_SWEEP_SQL), in one transaction: its time and counts."""
    from datetime import timedelta

    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from bnpl.event_data import installment_event_sql
    from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME, ledger_account_ids
    from ledger.sql import ledger_post_ctes

    sql = BARE_SWEEP_SQL.replace("{event_data}", installment_event_sql(installment="r", plan="r")).replace(
        "{ledger_post}", ledger_post_ctes(entries="entry", legs="legs")
    )
    accounts = ledger_account_ids()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        now = timezone.now()
        cursor.execute(BARE_RESTORE_SQL, {"now": now})
        restored = cursor.rowcount
        cursor.execute("SELECT min(id), max(id) FROM bnpl_plan")
        first, last = cursor.fetchone()
        chunks = (last - first) // chunk_plans + 1
        cursor.execute(
            "INSERT INTO bnpl_sweeprun (business_date, started_at, duration_ms, late_fees, chunks_total, "
            "installments_marked_overdue, customers_marked_debt, customers_restored, late_fees_created, skipped) "
            "VALUES (%s, %s, 0, true, %s, 0, 0, %s, 0, false) RETURNING id",
            [today, now, chunks, restored],
        )
        (run,) = cursor.fetchone()
        cursor.execute(
            sql,
            {
                "today": today,
                "now": now,
                "cutoff": today - timedelta(days=settings.BNPL_GRACE_DAYS),
                "give_up": now + timedelta(hours=settings.BNPL_WEBHOOK_RETRY_HOURS),
                "first": first,
                "last": last,
                "size": chunk_plans,
                "run": run,
                "first_fee": settings.BNPL_LATE_FEE_FIRST,
                "cap_amount": settings.BNPL_LATE_FEE_CAP_AMOUNT,
                "cap_percent": settings.BNPL_LATE_FEE_CAP_PERCENT,
                "receivable": accounts[CUSTOMER_RECEIVABLE],
                "fee_income": accounts[FEE_INCOME],
            },
        )
        marked, debtors, _ = cursor.fetchone()
        finished = timezone.now()
        cursor.execute(
            "UPDATE bnpl_sweeprun SET installments_marked_overdue = %s, late_fees_created = %s, "
            "customers_marked_debt = %s, finished_at = %s, duration_ms = %s WHERE id = %s",
            [marked, marked, debtors, finished, int((finished - now).total_seconds() * 1000), run],
        )
    return time.perf_counter() - started, {"marked": marked, "debtors": debtors, "restored": restored}


def sweep_with_workers(workers: int, args, today) -> dict:
    """The fanned-out sweep through a worker of ``workers`` processes: time to the run's close."""
    from bnpl.models import SweepRun
    from bnpl.services.sweep import overdue_sweep

    no_other_worker()
    log_path = Path(tempfile.gettempdir()) / f"{database_name(args.database_url)}_sweep_worker_{workers}.log"
    env = worker_env(args.database_url, args.redis_url) | {"BNPL_SWEEP_CHUNK_PLANS": str(args.chunk_plans)}
    process, name = start_worker(workers, env, log_path, prefix="bench-sweep")
    try:
        wait_ready(process, name, log_path)
        watch = TreeWatch(database_name(args.database_url)).start()
        started = time.perf_counter()
        run = overdue_sweep(today=today, late_fees=True, fan_out=True, chunk_plans=args.chunk_plans)
        published = time.perf_counter() - started
        while SweepRun.objects.filter(pk=run.pk, finished_at__isnull=True).exists():
            if time.perf_counter() - started > args.timeout:
                raise SystemExit(f"the sweep did not finish in {args.timeout:.0f} s; worker log {log_path}")
            if process.poll() is not None:
                raise SystemExit(f"worker exited ({process.returncode}); log {log_path}")
            time.sleep(POLL_SECONDS)
        elapsed = time.perf_counter() - started
        watch.stop()
    finally:
        stop_worker(process)
    run.refresh_from_db()
    return {"seconds": elapsed, "publish_s": published, "run": run, "watch": watch, "errors": error_lines(log_path)}


def naive_loop(today, sample: int) -> tuple[float, int]:
    """The per-row way, on the first ``sample`` past-due rows, each write in autocommit as a
    task without a transaction would do it: its time and the rows it did."""
    from django.db.models import F

    from accounts.models import User
    from bnpl.event_data import installment_event_data
    from bnpl.models import Installment, LateFee
    from events.models import Event
    from events.services import event_record
    from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME
    from ledger.models import JournalEntry
    from ledger.services import Leg, ledger_post

    late = (
        Installment.objects.filter(
            status=Installment.Status.UPCOMING, due_date__lt=today, amount_paid__lt=F("amount_due")
        )
        .select_related("plan__customer")
        .order_by("id")[:sample]
    )
    started, done = time.perf_counter(), 0
    for installment in late:
        plan, customer = installment.plan, installment.plan.customer
        installment.status = Installment.Status.OVERDUE
        installment.overdue_since = today
        installment.save(update_fields=["status", "overdue_since", "updated_at"])
        if customer.status != User.Status.DEBT_USER:
            customer.status = User.Status.DEBT_USER
            customer.save(update_fields=["status", "updated_at"])
        fee = LateFee.objects.create(installment=installment, plan=plan, kind=LateFee.Kind.FIRST, amount=10)
        ledger_post(
            kind=JournalEntry.Kind.LATE_FEE,
            plan_id=plan.pk,
            memo=f"Late fee (first) on installment {installment.pk}",
            legs=[
                Leg(CUSTOMER_RECEIVABLE, fee.amount, plan.currency, plan.pk, customer.pk),
                Leg(FEE_INCOME, -fee.amount, plan.currency, plan.pk, customer.pk),
            ],
        )
        event_record(
            merchant_id=plan.merchant_id,
            type=Event.Type.INSTALLMENT_OVERDUE,
            data=installment_event_data(installment, plan),
        )
        done += 1
    return time.perf_counter() - started, done


# What a sweep must leave, computed from the seed before any run (the past-due rows, their
# plans, the chunks): the same expectations hold the bare script and every sweep, so both
# are shown to make the same rows.
EXPECTED_SQL = """
WITH due AS (
  SELECT i.id, i.plan_id, i.customer_id, p.currency,
         LEAST(%(first_fee)s::numeric, %(cap_amount)s::numeric,
               floor(p.total_amount * %(cap_percent)s::numeric) / 100) AS fee
  FROM bnpl_installment i JOIN bnpl_plan p ON p.id = i.plan_id
  WHERE i.status = 'UPCOMING' AND i.due_date < %(cutoff)s AND i.amount_paid < i.amount_due
), bounds AS (SELECT min(id) AS first, max(id) AS last FROM bnpl_plan)
SELECT count(*), COALESCE(sum(id), 0), COALESCE(sum(fee), 0), count(DISTINCT customer_id),
       count(DISTINCT ((plan_id - bounds.first) / %(size)s, currency)), max((bounds.last - bounds.first) / %(size)s + 1)
FROM due CROSS JOIN bounds
"""
CHECKS_SQL = {
    "installments OVERDUE": "SELECT count(*) FROM bnpl_installment WHERE status = 'OVERDUE'",
    "installment.overdue events": "SELECT count(*) FROM events_event WHERE type = 'installment.overdue'",
    "sum of the events' installment ids": """
        SELECT COALESCE(sum((data->>'installment_id')::bigint), 0) FROM events_event
        WHERE type = 'installment.overdue' AND data->>'status' = 'OVERDUE'""",
    "late fees": "SELECT count(*) FROM bnpl_latefee",
    "late fees' amount": "SELECT COALESCE(sum(amount), 0) FROM bnpl_latefee WHERE kind = 'FIRST' AND status = 'DUE'",
    "installments with two first fees": """
        SELECT count(*) FROM (SELECT installment_id FROM bnpl_latefee WHERE kind = 'FIRST'
        GROUP BY installment_id HAVING count(*) > 1) AS twice""",
    "LATE_FEE journal entries": "SELECT count(*) FROM payments_journalentry WHERE kind = 'LATE_FEE'",
    "LATE_FEE postings": """
        SELECT count(*) FROM payments_posting p JOIN payments_journalentry e ON e.id = p.entry_id
        WHERE e.kind = 'LATE_FEE'""",
    "LATE_FEE receivable posted": """
        SELECT COALESCE(sum(p.amount), 0) FROM payments_posting p JOIN payments_journalentry e ON e.id = p.entry_id
        WHERE e.kind = 'LATE_FEE' AND p.amount > 0""",
    "customers DEBT_USER": "SELECT count(*) FROM accounts_user WHERE status = 'DEBT_USER'",
    "customers with an overdue installment": (
        "SELECT count(DISTINCT customer_id) FROM bnpl_installment WHERE status = 'OVERDUE'"
    ),
    "sweep runs closed": "SELECT count(*) FROM bnpl_sweeprun WHERE finished_at IS NOT NULL AND NOT skipped",
    "the run's counts (marked, fees, into debt)": """
        SELECT COALESCE(max(installments_marked_overdue || ', ' || late_fees_created || ', ' || customers_marked_debt),
                        '') FROM bnpl_sweeprun""",
    "chunks done": "SELECT count(*) FROM bnpl_sweepchunk WHERE done_at IS NOT NULL",
    "chunks not done": "SELECT count(*) FROM bnpl_sweepchunk WHERE done_at IS NULL",
    "chunks' marked and fees": """
        SELECT COALESCE(sum(installments_marked_overdue), 0) || ', ' || COALESCE(sum(late_fees_created), 0)
        FROM bnpl_sweepchunk""",
}


def expected_rows(today, chunk_plans: int) -> dict[str, object]:
    """What a sweep of the seed (a fresh copy, nothing run on it) must leave: ``{check: value}``."""
    from datetime import timedelta

    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            EXPECTED_SQL,
            {
                "cutoff": today - timedelta(days=settings.BNPL_GRACE_DAYS),
                "size": chunk_plans,
                "first_fee": settings.BNPL_LATE_FEE_FIRST,
                "cap_amount": settings.BNPL_LATE_FEE_CAP_AMOUNT,
                "cap_percent": settings.BNPL_LATE_FEE_CAP_PERCENT,
            },
        )
        past_due, ids, fees, debtors, entries, chunks = cursor.fetchone()
    return {
        "installments OVERDUE": past_due,
        "installment.overdue events": past_due,
        "sum of the events' installment ids": ids,
        "late fees": past_due,
        "late fees' amount": fees,
        "installments with two first fees": 0,
        "LATE_FEE journal entries": entries,
        "LATE_FEE postings": past_due + entries,
        "LATE_FEE receivable posted": fees,
        "customers DEBT_USER": debtors,
        "customers with an overdue installment": debtors,
        "sweep runs closed": 1,
        "the run's counts (marked, fees, into debt)": f"{past_due}, {past_due}, {debtors}",
        "chunks done": chunks,
        "chunks not done": 0,
        "chunks' marked and fees": f"{past_due}, {past_due}",
    }


def checks(expected: dict[str, object]) -> dict[str, tuple[object, object]]:
    """What a sweep (or the bare script) left behind: ``{check: (found, expected)}``."""
    from ledger.checks import ledger_check

    found = {label: (scalar(sql), expected[label]) for label, sql in CHECKS_SQL.items()}
    found["ledger_check ok"] = (ledger_check(record=False).ok, True)
    return found


# The mass change between two sweeps: half the customers in debt pay everything overdue
# (their installments PAID, nothing else: the ledger is not what is measured here), and
# another tenth of the installments fall past due.
MASS_CHANGE_SQL = """
UPDATE bnpl_installment SET status = 'PAID', amount_paid = amount_due, paid_at = now(), updated_at = now()
WHERE status = 'OVERDUE' AND customer_id %% 2 = 0;
UPDATE bnpl_installment SET due_date = %(today)s::date - 5, updated_at = now()
WHERE status = 'UPCOMING' AND id %% 10 = 5;
"""


def sweep_here(args, today) -> dict:
    """``overdue_sweep()`` without workers (its chunks one after the other in this process):
    its time, its run and the CPU other processes took meanwhile."""
    from bnpl.services.sweep import overdue_sweep

    watch = TreeWatch(database_name(args.database_url)).start()
    started = time.perf_counter()
    run = overdue_sweep(today=today, late_fees=True, chunk_plans=args.chunk_plans)
    elapsed = time.perf_counter() - started
    watch.stop()
    return {"seconds": elapsed, "run": run, "watch": watch}


def analyze() -> float:
    """ANALYZE of the whole database (what the fresh cases add): its time."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return time.perf_counter() - started


def after_mass_change(args, seed_url: str, today) -> None:
    """A new copy of the seed, swept once (the first mass change), then the second one."""
    from django.db import connection

    fresh_copy(args, seed_url)
    sweep_here(args, today)
    with connection.cursor() as cursor:
        cursor.execute(MASS_CHANGE_SQL, {"today": today})


def stale_cases(args, seed_url: str, today) -> dict[str, dict]:
    """The idle sweep and the sweep after a mass change, each on the statistics left from
    the seed and again after ANALYZE: ``{case: {"stale": …, "fresh": …}}``."""
    cases = {}
    fresh_copy(args, seed_url)
    first = sweep_here(args, today)
    print(
        f"  sweep on the seed's statistics, no workers: {first['seconds']:.3f} s "
        f"({first['run'].installments_marked_overdue:,} marked, {first['run'].customers_marked_debt:,} in debt)",
        flush=True,
    )
    stale = sweep_here(args, today)
    analyze_s = analyze()
    cases["idle sweep"] = {"stale": stale, "fresh": sweep_here(args, today), "analyze_s": analyze_s}
    after_mass_change(args, seed_url, today)
    stale = sweep_here(args, today)
    after_mass_change(args, seed_url, today)
    analyze_s = analyze()
    cases["sweep after a mass change"] = {"stale": stale, "fresh": sweep_here(args, today), "analyze_s": analyze_s}
    for case, r in cases.items():
        counts = ", ".join(f"{getattr(r['stale']['run'], count):,} {count}" for count in RUN_COUNTS)
        print(
            f"  {case} ({counts}): {r['stale']['seconds']:.3f} s on stale statistics "
            f"({r['stale']['watch'].describe()}), "
            f"{r['fresh']['seconds']:.3f} s after ANALYZE ({r['analyze_s']:.3f} s; {r['fresh']['watch'].describe()})",
            flush=True,
        )
    return cases


RUN_COUNTS = ("installments_marked_overdue", "late_fees_created", "customers_marked_debt", "customers_restored")


def stale_checks(cases: dict[str, dict]) -> dict[str, dict]:
    """Each case's outcome on stale statistics is the one on fresh statistics, and what the
    case meant to measure: ``{case: {"checks": …, "errors": []}}``."""
    found = {}
    for case, r in cases.items():
        stale, fresh = r["stale"]["run"], r["fresh"]["run"]
        checks = {
            f"{count} the same stale and fresh": (getattr(stale, count) == getattr(fresh, count), True)
            for count in RUN_COUNTS
        }
        # Idle: nothing to do; after the mass change: some of every kind.
        planned = (lambda n: n == 0) if case == "idle sweep" else (lambda n: n > 0)
        checks["counts as the case plans (none idle, some of each after the change)"] = (
            all(planned(getattr(stale, count)) for count in RUN_COUNTS),
            True,
        )
        found[case] = {"checks": checks, "errors": []}
    return found


def main() -> None:
    args = parse_args()

    def seeded():
        from bnpl.schedule import business_today

        today, started = business_today(), time.perf_counter()
        seed(args.rows, today)
        print(f"seeded {args.rows:,} installments in {time.perf_counter() - started:.1f} s", flush=True)
        return today

    print(machine_line(), flush=True)
    seed_url, today = seeded_template(args.database_url, args.redis_url, seeded)

    fresh_copy(args, seed_url)
    expected = expected_rows(today, args.chunk_plans)
    past_due, debtors = expected["installments OVERDUE"], expected["customers DEBT_USER"]
    print(f"past due: {past_due:,} installments ({past_due / args.rows:.1%}) of {debtors:,} customers", flush=True)
    script_watch = TreeWatch(database_name(args.database_url)).start()
    script_s, _ = bare_script(today, args.chunk_plans)
    script_watch.stop()
    script = {"seconds": script_s, "watch": script_watch, "checks": checks(expected), "errors": []}
    print(f"  bare SQL script (the same rows): {script_s:.3f} s ({script_watch.describe()})", flush=True)

    fresh_copy(args, seed_url)
    bare_watch = TreeWatch(database_name(args.database_url)).start()
    bare_s, _ = bare_update(today)
    bare_watch.stop()
    print(f"  bare UPDATE: {bare_s:.3f} s ({bare_watch.describe()})", flush=True)

    sweeps = {}
    for workers in args.workers:
        fresh_copy(args, seed_url)
        result = sweeps[workers] = sweep_with_workers(workers, args, today)
        result["checks"] = checks(expected)
        print(
            f"  sweep, {workers} worker process(es): {result['seconds']:.3f} s ({result['watch'].describe()})",
            flush=True,
        )

    fresh_copy(args, seed_url)
    naive_watch = TreeWatch(database_name(args.database_url)).start()
    naive_s, naive_rows = naive_loop(today, min(args.sample, past_due))
    naive_watch.stop()
    naive_all = naive_s / naive_rows * past_due
    print(f"  naive loop: {naive_rows:,} rows in {naive_s:.3f} s ({naive_watch.describe()})", flush=True)

    cases = stale_cases(args, seed_url, today)
    close_connections()

    first = args.workers[0]
    print()
    print(machine_line(), flush=True)
    print(
        f"| approach ({args.rows:,} installments, {past_due:,} past due, late fees on) | time (s) "
        "| vs bare SQL script | vs one bare UPDATE | naive loop is slower by | other processes (cores) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| bare SQL script: the same rows, {BARE_STATEMENTS} statements in one transaction | {script_s:.3f} | 1.00x "
        f"| {ratio_or_refusal(script_s / bare_s, [bare_watch, script_watch])} | "
        f"| {script_watch.other_cores or 0:.2f} |"
    )
    print(
        f"| one bare set-based UPDATE of the past-due rows (nothing else) | {bare_s:.3f} | | 1.00x | "
        f"| {bare_watch.other_cores or 0:.2f} |"
    )
    vs_script = {}
    for workers, r in sweeps.items():
        chunks = r["run"].chunks_total
        vs_script[workers] = ratio_or_refusal(r["seconds"] / script_s, [script_watch, r["watch"]])
        vs_bare = ratio_or_refusal(r["seconds"] / bare_s, [bare_watch, r["watch"]])
        vs_naive = ratio_or_refusal(naive_all / r["seconds"], [naive_watch, r["watch"]], suffix="x")
        print(
            f"| sweep: {chunks} chunk tasks, {workers} worker process(es) | {r['seconds']:.3f} "
            f"| {vs_script[workers]} | {vs_bare} | {vs_naive} | {r['watch'].other_cores or 0:.2f} |"
        )
    print(
        f"| naive per-row loop, autocommit ({naive_rows:,}-row sample: {naive_s:.2f} s, scaled to "
        f"{past_due:,}) | {naive_all:.1f} | {ratio_or_refusal(naive_all / script_s, [script_watch, naive_watch])} "
        f"| {ratio_or_refusal(naive_all / bare_s, [bare_watch, naive_watch])} | "
        f"| {naive_watch.other_cores or 0:.2f} |"
    )
    print()
    for workers, ratio in vs_script.items():
        print(f"ratio sweep, {workers} worker process(es) / bare SQL script: {ratio} (target <= 1.5x)")
    for workers, r in sweeps.items():
        if workers != first:
            faster = ratio_or_refusal(sweeps[first]["seconds"] / r["seconds"], [sweeps[first]["watch"], r["watch"]])
            print(f"ratio {workers} workers / {first}: {faster} faster")

    print()
    print(
        "| sweep without workers, statistics left as they were (no ANALYZE) | stale (s) | fresh, after ANALYZE (s) "
        "| ANALYZE (s) | stale / fresh (target <= 2x) | other processes (cores) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for case, r in cases.items():
        stale, fresh = r["stale"], r["fresh"]
        ratio = ratio_or_refusal(stale["seconds"] / fresh["seconds"], [stale["watch"], fresh["watch"]])
        print(
            f"| {case} | {stale['seconds']:.3f} | {fresh['seconds']:.3f} | {r['analyze_s']:.3f} | {ratio} "
            f"| {max(stale['watch'].other_cores or 0, fresh['watch'].other_cores or 0):.2f} |"
        )

    ok = checks_table({"bare SQL": script} | {f"{w} worker(s)": r for w, r in sweeps.items()})
    ok &= checks_table(stale_checks(cases))
    print()
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
