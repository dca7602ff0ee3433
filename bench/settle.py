#!/usr/bin/env python
"""Benchmark: the daily merchant settlement through real Celery workers, 1 worker process
against 2, beside a bare SQL script that writes the same rows.

Seeds a database of its own (default ``bnpl_bench_settle_seed`` on the local PostgreSQL)
with ``--merchants`` merchants, each with a payout account (an IBAN; every
``--failing-every``-th a plain account ending 0002, which the fake payout gateway refuses),
and ``--plans`` plans of 100.00 spread evenly over them: captured (ACTIVE, activated
yesterday, business time), each charged the default merchant fee (4.30) and with its
origination entry in the ledger (customer receivable, merchant payable, fee income), so
each merchant's payable is what its settlement pays out; and the day before, settled and
paid out (one plan of each merchant whose account is paid), so that the measured day is not
the first. Then, each on a fresh copy of the seed, one after the other in one go:

- **bare SQL script**: in one transaction, the day's settlements with their totals, a
  capture line per plan, a PENDING payout per settlement (the payable read from the ledger,
  the account decrypted and masked in Python) and the ``settlement.created`` events; then,
  in a second transaction, the payouts' answers (PAID, or FAILED for the refused
  accounts, with the fake gateway's reference), a PAYOUT journal entry with its two
  postings per PAID payout, and the ``payout.paid`` / ``payout.failed`` events. It knows
  the earlier day left nothing to carry, so it checks for nothing settled before (no
  anti-joins).
- **the settlement** with each worker count in ``--workers``: ``settle_merchants(
  fan_out=True)`` records the run and its chunks of ``--chunk-merchants`` merchants and
  publishes a task per chunk to ``celery worker --pool=prefork --concurrency=N``; each chunk
  commits its settlements, lines, totals, payouts and events, then publishes one task for
  its payouts (for each, the gateway call, then the answer applied under the payout's
  lock). Timed until
  the run is closed by its last chunk (**settled**), until no payout is PENDING (**paid
  out**) and until the queue is drained (the events' relay too).

The ratios compared are settled against the bare script's first transaction, and paid out
against both. Every run is checked: the settlements, lines, payouts and events expected,
each line's and settlement's sums, invariant 7 (settlements.checks), no error in the
worker log. Prints the machine's cores and load, and refuses a ratio when other processes
used more than a core during a measurement it depends on (bench.machine). Exits 1 if a
check fails.

    python bench/settle.py                        # 100,000 plans of 1,000 merchants, 1 and 2 workers
    python bench/settle.py --plans 2000 --merchants 40 --chunk-merchants 10    # a smoke run
"""

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import autopay as shared  # noqa: E402 - the benchmarks' shared helpers
from bench.machine import TreeWatch, machine_line, ratio_or_refusal  # noqa: E402
from bench.sweep import fresh_copy  # noqa: E402

TOTAL, FEE = Decimal("100.00"), Decimal("4.30")  # the default pricing: 4.00 % + 0.30
IBAN, REFUSED = "DE89370400440532013000", "123450002"
POLL_SECONDS = 0.02  # a query each: the settled time is read to this


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plans", type=int, default=100_000, help="captured plans to settle")
    parser.add_argument("--merchants", type=int, default=1_000, help="merchants the plans are spread over")
    parser.add_argument(
        "--failing-every", type=int, default=50, help="every N-th merchant's account is refused (0: none)"
    )
    parser.add_argument("--chunk-merchants", type=int, default=250, help="merchants per chunk (one task each)")
    shared.add_run_arguments(parser, "SETTLE", "bnpl_bench_settle", redis_db=7)
    parser.add_argument("--stall-seconds", type=float, default=180, help="give up when nothing moves this long")
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",") if n.strip()]
    if min(args.plans, args.merchants, args.chunk_merchants, *args.workers, 1) < 1 or args.failing_every < 0:
        parser.error("--plans, --merchants, --chunk-merchants and every --workers count must be positive")
    if args.plans < args.merchants:
        parser.error("--plans must be at least --merchants (each merchant settles some)")
    return args


