#!/usr/bin/env python
"""Benchmark: autopay through real Celery workers on PostgreSQL, 1 worker process against 2.

Seeds a database of its own (default ``bnpl_bench_autopay_seed`` on the local PostgreSQL)
with ``--rows`` customers, each with autopay on, a card the fake gateway charges, no email
or phone (notifications are SKIPPED) and one ACTIVE plan of 4 installments whose first one
(100.00 of 400.00) falls due today, with its origination entry in the ledger; the merchant
has no webhook URL (events end as NO_ENDPOINT, no HTTP). Then, for each worker count in
``--workers``, one after the other in one go:

- re-creates ``bnpl_bench_autopay`` as a copy of the seed (the ledger is append-only, so a
  copy is the reset) and empties the benchmark's Redis database (queue and results);
- starts ``celery worker --pool=prefork --concurrency=N`` on them and waits for its answer;
- times from ``autopay_run`` (chunks of customers published as a group of tasks) until
  every installment is PAID (polled in the database), and on until the queue is drained:
  nothing queued or in flight (unacked), so the follow-up tasks the charges publish, if
  any (event delivery, notifications), are done too;
- stops the worker (SIGTERM) and checks the outcome: every charge SUCCEEDED, none FAILED or
  PENDING, no installment charged twice, nothing left PENDING, the ledger invariants hold.

Prints the figures with the ratio to the first worker count, and the machine's cores and
load before and after; a ratio is refused when other processes used more than a core while
one of its two runs was measured (bench.machine: rerun on a quiet machine). Exits 1 if a
check fails.

    python bench/autopay.py                     # 100,000 installments, 1 and 2 workers
    python bench/autopay.py --rows 10000 --workers 1,2,4
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import TreeWatch, machine_line, ratio_or_refusal  # noqa: E402

AMOUNT, TOTAL, COUNT = "100.00", "400.00", 4
POLL_SECONDS = 0.5
PROGRESS_SECONDS = 60


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="installments to charge (one customer each)")
    add_run_arguments(parser, "AUTOPAY", "bnpl_bench_autopay", redis_db=5)
    parser.add_argument("--stall-seconds", type=float, default=180, help="give up when nothing moves this long")
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",") if n.strip()]
    if args.rows < 1 or not args.workers or min(args.workers) < 1:
        parser.error("--rows and every --workers count must be positive")
    return args


def add_run_arguments(parser: argparse.ArgumentParser, name: str, database: str, *, redis_db: int) -> None:
    """``--workers``, ``--database-url`` and ``--redis-url`` of a benchmark with real workers
    (defaults from ``BENCH_<name>_DATABASE_URL`` and ``BENCH_<name>_REDIS_URL``)."""
    parser.add_argument("--workers", default="1,2", help="worker process counts to compare, in this order")
    add_store_arguments(parser, f"BENCH_{name}", database, redis_db=redis_db)


def add_store_arguments(parser: argparse.ArgumentParser, prefix: str, database: str, *, redis_db: int) -> None:
    """``--database-url`` and ``--redis-url`` of a run with a PostgreSQL database and a Redis
    database of its own, which it empties first (defaults from ``<prefix>_DATABASE_URL`` and
    ``<prefix>_REDIS_URL``, else ``database`` and ``redis_db`` on this machine's servers)."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get(f"{prefix}_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{database}"),
        help="a PostgreSQL database of this run's own: dropped and created again",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get(f"{prefix}_REDIS_URL", f"redis://127.0.0.1:6379/{redis_db}"),
        help="a Redis database of this run's own: flushed before the run",
    )