# Merchants with a payout account (the encrypted value is the same for each account, as
# the field writes it), then customers; plans spread evenly over the merchants, captured
# yesterday with the merchant fee charged; then their origination entries.
SEED_SQL = """
INSERT INTO accounts_user (password, is_superuser, username, email, is_staff, is_active, date_joined, user_id,
    full_name, role, status, credit_limit, phone_number, passport_number, card_brand, card_first6, card_last4,
    card_token, webhook_secret, webhook_url, autopay, payout_account, payout_account_kind, payout_account_name,
    created_at, updated_at)
SELECT '!', false, 'settle-' || g, '', false, true, now(), 'settle-' || g, '',
       CASE WHEN g <= %(merchants)s THEN 'MERCHANT' ELSE 'CUSTOMER' END, 'NORMAL', 0, '', '', '', '', '', '', '', '',
       false,
       CASE WHEN g > %(merchants)s THEN '' WHEN %(every)s > 0 AND g %% %(every)s = 0 THEN %(refused)s ELSE %(iban)s END,
       CASE WHEN g > %(merchants)s THEN '' WHEN %(every)s > 0 AND g %% %(every)s = 0 THEN %(refused_kind)s
            ELSE %(iban_kind)s END,
       CASE WHEN g <= %(merchants)s THEN 'Shop ' || g ELSE '' END, now(), now()
FROM generate_series(1, %(merchants)s + %(customers)s) AS g ORDER BY g;

WITH m AS (SELECT array_agg(id ORDER BY id) AS ids FROM accounts_user WHERE role = 'MERCHANT'),
     c AS (SELECT array_agg(id ORDER BY id) AS ids FROM accounts_user WHERE role = 'CUSTOMER')
INSERT INTO bnpl_plan (customer_id, merchant_id, total_amount, merchant_fee, currency, installment_count, frequency,
    status, merchant_reference, purchase_date, activated_at, created_at, updated_at)
SELECT c.ids[1 + g %% %(customers)s], m.ids[1 + g %% %(merchants)s], %(total)s, %(fee)s, %(currency)s, 4, 'MONTHLY',
       'ACTIVE', 'order-' || g, %(day)s, %(activated)s, %(activated)s, %(activated)s
FROM generate_series(0, %(plans)s - 1) AS g CROSS JOIN m CROSS JOIN c ORDER BY g;

-- The day before: one plan of each merchant whose account is paid, settled in the seed.
INSERT INTO bnpl_plan (customer_id, merchant_id, total_amount, merchant_fee, currency, installment_count, frequency,
    status, merchant_reference, purchase_date, activated_at, created_at, updated_at)
SELECT (SELECT min(id) FROM accounts_user WHERE role = 'CUSTOMER'), u.id, %(total)s, %(fee)s, %(currency)s, 4,
       'MONTHLY', 'ACTIVE', 'earlier-' || u.id, %(day)s::date - 1, %(earlier)s, %(earlier)s, %(earlier)s
FROM accounts_user u WHERE u.role = 'MERCHANT' AND u.payout_account_kind = %(iban_kind)s ORDER BY u.id;

"""


def seed(args, day) -> None:
    """The merchants, customers, plans and origination entries, vacuumed and frozen."""
    from django.conf import settings
    from django.db import connection, transaction

    from accounts.bank import normalize_payout_account
    from accounts.models import User
    from ledger.accounts import ledger_accounts
    from settlements.selectors import business_day_end

    field = User._meta.get_field("payout_account")
    iban, refused = normalize_payout_account(IBAN), normalize_payout_account(REFUSED)
    with transaction.atomic():
        ledger_accounts()
        with connection.cursor() as cursor:
            cursor.execute(
                SEED_SQL + shared.origination_sql(),
                {
                    "merchants": args.merchants,
                    "customers": max(args.plans // 10, 1),
                    "plans": args.plans,
                    "every": args.failing_every,
                    "iban": field.get_prep_value(iban.number),
                    "iban_kind": iban.kind,
                    "refused": field.get_prep_value(refused.number),
                    "refused_kind": refused.kind,
                    "total": TOTAL,
                    "fee": FEE,
                    "currency": settings.BNPL_DEFAULT_CURRENCY,
                    "day": day,
                    "activated": business_day_end(day) - timedelta(hours=6),
                    "earlier": business_day_end(day - timedelta(days=1)) - timedelta(hours=6),
                    **shared.origination_params(),
                },
            )
    # The day before settled and paid (as the bare script does it): the measured day is not
    # the first, whose empty tables would give the statements other plans than a day in
    # production has (a lookup cached while the settlements table was empty scans it).
    bare_script(day - timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE events_event SET delivery_status = 'NO_ENDPOINT'")  # as the relay marks them
        cursor.execute("VACUUM (FREEZE, ANALYZE)")  # every copy starts with settled pages and statistics


# The bare script's first transaction: settlements with their totals, a line per plan; then
# the payouts (the payable from the ledger, the masked accounts given) and the events.
BARE_SETTLE_SQL = """
WITH made AS (
  INSERT INTO settlements_settlement (merchant_id, currency, business_date, cutoff_at, gross, fees, net, line_count,
                                      run_id, created_at)
  SELECT p.merchant_id, p.currency, %(day)s, %(cutoff)s, sum(p.total_amount), sum(COALESCE(p.merchant_fee, 0)),
         sum(p.total_amount - COALESCE(p.merchant_fee, 0)), count(*), %(run)s, %(now)s
  FROM bnpl_plan p WHERE p.status = ANY(%(captured)s) AND COALESCE(p.activated_at, p.created_at) < %(cutoff)s
    AND COALESCE(p.activated_at, p.created_at) >= %(since)s
  GROUP BY p.merchant_id, p.currency
  RETURNING id, merchant_id, currency
)
INSERT INTO settlements_settlementline (settlement_id, type, plan_id, merchant_reference, gross, fee, net,
                                        currency, posted_at)
SELECT m.id, 'capture', p.id, p.merchant_reference, p.total_amount, COALESCE(p.merchant_fee, 0),
       p.total_amount - COALESCE(p.merchant_fee, 0), p.currency, COALESCE(p.activated_at, p.created_at)
FROM made m JOIN bnpl_plan p ON p.merchant_id = m.merchant_id AND p.currency = m.currency
WHERE p.status = ANY(%(captured)s) AND COALESCE(p.activated_at, p.created_at) < %(cutoff)s
  AND COALESCE(p.activated_at, p.created_at) >= %(since)s;

WITH accounts AS (
  SELECT * FROM unnest(%(merchant_ids)s::bigint[], %(masked)s::text[], %(sealed)s::text[], %(names)s::text[])
    AS a(merchant_id, masked, sealed, name)
), payable AS (
  SELECT po.party_id AS merchant_id, po.currency, -sum(po.amount) AS available
  FROM payments_posting po JOIN payments_ledgeraccount la ON la.id = po.account_id
  WHERE la.code = %(payable)s AND po.party_id = ANY(%(merchant_ids)s)
  GROUP BY po.party_id, po.currency
), payouts AS (
  INSERT INTO settlements_payout (settlement_id, merchant_id, amount, currency, status, payable_available,
                                  account, account_name, account_masked, failure_code, reference, attempts,
                                  created_at, updated_at)
  SELECT s.id, s.merchant_id, LEAST(s.net, b.available), s.currency, 'PENDING', b.available, a.sealed, a.name,
         a.masked, '', '', 0, %(now)s, %(now)s
  FROM settlements_settlement s JOIN accounts a ON a.merchant_id = s.merchant_id
  JOIN payable b ON b.merchant_id = s.merchant_id AND b.currency = s.currency
  WHERE s.business_date = %(day)s AND s.net > 0 AND LEAST(s.net, b.available) > 0
  RETURNING id, settlement_id, amount, status
)
INSERT INTO events_event (public_id, merchant_id, type, data, created_at, delivery_status, attempts, next_attempt_at,
                          give_up_at)
SELECT 'evt_' || md5(random()::text || s.id), s.merchant_id, 'settlement.created',
       jsonb_build_object('settlement_id', s.id, 'business_date', s.business_date::text, 'currency', s.currency,
         'gross', s.gross::text, 'fees', s.fees::text, 'net', s.net::text, 'line_count', s.line_count,
         'payout', CASE WHEN po.id IS NOT NULL THEN
           jsonb_build_object('payout_id', po.id, 'amount', po.amount::text, 'status', po.status) END),
       %(now)s, 'PENDING', 0, %(now)s, %(give_up)s
FROM settlements_settlement s LEFT JOIN payouts po ON po.settlement_id = s.id
WHERE s.business_date = %(day)s;
"""

# The second transaction: every payout's answer as the fake gateway gives it, a PAYOUT
# entry (merchant payable -> payout clearing) per PAID one, an event each.
BARE_PAYOUT_SQL = """
WITH sent AS (
  UPDATE settlements_payout po
  SET status = CASE WHEN po.merchant_id = ANY(%(refused)s) THEN 'FAILED' ELSE 'PAID' END,
      failure_code = CASE WHEN po.merchant_id = ANY(%(refused)s) THEN %(failure)s ELSE '' END,
      reference = 'fake_payout_' || left(encode(sha256(convert_to('payout_' || po.id, 'UTF8')), 'hex'), 20),
      attempts = po.attempts + 1, finished_at = %(now)s, updated_at = %(now)s
  WHERE po.status = 'PENDING'
  RETURNING po.id, po.settlement_id, po.merchant_id, po.amount, po.currency, po.status, po.failure_code,
            po.account_masked
), entry AS (
  SELECT s.id AS entry_key, %(kind)s AS kind, 'Payout ' || s.id || ' of settlement ' || s.settlement_id AS memo,
         NULL::bigint AS plan_id, %(now)s::timestamptz AS created_at
  FROM sent s WHERE s.status = 'PAID'
), legs AS (
  SELECT s.id AS entry_key, a.id AS account_id, x.amount, s.currency, NULL::bigint AS plan_id,
         s.merchant_id AS party_id, x.leg_order
  FROM sent s CROSS JOIN LATERAL (VALUES (%(payable)s, s.amount, 1), (%(clearing)s, -s.amount, 2))
    AS x(code, amount, leg_order)
  JOIN payments_ledgeraccount a ON a.code = x.code
  WHERE s.status = 'PAID'
), {ledger_post}
INSERT INTO events_event (public_id, merchant_id, type, data, created_at, delivery_status, attempts, next_attempt_at,
                          give_up_at)
SELECT 'evt_' || md5(random()::text || s.id), s.merchant_id,
       CASE WHEN s.status = 'PAID' THEN 'payout.paid' ELSE 'payout.failed' END,
       jsonb_build_object('payout_id', s.id, 'settlement_id', s.settlement_id, 'amount', s.amount::text,
         'currency', s.currency, 'status', s.status, 'failure_code', s.failure_code, 'account', s.account_masked),
       %(now)s, 'PENDING', 0, %(now)s, %(give_up)s
FROM sent s;
"""


def bare_script(day) -> dict:
    """The bare SQL script, its two transactions timed: ``settle_s`` and ``payout_s``."""
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import User
    from ledger.accounts import MERCHANT_PAYABLE, PAYOUT_CLEARING
    from ledger.models import JournalEntry
    from ledger.sql import ledger_post_ctes
    from settlements.gateways import FakePayoutGateway
    from settlements.models import Payout, SettlementRun
    from settlements.selectors import business_day_end
    from settlements.services.settle import CAPTURED

    started = time.perf_counter()
    with transaction.atomic():
        now = timezone.now()
        run = SettlementRun.objects.create(business_date=day, started_at=now, finished_at=now)
        merchants = list(User.objects.filter(role=User.Role.MERCHANT).exclude(payout_account_kind="").order_by("pk"))
        sealed = Payout._meta.get_field("account")
        common = {"day": day, "now": now, "give_up": now + timedelta(hours=settings.BNPL_WEBHOOK_RETRY_HOURS)}
        with connection.cursor() as cursor:
            cursor.execute(
                BARE_SETTLE_SQL,
                common
                | {
                    "cutoff": business_day_end(day),
                    "since": business_day_end(day - timedelta(days=1)),
                    "run": run.pk,
                    "captured": [str(status) for status in CAPTURED],
                    "merchant_ids": [m.pk for m in merchants],
                    "masked": [m.masked_payout_account for m in merchants],
                    # The payout keeps the account it is for, encrypted, as the real code writes it.
                    "sealed": [sealed.get_prep_value(m.payout_account) for m in merchants],
                    "names": [m.payout_account_name for m in merchants],
                    "payable": MERCHANT_PAYABLE,
                },
            )
    settle_s = time.perf_counter() - started

    started = time.perf_counter()
    with transaction.atomic():
        (failure,) = FakePayoutGateway.FAILURES.values()
        refused = [m.pk for m in merchants if m.payout_account[-4:] in FakePayoutGateway.FAILURES]
        with connection.cursor() as cursor:
            cursor.execute(
                BARE_PAYOUT_SQL.replace("{ledger_post}", ledger_post_ctes(entries="entry", legs="legs")),
                common
                | {
                    "refused": refused,
                    "failure": failure,
                    "kind": JournalEntry.Kind.PAYOUT.value,
                    "payable": MERCHANT_PAYABLE,
                    "clearing": PAYOUT_CLEARING,
                },
            )
    return {"settle_s": settle_s, "payout_s": time.perf_counter() - started}


def settle_with_workers(workers: int, args) -> dict:
    """``settle_merchants(fan_out=True)`` through a worker of ``workers`` processes: the
    seconds until settled, paid out and the queue drained."""
    from django.db.models import Max
    from django.utils import timezone

    from settlements.models import Payout, SettlementRun
    from settlements.services.settle import settle_merchants

    shared.no_other_worker()
    log_path = Path(tempfile.gettempdir()) / f"{shared.database_name(args.database_url)}_worker_{workers}.log"
    process, name = shared.start_worker(
        workers, shared.worker_env(args.database_url, args.redis_url), log_path, prefix="bench-settle"
    )
    try:
        shared.wait_ready(process, name, log_path)
        watch = TreeWatch(shared.database_name(args.database_url)).start()
        started, wall = time.perf_counter(), timezone.now()
        run = settle_merchants(fan_out=True, chunk_merchants=args.chunk_merchants)
        print(f"  {workers} worker process(es): published {run.chunks_total} chunk tasks", flush=True)

        def settled() -> tuple[bool, int]:
            done = SettlementRun.objects.get(pk=run.pk)
            return done.finished_at is not None, done.chunks_done

        def paid_out() -> tuple[bool, int]:
            pending = Payout.objects.filter(status=Payout.Status.PENDING).count()
            return pending == 0, pending

        settled_s = shared.wait_until(settled, "every chunk done", args.stall_seconds, started, POLL_SECONDS) - started
        shared.wait_until(paid_out, "no payout PENDING", args.stall_seconds, started, POLL_SECONDS)
        # The last payout's answer was applied when its finished_at was stamped, just before its commit.
        last = Payout.objects.aggregate(last=Max("finished_at"))["last"] or wall
        paid_s = max((last - wall).total_seconds(), settled_s)
        drained_s = shared.wait_until(
            shared.queue_idle(args.redis_url), "the queue to drain", args.stall_seconds, started
        )
        drained_s -= started
        watch.stop()
    finally:
        shared.stop_worker(process)
    return {
        "settled_s": settled_s,
        "paid_s": paid_s,
        "drained_s": drained_s,
        "chunks": run.chunks_total,
        "watch": watch,
        "errors": shared.error_lines(log_path),
    }


# Rows of the settlement and what it posts, counted after each run (the seed's entries and
# postings taken off).
ROWS_SQL = {
    "settlements": "SELECT count(*) FROM settlements_settlement",
    "lines": "SELECT count(*) FROM settlements_settlementline",
    "payouts": "SELECT count(*) FROM settlements_payout",
    "events": "SELECT count(*) FROM events_event",
    "journal entries": "SELECT count(*) FROM payments_journalentry",
    "postings": "SELECT count(*) FROM payments_posting",
}
CHECKS_SQL = {
    "settlements": "SELECT count(*) FROM settlements_settlement",
    "capture lines": "SELECT count(*) FROM settlements_settlementline WHERE type = 'capture'",
    "other lines": "SELECT count(*) FROM settlements_settlementline WHERE type <> 'capture'",
    "settled net": "SELECT COALESCE(sum(net), 0) FROM settlements_settlement",
    "settlements not the sum of their lines": """
        SELECT count(*) FROM settlements_settlement s JOIN (
          SELECT settlement_id, sum(gross) AS gross, sum(fee) AS fees, sum(net) AS net, count(*) AS n
          FROM settlements_settlementline GROUP BY settlement_id) l ON l.settlement_id = s.id
        WHERE (s.gross, s.fees, s.net, s.line_count) <> (l.gross, l.fees, l.net, l.n)""",
    "payouts PAID": "SELECT count(*) FROM settlements_payout WHERE status = 'PAID'",
    "payouts FAILED": "SELECT count(*) FROM settlements_payout WHERE status = 'FAILED'",
    "payouts PENDING": "SELECT count(*) FROM settlements_payout WHERE status = 'PENDING'",
    "paid out": "SELECT COALESCE(sum(amount), 0) FROM settlements_payout WHERE status = 'PAID'",
    "settlement.created events": "SELECT count(*) FROM events_event WHERE type = 'settlement.created'",
    "payout.paid events": "SELECT count(*) FROM events_event WHERE type = 'payout.paid'",
    "payout.failed events": "SELECT count(*) FROM events_event WHERE type = 'payout.failed'",
    "PAYOUT entries": "SELECT count(*) FROM payments_journalentry WHERE kind = 'PAYOUT'",
}


def rows_written(seeded: dict[str, int]) -> int:
    return sum(shared.scalar(sql) - seeded.get(label, 0) for label, sql in ROWS_SQL.items())


def checks_found() -> dict[str, object]:
    return {label: shared.scalar(sql) for label, sql in CHECKS_SQL.items()}


def checks(args, seeded: dict[str, object]) -> dict[str, tuple[object, object]]:
    """What a run added to the seed: ``{check: (found, expected)}``, invariant 7 included."""
    from ledger.checks import LedgerReport
    from settlements.checks import payable_matches_settlements, payouts_within_settled

    refused = args.merchants // args.failing_every if args.failing_every else 0
    per_merchant = args.plans // args.merchants
    unpaid_net = sum(  # the merchants with a refused account: ids 1..M in order, each plan g to merchant g % M
        (TOTAL - FEE) * (per_merchant + (1 if (m - 1) < args.plans % args.merchants else 0))
        for m in range(1, args.merchants + 1)
        if args.failing_every and m % args.failing_every == 0
    )
    net = (TOTAL - FEE) * args.plans
    expected = {
        "settlements": args.merchants,
        "capture lines": args.plans,
        "settled net": net,
        "payouts PAID": args.merchants - refused,
        "payouts FAILED": refused,
        "paid out": net - unpaid_net,
        "settlement.created events": args.merchants,
        "payout.paid events": args.merchants - refused,
        "payout.failed events": refused,
        "PAYOUT entries": args.merchants - refused,
    }
    found = {label: (value - seeded[label], expected.get(label, 0)) for label, value in checks_found().items()}
    report = LedgerReport()
    breaches = payable_matches_settlements(report) + payouts_within_settled(report)
    for breach in breaches[:5]:
        print(f"  invariant 7: {breach}", flush=True)
    found["invariant 7 breaches"] = (len(breaches), 0)
    return found


def main() -> None:
    args = parse_args()

    def seeded():
        from bnpl.schedule import business_today

        day, started = business_today() - timedelta(days=1), time.perf_counter()
        seed(args, day)
        refused = args.merchants // args.failing_every if args.failing_every else 0
        print(
            f"seeded {args.plans:,} plans captured on {day} of {args.merchants:,} merchants ({refused} with an "
            f"account the fake bank refuses) in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        return day, {label: shared.scalar(sql) for label, sql in ROWS_SQL.items()}, checks_found()

    print(machine_line(), flush=True)
    seed_url, (day, seeded_rows, seeded_checks) = shared.seeded_template(args.database_url, args.redis_url, seeded)

    fresh_copy(args, seed_url)
    watch = TreeWatch(shared.database_name(args.database_url)).start()
    bare = bare_script(day)
    watch.stop()
    bare |= {"watch": watch, "rows": rows_written(seeded_rows), "checks": checks(args, seeded_checks), "errors": []}
    print(
        f"  bare SQL script: settled in {bare['settle_s']:.3f} s, paid out {bare['payout_s']:.3f} s later; "
        f"{watch.describe()}",
        flush=True,
    )

    runs = {}
    for workers in args.workers:
        fresh_copy(args, seed_url)
        result = runs[workers] = settle_with_workers(workers, args)
        result |= {"rows": rows_written(seeded_rows), "checks": checks(args, seeded_checks)}
        print(
            f"  {workers} worker process(es): settled after {result['settled_s']:.3f} s, paid out after "
            f"{result['paid_s']:.3f} s, queue drained after {result['drained_s']:.3f} s; "
            f"{result['watch'].describe()}",
            flush=True,
        )
    shared.close_connections()
    print(machine_line(), flush=True)
    ok = report(args, bare, runs)
    print()
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    if not ok:
        sys.exit(1)


def report(args, bare: dict, runs: dict[int, dict]) -> bool:
    """Print the figures and ratios, then the checks; True when every check passed."""
    bare_paid = bare["settle_s"] + bare["payout_s"]
    chunks = next(iter(runs.values()))["chunks"]
    print()
    print(
        f"| run ({args.plans:,} plans, {args.merchants:,} merchants, {chunks} chunks) | settled (s) | vs bare "
        "| paid out (s) | vs bare | queue drained (s) | rows written | other processes (cores) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| bare SQL script | {bare['settle_s']:.3f} | 1.00x | {bare_paid:.3f} | 1.00x | | {bare['rows']:,} "
        f"| {bare['watch'].other_cores or 0:.2f} |"
    )
    ratios = {}
    for workers, r in runs.items():
        watches = [bare["watch"], r["watch"]]
        settled = ratio_or_refusal(r["settled_s"] / bare["settle_s"], watches)
        paid = ratio_or_refusal(r["paid_s"] / bare_paid, watches)
        ratios[workers] = settled, paid
        print(
            f"| settle_merchants(fan_out=True), {workers} worker process(es) | {r['settled_s']:.3f} | {settled} "
            f"| {r['paid_s']:.3f} | {paid} | {r['drained_s']:.3f} | {r['rows']:,} "
            f"| {r['watch'].other_cores or 0:.2f} |"
        )
    print()
    for workers, (settled, paid) in ratios.items():
        print(f"ratio settled, {workers} worker process(es) / bare: {settled} (target <= 1.5x); paid out: {paid}")
    first = next(iter(runs))
    for workers, r in runs.items():
        if workers != first:
            faster = runs[first]["settled_s"] / r["settled_s"]
            watches = [runs[first]["watch"], r["watch"]]
            print(f"ratio {workers} workers / {first}: {ratio_or_refusal(faster, watches)} faster to settled")
    return shared.checks_table({"bare SQL": bare} | {f"{w} worker(s)": r for w, r in runs.items()})


if __name__ == "__main__":
    main()