def database_name(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    return urlparse(url)._replace(path=f"/{name}").geturl()


def admin(url: str, *statements: str, database: str = "postgres") -> None:
    """Run ``statements`` one by one (autocommit) in ``database`` on the server of ``url``."""
    import psycopg

    parsed = urlparse(url)
    connection = psycopg.connect(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname=database,
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


def close_connections() -> None:
    """Close the benchmark's own connections, so the database can be dropped or copied."""
    from django.db import connections

    connections.close_all()


def create_empty(url: str) -> None:
    """A new, empty database at ``url`` (dropped first if it exists)."""
    name = database_name(url)
    admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')


def copy_seed(url: str, seed_url: str) -> None:
    """Drop the run database and create it again as a copy of the seed."""
    close_connections()
    name, seed = database_name(url), database_name(seed_url)
    admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}" TEMPLATE "{seed}"')


# The benchmarks run the service as production runs it (DEBUG off: Django then keeps no log
# of every statement, whose formatting cost autopay's workers about a third of their time),
# with throw-away keys the production settings accept. The seeds are written with the same
# field key, so the workers read what the seed encrypted.
BENCH_FIELD_KEY = "bench-only-field-encryption-key-0123456789abcdef"
BENCH_SECRET_KEY = "bench-only-secret-key-not-for-production-0123456789abcdefghijklmnop"  # noqa: S105 - a throw-away key for a local benchmark  # nosec B105


def production_env() -> dict[str, str]:
    """The variables that run the service as in production, on this machine (plain HTTP)."""
    return {
        "DEBUG": "False",
        "SECRET_KEY": BENCH_SECRET_KEY,
        "FIELD_ENCRYPTION_KEY": BENCH_FIELD_KEY,
        "SECURE_SSL_REDIRECT": "False",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }


def setup_django(url: str, redis_url: str, *, production: bool = True) -> None:
    """Django (and the Celery app) on the run database and the benchmark's Redis, with
    production's settings (production_env) unless ``production`` is False; migrated."""
    os.environ.update(DATABASE_URL=url, REDIS_URL=redis_url, LOG_LEVEL="WARNING")
    if production:
        os.environ.update(production_env())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # The benchmark's own connection binds parameters itself: its seed and bare scripts send
    # several statements in one execute, which server-side binding refuses. What it measures
    # connects as the environment says (the workers, and the bare script's processes through
    # service_binding), prepared statements included.
    options = settings.DATABASES["default"].setdefault("OPTIONS", {})
    _SERVICE_OPTIONS.update(options)
    options.pop("server_side_binding", None)
    options.pop("prepare_threshold", None)
    call_command("migrate", verbosity=0)


_SERVICE_OPTIONS: dict = {}


def service_binding() -> None:
    """From the next connection on, bind parameters as the service does (server-side, with
    prepared statements, unless the environment says otherwise)."""
    from django.conf import settings

    close_connections()
    settings.DATABASES["default"]["OPTIONS"].update(_SERVICE_OPTIONS)


def seeded_template(url: str, redis_url: str, seed, *, production: bool = True):
    """The seed every run is copied from: a new database at ``url`` (Django set up on it),
    filled by ``seed()``, then renamed ``<name>_seed`` (the ledger is append-only, so a copy
    is the reset). Returns the seed's URL and what ``seed()`` returned. ``production`` as
    setup_django's."""
    seed_url = with_database(url, database_name(url) + "_seed")
    admin(seed_url, f'DROP DATABASE IF EXISTS "{database_name(seed_url)}" WITH (FORCE)')
    create_empty(url)
    setup_django(url, redis_url, production=production)
    seeded = seed()
    close_connections()
    admin(url, f'ALTER DATABASE "{database_name(url)}" RENAME TO "{database_name(seed_url)}"')
    return seed_url, seeded


# One set-based pass: a merchant without webhook URL; customers with autopay on and a card
# the fake gateway charges (last 4 digits 1111), no email or phone; one plan each whose
# first installment is due today; each plan's origination entry (what
# bnpl.services.origination.origination_legs posts: the customer owes the total, the merchant is owed it).
SEED_SQL = """
INSERT INTO accounts_user (password, is_superuser, username, email, is_staff, is_active, date_joined,
    user_id, full_name, role, status, credit_limit, phone_number, passport_number,
    card_brand, card_first6, card_last4, card_token, webhook_secret, webhook_url, autopay, created_at, updated_at)
SELECT '!', false, 'bench-' || g, '', false, true, now(), 'bench-' || g, '',
       CASE WHEN g = 0 THEN 'MERCHANT' ELSE 'CUSTOMER' END, 'NORMAL', 2000.00, '', '',
       CASE WHEN g = 0 THEN '' ELSE 'visa' END, CASE WHEN g = 0 THEN '' ELSE '411111' END,
       CASE WHEN g = 0 THEN '' ELSE '1111' END, CASE WHEN g = 0 THEN '' ELSE 'tok_bench_' || g END,
       '', '', g > 0, now(), now()
FROM generate_series(0, %(customers)s) AS g ORDER BY g;

INSERT INTO bnpl_plan (customer_id, merchant_id, total_amount, currency, installment_count, frequency,
    status, merchant_reference, purchase_date, created_at, updated_at)
SELECT c.id, m.id, %(total)s, %(currency)s, %(count)s, %(frequency)s, 'ACTIVE', 'bench-' || c.id, %(purchase)s,
       now(), now()
FROM accounts_user c CROSS JOIN (SELECT id FROM accounts_user WHERE username = 'bench-0') AS m
WHERE c.role = 'CUSTOMER' ORDER BY c.id;

INSERT INTO bnpl_installment (plan_id, customer_id, sequence, amount_due, amount_paid, due_date, status,
    created_at, updated_at)
SELECT p.id, p.customer_id, d.sequence, %(amount)s, 0.00, d.due_date, 'UPCOMING', now(), now()
FROM bnpl_plan p CROSS JOIN unnest(%(dues)s::date[]) WITH ORDINALITY AS d(due_date, sequence)
ORDER BY p.id, d.sequence;

"""
# Each plan's origination entry, as bnpl.services.origination.origination_legs posts it: the
# customer owes the total, the merchant is owed it less the plan's merchant fee, which is the
# platform's income (a plan seeded with merchant_fee empty has no fee legs), written by the
# ledger's SQL (ledger.sql): appended to the seeds of the benchmarks, with the parameters of
# origination_params(). ``{ledger_post}`` is filled in by origination_sql().
ORIGINATION_SQL = """
WITH entry AS (
  SELECT p.id AS entry_key, %(kind)s AS kind, 'Plan ' || p.id || ' originated' AS memo, p.id AS plan_id,
         now() AS created_at
  FROM bnpl_plan p ORDER BY p.id
), legs AS (
  SELECT p.id AS entry_key, a.id AS account_id, x.amount, p.currency, p.id AS plan_id, x.party_id, x.leg_order
  FROM bnpl_plan p CROSS JOIN LATERAL (VALUES
    (%(receivable)s, p.total_amount, p.customer_id, 1),
    (%(payable)s, -p.total_amount, p.merchant_id, 2),
    (%(payable)s, p.merchant_fee, p.merchant_id, 3),
    (%(fee_income)s, -p.merchant_fee, p.merchant_id, 4)
  ) AS x(code, amount, party_id, leg_order)
  JOIN payments_ledgeraccount a ON a.code = x.code
  WHERE x.amount <> 0
), {ledger_post}
SELECT count(*) FROM ledger_entries;
"""


def origination_sql() -> str:
    """ORIGINATION_SQL with the ledger's SQL that posts the entries (needs Django set up)."""
    from ledger.sql import ledger_post_ctes

    return ORIGINATION_SQL.replace("{ledger_post}", ledger_post_ctes(entries="entry", legs="legs"))


def origination_params() -> dict[str, str]:
    """ORIGINATION_SQL's parameters: the entry's kind and the accounts' codes."""
    from ledger.accounts import CUSTOMER_RECEIVABLE, MERCHANT_FEE_INCOME, MERCHANT_PAYABLE
    from ledger.models import JournalEntry

    return {
        "kind": JournalEntry.Kind.ORIGINATION.value,
        "receivable": CUSTOMER_RECEIVABLE,
        "payable": MERCHANT_PAYABLE,
        "fee_income": MERCHANT_FEE_INCOME,
    }


def seed(customers: int, today) -> None:
    """The customers, plans, installments and origination entries, vacuumed and frozen."""
    from datetime import timedelta

    from django.conf import settings
    from django.db import connection, transaction

    from bnpl.models import Plan
    from bnpl.schedule import due_dates
    from ledger.accounts import ledger_accounts

    frequency = Plan.Frequency.BIWEEKLY.value  # exact dates: the first one is today, whatever the month
    purchase = today - timedelta(weeks=2)
    dues = due_dates(purchase, COUNT, frequency)
    assert dues[0] == today, dues  # noqa: S101 - a benchmark's own sanity check  # nosec B101
    with transaction.atomic():
        ledger_accounts()
        with connection.cursor() as cursor:
            cursor.execute(
                SEED_SQL + origination_sql(),
                {
                    "customers": customers,
                    "total": TOTAL,
                    "amount": AMOUNT,
                    "count": COUNT,
                    "currency": settings.BNPL_DEFAULT_CURRENCY,
                    "frequency": frequency,
                    "purchase": purchase,
                    "dues": dues,
                    **origination_params(),
                },
            )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (FREEZE, ANALYZE)")  # every copy starts with settled pages and statistics


def scalar(sql: str) -> int:
    """The one value ``sql`` selects, read by the benchmark's own connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def redis_client(redis_url: str):
    import redis

    return redis.Redis.from_url(redis_url)


def worker_env(url: str, redis_url: str) -> dict[str, str]:
    """The environment of a worker: the run database and the benchmark's Redis, production's
    settings (production_env)."""
    return {
        **os.environ,
        **production_env(),
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONUNBUFFERED": "1",
    }


def start_worker(
    concurrency: int, env: dict[str, str], log_path: Path, prefix: str = "bench-autopay"
) -> tuple[subprocess.Popen, str]:
    """A prefork worker with ``concurrency`` processes on the default queue; returns it and its name."""
    name = f"{prefix}-{concurrency}@{socket.gethostname()}"
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork"]
    command += [
        f"--concurrency={concurrency}",
        "--loglevel=WARNING",
        "-n",
        name,
        "--without-mingle",
        "--without-gossip",
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 - our own worker with fixed arguments  # nosec B603
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return process, name


def wait_ready(process: subprocess.Popen, name: str, log_path: Path, timeout: float = 120) -> None:
    """Until the worker answers a ping; SystemExit if it dies or stays silent."""
    from config.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"worker {name} exited ({process.returncode}):\n{tail(log_path)}")
        if any(name in reply for reply in app.control.ping(destination=[name], timeout=1.0)):
            return
    raise SystemExit(f"worker {name} did not answer in {timeout:.0f} s:\n{tail(log_path)}")


def stop_worker(process: subprocess.Popen, timeout: float = 60) -> None:
    """Warm shutdown (SIGTERM); killed with its pool processes if it does not stop in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def no_other_worker() -> None:
    """SystemExit if some worker already consumes from the benchmark's Redis (it would share the work)."""
    from config.celery import app

    replies = app.control.ping(timeout=1.0)
    if replies:
        names = ", ".join(name for reply in replies for name in reply)
        raise SystemExit(f"other workers listen on the benchmark's Redis: {names}")


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def error_lines(path: Path) -> list[str]:
    """The worker log's lines at level ERROR or above, and raw tracebacks."""
    markers = ('"level": "ERROR"', '"level": "CRITICAL"', "Traceback (most recent call last)")
    return [line for line in path.read_text(errors="replace").splitlines() if any(m in line for m in markers)]


def wait_until(done, what: str, stall_seconds: float, started: float, poll: float = POLL_SECONDS) -> float:
    """Poll ``done()`` (``(finished, progress)``) until finished; the time it was seen so.

    Prints the progress every minute; SystemExit when it has not changed for ``stall_seconds``.
    """
    last, moved, shown = None, time.perf_counter(), time.perf_counter()
    while True:
        finished, progress = done()
        now = time.perf_counter()
        if finished:
            return now
        if progress != last:
            last, moved = progress, now
        elif now - moved > stall_seconds:
            raise SystemExit(f"stalled waiting for {what}: no progress in {stall_seconds:.0f} s (at {progress})")
        if now - shown >= PROGRESS_SECONDS:
            print(f"    {now - started:7.0f} s: waiting for {what}, at {progress}", flush=True)
            shown = now
        time.sleep(poll)


def queue_idle(redis_url: str):
    """A ``done()`` for ``wait_until``: nothing queued, nothing in flight (acks_late: unacked)."""
    from config.celery import app

    client = redis_client(redis_url)
    queue = app.conf.task_default_queue

    def done() -> tuple[bool, tuple[int, int]]:
        state = (client.llen(queue), client.hlen("unacked"))
        return state == (0, 0), state

    return done


def measure(target: int, today, redis_url: str, stall_seconds: float) -> dict:
    """Publish the day's autopay and time it to all PAID, then to the queue drained."""
    from payments.autopay import autopay_run

    paid_sql = "SELECT count(*) FROM bnpl_installment WHERE status = 'PAID'"
    started = time.perf_counter()
    published = autopay_run(today=today)
    publish_s = time.perf_counter() - started
    print(f"  published {published:,} customers (in chunk tasks) in {publish_s:.1f} s", flush=True)

    def all_paid() -> tuple[bool, int]:
        paid = scalar(paid_sql)
        return paid >= target, paid

    paid_s = wait_until(all_paid, "every installment PAID", stall_seconds, started) - started
    print(f"  all {target:,} installments PAID after {paid_s:.1f} s", flush=True)
    done_s = wait_until(queue_idle(redis_url), "the queue to drain (queued, unacked)", stall_seconds, started)
    done_s -= started
    print(f"  queue drained after {done_s:.1f} s", flush=True)
    return {"published": published, "publish_s": publish_s, "paid_s": paid_s, "done_s": done_s}


# The bare script: per installment due, autopay's rows in its two transactions around the
# same fake gateway's call, one statement each, knowing the seed (no credit balance, nothing
# reserved or paid before, a merchant without a webhook URL, customers without an email or
# phone, three installments left after this one, so neither the plan nor the customer
# changes). The first: the plan locked, the installment reserved, the PENDING payment and
# its allocation.
BARE_RESERVE_SQL = """
WITH plan AS (
  SELECT id, currency FROM bnpl_plan WHERE id = %(plan)s FOR UPDATE
), reserved AS (
  UPDATE bnpl_installment i SET amount_reserved = i.amount_reserved + (i.amount_due - i.amount_paid)
  FROM plan WHERE i.id = %(installment)s AND i.plan_id = plan.id
  RETURNING i.id, i.plan_id, i.customer_id, i.amount_due - i.amount_paid AS amount, plan.currency
), payment AS (
  INSERT INTO payments_payment (plan_id, customer_id, created_by_id, amount, currency, credit_amount, excess_credited,
                                source, attempt, card_token, status, decline_code, gateway_reference, gateway_key,
                                created_at)
  SELECT plan_id, customer_id, customer_id, amount, currency, 0, 0, 'AUTOPAY', 1, %(token)s, 'PENDING', '', '',
         %(key)s, %(now)s
  FROM reserved
  RETURNING id, amount, currency
)
INSERT INTO payments_paymentallocation (payment_id, installment_id, amount, credited)
SELECT id, %(installment)s, amount, 0 FROM payment
RETURNING payment_id, amount, (SELECT currency FROM payment)
"""
# The second: the plan locked again, the payment SUCCEEDED, the installment PAID, the
# PAYMENT entry with its two postings, the installment.paid event, the receipt on both
# channels (SKIPPED: no address).
BARE_APPLY_SQL = """
WITH plan AS (
  SELECT id, merchant_id, currency, merchant_reference FROM bnpl_plan WHERE id = %(plan)s FOR UPDATE
), payment AS (
  UPDATE payments_payment SET status = 'SUCCEEDED', gateway_reference = %(reference)s, completed_at = %(now)s,
                              excess_credited = 0
  WHERE id = %(payment)s AND status = 'PENDING'
  RETURNING id, amount, currency, plan_id, customer_id
), paid AS (
  UPDATE bnpl_installment i SET amount_reserved = i.amount_reserved - p.amount, amount_paid = i.amount_paid + p.amount,
                                status = 'PAID', paid_at = %(now)s, updated_at = %(now)s
  FROM payment p WHERE i.id = %(installment)s
  RETURNING i.id, i.plan_id, i.sequence, i.amount_due, i.amount_paid, i.due_date, i.status
), entry AS (
  SELECT id AS entry_key, 'PAYMENT' AS kind, 'Payment ' || id AS memo, plan_id, %(now)s::timestamptz AS created_at
  FROM payment
), legs AS (
  SELECT p.id AS entry_key, x.account_id, x.amount, p.currency, p.plan_id, p.customer_id AS party_id, x.leg_order
  FROM payment p CROSS JOIN LATERAL (VALUES (%(clearing)s::bigint, p.amount, 1), (%(receivable)s::bigint, -p.amount, 2))
    AS x(account_id, amount, leg_order)
), {ledger_post}, event AS (
  INSERT INTO events_event (public_id, merchant_id, type, data, created_at, delivery_status, attempts, next_attempt_at,
                            give_up_at)
  SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), plan.merchant_id, 'installment.paid',
         {event_data} || jsonb_build_object('payment_id', payment.id), %(now)s, 'NO_ENDPOINT', 0, %(now)s, %(give_up)s
  FROM paid, plan, payment
)
INSERT INTO events_notification (customer_id, kind, channel, cause, subject, body, status, error, created_at)
SELECT p.customer_id, 'PAYMENT_RECEIPT', c.channel, 'payment:' || p.id,
       'Payment received: ' || p.amount || ' ' || p.currency || ' for plan #' || p.plan_id,
       'Thank you. We received ' || p.amount || ' ' || p.currency || ' for plan #' || p.plan_id || '.', 'SKIPPED', '',
       %(now)s
FROM payment p CROSS JOIN (VALUES ('EMAIL'), ('SMS')) AS c(channel)
"""
BARE_DUE_SQL = """
SELECT i.id, i.plan_id, c.card_token FROM bnpl_installment i
JOIN bnpl_plan p ON p.id = i.plan_id JOIN accounts_user c ON c.id = p.customer_id
WHERE i.due_date = %s AND i.status IN ('UPCOMING', 'OVERDUE') AND i.amount_paid < i.amount_due AND p.status = 'ACTIVE'
  AND c.autopay AND c.is_active AND c.card_token <> ''
ORDER BY c.id, i.due_date, i.plan_id, i.sequence
"""


def bare_charges(due: list[tuple[int, int, str]], today) -> None:
    """The bare script's charges of ``due`` (installment, plan, card token), one after the
    other: two transactions each around the configured (fake) gateway's call."""
    from datetime import timedelta

    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from bnpl.event_data import installment_event_sql
    from ledger.accounts import CUSTOMER_RECEIVABLE, GATEWAY_CLEARING, ledger_account_ids
    from ledger.sql import ledger_post_ctes
    from payments.gateways import get_gateway

    service_binding()  # each statement here is one: bound as the workers bind theirs
    apply_sql = BARE_APPLY_SQL.replace("{ledger_post}", ledger_post_ctes(entries="entry", legs="legs")).replace(
        "{event_data}", installment_event_sql(installment="paid", plan="plan")
    )
    accounts = ledger_account_ids()
    accounts = {"clearing": accounts[GATEWAY_CLEARING], "receivable": accounts[CUSTOMER_RECEIVABLE]}
    gateway = get_gateway()
    for installment, plan, token in due:
        key = f"autopay_{installment}_{today:%Y%m%d}"
        with transaction.atomic(), connection.cursor() as cursor:
            now = timezone.now()
            cursor.execute(
                BARE_RESERVE_SQL, {"plan": plan, "installment": installment, "token": token, "key": key, "now": now}
            )
            payment, amount, currency = cursor.fetchone()
        result = gateway.charge(amount=amount, currency=currency, card_token=token, idempotency_key=key)
        if not result.succeeded:
            raise SystemExit(f"the fake gateway declined installment {installment}: {result.decline_code}")
        with transaction.atomic(), connection.cursor() as cursor:
            now = timezone.now()
            cursor.execute(
                apply_sql,
                {
                    "plan": plan,
                    "payment": payment,
                    "installment": installment,
                    "reference": result.reference,
                    "now": now,
                    "give_up": now + timedelta(hours=settings.BNPL_WEBHOOK_RETRY_HOURS),
                }
                | accounts,
            )
    connection.close()


def bare_script(processes: int, args, seed_url: str, today) -> dict:
    """The bare script on a fresh copy of the seed, its installments due read in one query
    and shared out in ``processes`` contiguous parts, one process each (forked): its time."""
    import multiprocessing

    from django.db import connection

    copy_seed(args.database_url, seed_url)
    redis_client(args.redis_url).flushdb()
    admin(args.database_url, "CHECKPOINT")
    watch = TreeWatch(database_name(args.database_url)).start()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(BARE_DUE_SQL, [today])
        due = cursor.fetchall()
    close_connections()  # not to be shared with the forked processes
    size = -(-len(due) // processes)
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=bare_charges, args=(due[start : start + size], today))
        for start in range(0, len(due), size)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
    seconds = time.perf_counter() - started
    watch.stop()
    failed = [child.exitcode for child in children if child.exitcode]
    print(f"bare script, {processes} process(es): {len(due):,} charges in {seconds:.1f} s; {watch.describe()}")
    return {
        "paid_s": seconds,
        "watch": watch,
        "checks": checks(args.rows, len(due)),
        "errors": [f"a process exited {code}" for code in failed],
    }


CHECKS_SQL = {
    "installments PAID": "SELECT count(*) FROM bnpl_installment WHERE status = 'PAID'",
    "payments SUCCEEDED": "SELECT count(*) FROM payments_payment WHERE status = 'SUCCEEDED'",
    "payments FAILED": "SELECT count(*) FROM payments_payment WHERE status = 'FAILED'",
    "payments PENDING": "SELECT count(*) FROM payments_payment WHERE status = 'PENDING'",
    "installments with more than one payment": """
        SELECT count(*) FROM (SELECT installment_id FROM payments_paymentallocation
        WHERE installment_id IS NOT NULL GROUP BY installment_id HAVING count(DISTINCT payment_id) > 1) AS twice""",
    "payment allocations": "SELECT count(*) FROM payments_paymentallocation",
    "PAYMENT entries": "SELECT count(*) FROM payments_journalentry WHERE kind = 'PAYMENT'",
    "PAYMENT postings (clearing in, receivable out)": """
        SELECT count(*) FROM payments_posting p JOIN payments_journalentry e ON e.id = p.entry_id
        WHERE e.kind = 'PAYMENT'""",
    "paid, per the ledger": """
        SELECT COALESCE(sum(p.amount), 0) FROM payments_posting p JOIN payments_journalentry e ON e.id = p.entry_id
        WHERE e.kind = 'PAYMENT' AND p.amount > 0""",
    "installment.paid events": "SELECT count(*) FROM events_event WHERE type = 'installment.paid'",
    "payment receipts (SKIPPED: no address)": (
        "SELECT count(*) FROM events_notification WHERE kind = 'PAYMENT_RECEIPT' AND status = 'SKIPPED'"
    ),
    "events still PENDING": "SELECT count(*) FROM events_event WHERE delivery_status = 'PENDING'",
    "notifications still PENDING or SENDING": (
        "SELECT count(*) FROM events_notification WHERE status IN ('PENDING', 'SENDING')"
    ),
}


def checks(target: int, published: int) -> dict[str, tuple[object, object]]:
    """What the run left behind: ``{check: (found, expected)}``."""
    from decimal import Decimal

    from ledger.checks import ledger_check

    expected = {
        "installments PAID": target,
        "payments SUCCEEDED": target,
        "payment allocations": target,
        "PAYMENT entries": target,
        "PAYMENT postings (clearing in, receivable out)": 2 * target,
        "paid, per the ledger": Decimal(AMOUNT) * target,
        "installment.paid events": target,
        "payment receipts (SKIPPED: no address)": 2 * target,
    }
    found = {"customers published": (published, target)}
    for label, sql in CHECKS_SQL.items():
        found[label] = (scalar(sql), expected.get(label, 0))
    report = ledger_check(record=False)
    found["ledger_check ok"] = (report.ok, True)
    if not report.ok:
        print("  ledger breaches:\n    " + "\n    ".join(report.breaches), flush=True)
    return found


def run(concurrency: int, args, seed_url: str, target: int, today) -> dict:
    """One measurement on a fresh copy of the seed, with a worker of ``concurrency`` processes."""
    copy_seed(args.database_url, seed_url)
    redis_client(args.redis_url).flushdb()
    admin(args.database_url, "CHECKPOINT")  # no flush of the copy lands inside the measurement
    no_other_worker()
    log_path = Path(tempfile.gettempdir()) / f"{database_name(args.database_url)}_worker_{concurrency}.log"
    print(f"{concurrency} worker process(es), log {log_path}:", flush=True)
    process, name = start_worker(concurrency, worker_env(args.database_url, args.redis_url), log_path)
    try:
        wait_ready(process, name, log_path)
        # The worker and its pool processes are this one's children; their connections are
        # backends of the run database.
        watch = TreeWatch(database_name(args.database_url)).start()
        result = measure(target, today, args.redis_url, args.stall_seconds)
        watch.stop()
    finally:
        stop_worker(process)
    print(f"  {watch.describe()}", flush=True)
    result["watch"] = watch
    result["checks"] = checks(target, result["published"])
    result["errors"] = error_lines(log_path)
    for line in result["errors"][:5]:
        print(f"  worker log: {line[:500]}", flush=True)
    return result


def report(results: dict[int, dict], target: int, bare: dict[int, dict]) -> bool:
    """Print the figures, the ratios to the bare script and the checks; True when every check passed."""
    first = next(iter(results))
    base = results[first]
    print()
    print(
        "| worker processes | installments charged | publish (s) | until all PAID (s) | charges/s "
        f"| vs {first} | until queue drained (s) | charges/s to drained | vs {first} | other processes (cores) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios = {}
    for workers, r in results.items():
        watches = [base["watch"], r["watch"]]
        paid = ratio_or_refusal(base["paid_s"] / r["paid_s"], watches)
        done = ratio_or_refusal(base["done_s"] / r["done_s"], watches)
        ratios[workers] = paid, done
        print(
            f"| {workers} | {r['checks']['installments PAID'][0]:,} | {r['publish_s']:.1f} | {r['paid_s']:.1f} "
            f"| {target / r['paid_s']:.1f} | {paid} | {r['done_s']:.1f} "
            f"| {target / r['done_s']:.1f} | {done} | {r['watch'].other_cores or 0:.2f} |"
        )
    print()
    print(
        "| bare script: the same rows, two transactions around the fake gateway's call per installment | processes "
        "| until all PAID (s) | charges/s | autopay until all PAID, as many worker processes (s) | autopay vs bare "
        "| other processes (cores) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    vs_bare = {}
    for processes, b in bare.items():
        r = results.get(processes)
        vs_bare[processes] = ratio_or_refusal(r["paid_s"] / b["paid_s"], [b["watch"], r["watch"]]) if r else ""
        print(
            f"| one statement per transaction | {processes} | {b['paid_s']:.1f} | {target / b['paid_s']:.1f} "
            f"| {r['paid_s']:.1f} | {vs_bare[processes]} | {b['watch'].other_cores or 0:.2f} |"
        )
    print()
    for workers, ratio in vs_bare.items():
        print(f"ratio autopay / bare script, {workers} process(es) each: {ratio} (target <= 1.5x)")
    for workers, (paid, done) in ratios.items():
        if workers != first:
            print(
                f"ratio {workers} workers / {first} worker: {paid} charges/s until all PAID, "
                f"{done} until the queue is drained"
            )
    ok = checks_table(
        {f"bare, {p} process(es)": b for p, b in bare.items()} | {f"{w} worker(s)": r for w, r in results.items()}
    )
    print()
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return ok


def checks_table(results: dict[str, dict]) -> bool:
    """Print a table of each run's checks (``run["checks"]``: ``{check: (found, expected)}``)
    and of its worker log's error lines (``run["errors"]``); True when all are as expected."""
    runs = list(results.values())
    print()
    print("| check | " + " | ".join(results) + " | expected |")
    print("|---|" + "---:|" * len(runs) + "---:|")
    ok = True
    for label, (_, expected) in runs[0]["checks"].items():
        values = [r["checks"][label][0] for r in runs]
        ok &= all(value == expected for value in values)
        print(f"| {label} | " + " | ".join(str(v) for v in values) + f" | {expected} |")
    print("| worker log lines at ERROR | " + " | ".join(str(len(r["errors"])) for r in runs) + " | 0 |")
    return ok and not any(r["errors"] for r in runs)


def main() -> None:
    args = parse_args()

    def seeded():
        from bnpl.schedule import business_today

        today, started = business_today(), time.perf_counter()
        seed(args.rows, today)
        seconds = time.perf_counter() - started
        print(f"seeded {args.rows:,} customers with an installment due {today} in {seconds:.1f} s")
        return today

    print(machine_line(), flush=True)
    seed_url, today = seeded_template(args.database_url, args.redis_url, seeded)

    bare = {workers: bare_script(workers, args, seed_url, today) for workers in args.workers}
    results = {workers: run(workers, args, seed_url, args.rows, today) for workers in args.workers}
    close_connections()
    print(machine_line(), flush=True)
    if not report(results, args.rows, bare):
        sys.exit(1)


if __name__ == "__main__":
    main()
