"""The daily settlement (DESIGN §6): per merchant and currency, everything posted to its
payable before the business day's end and not settled before becomes a line of that day's
settlement, and a positive net is paid out.

Set-based, in chunks of merchants that workers take side by side; each chunk is one
transaction of a fixed number of statements whatever its rows. The chunk locks its
merchants first, so two runs (of one day, or of two days) take turns per merchant: the
second finds the day settled (the unique merchant, day and currency) or the lines taken
(the unique source of each line), and settles nothing twice.

What a line is (signed from the merchant's side, ``net = gross - fee``):
- ``capture``: a plan that became ACTIVE: its total, the merchant's fee, the rest;
- ``refund``: an approved refund, once its payback to the customer is done (paid, credited,
  nothing to pay back, or failed): minus what it took from the payable (its reference: the
  refund's own, given by the merchant's webhook, else its plan's);
- ``fee``: the merchant fee a refund gave back (``BNPL_REFUND_RETURNS_FEE``);
- ``carried``: what an earlier settlement left unpaid (a negative net, a payout capped at
  the payable), once its payout is no longer pending;
- ``adjustment``: the money of a failed payout, back to be paid with this one.
An earlier settlement's remainder comes along when the day has lines of its own, or alone
when it is positive and the merchant has an account to pay it to.
"""

import logging
from datetime import date, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from bnpl.models import PLAN_CAPTURED_STATUSES, Plan
from bnpl.schedule import business_today
from core.db import postgresql
from core.money import to_money
from core.tasks import enqueue, enqueue_many
from events.models import Event
from events.services import events_record_many
from ledger.selectors import payable_balances
from refunds.models import Refund
from settlements.models import ZERO, Payout, Settlement, SettlementChunk, SettlementLine, SettlementRun
from settlements.selectors import business_day_end, chunk_lock_try, merchants_lock

logger = logging.getLogger(__name__)

_S = Settlement._meta.db_table
_L = SettlementLine._meta.db_table
_P = Payout._meta.db_table
_PLAN = Plan._meta.db_table
_REFUND = Refund._meta.db_table
_USER = User._meta.db_table
# A plan that became ACTIVE was captured, whatever happened to it since.
CAPTURED = PLAN_CAPTURED_STATUSES
# A refund is settled when what it takes from the payable is final.
REFUND_FINAL = (
    Refund.PayoutStatus.NONE,
    Refund.PayoutStatus.PAID,
    Refund.PayoutStatus.CREDITED,
    Refund.PayoutStatus.FAILED,
)
# What the chunk reads back of its settlements (their payouts and events need no more).
SETTLEMENT_READ = ("id", "merchant_id", "currency", "business_date", "gross", "fees", "net", "line_count")
# Of a refund's payback, what left the payable (a failed one stayed in it).
REFUND_TAKEN = (Refund.PayoutStatus.PAID, Refund.PayoutStatus.CREDITED)


def settle_merchants(
    *, day: date | None = None, fan_out: bool = False, chunk_merchants: int | None = None
) -> SettlementRun:
    """Settle every merchant for business day ``day`` (yesterday by default): one run, its
    merchants in chunks of ``chunk_merchants`` (``BNPL_SETTLEMENT_CHUNK_MERCHANTS``).

    With ``fan_out`` the chunks go to the workers as a group of tasks and the run is returned
    at once; otherwise, or when the broker cannot be reached, they run here one after the
    other. Running it again for a day settled, or two runs at once, settles nothing twice.
    """
    from settlements.tasks import settlement_chunk_task

    day = day or business_today() - timedelta(days=1)
    if day > business_today():
        raise ValueError("a settlement's day must not be after today")
    size = chunk_merchants or settings.BNPL_SETTLEMENT_CHUNK_MERCHANTS
    with transaction.atomic():
        run = SettlementRun.objects.create(business_date=day, started_at=timezone.now())
        merchants = list(User.objects.filter(role=User.Role.MERCHANT).order_by("pk").values_list("pk", flat=True))
        groups = [merchants[i : i + size] for i in range(0, len(merchants), size)]
        chunks = SettlementChunk.objects.bulk_create(
            SettlementChunk(run=run, first_merchant_id=group[0], last_merchant_id=group[-1]) for group in groups
        )
        run.chunks_total = len(chunks)
        if not chunks:
            run.finished_at = run.started_at
        run.save(update_fields=["chunks_total", "finished_at"])
    ids = [chunk.pk for chunk in chunks]
    if ids and not (fan_out and enqueue_many(settlement_chunk_task, [(pk,) for pk in ids])):
        for pk in ids:
            settlement_chunk(chunk_id=pk)
    run.refresh_from_db()
    return run


def settlement_chunk(*, chunk_id: int) -> bool:
    """Settle one chunk's merchants in one transaction; the payouts it made are sent once it
    commits. False when the chunk was done already or another worker has it."""
    with transaction.atomic():
        chunk = chunk_lock_try(chunk_id)
        if chunk is None:
            return False
        run, now = chunk.run, timezone.now()
        made = _settle(run=run, first=chunk.first_merchant_id, last=chunk.last_merchant_id, now=now)
        chunk.done_at, chunk.settlements_created = now, len(made)
        chunk.save(update_fields=["done_at", "settlements_created"])
        # no_key: the chunks' settlements point at the run, and each insert took a key-share
        # lock on its row; a plain FOR UPDATE would wait for every other chunk's commit.
        run = SettlementRun.objects.select_for_update(no_key=True).get(pk=run.pk)
        run.chunks_done += 1
        run.settlements_created += len(made)
        run.payouts_created += sum(1 for _, payout in made if payout)
        if run.chunks_done >= run.chunks_total:
            run.finished_at = now
        run.save(update_fields=["chunks_done", "settlements_created", "payouts_created", "finished_at"])
        payouts = [payout.pk for _, payout in made if payout]
        if payouts:
            transaction.on_commit(lambda: payouts_send(payouts), robust=True)
    return True


def payouts_send(payout_ids: list[int]) -> None:
    """Send a chunk's payouts through the gateway: one task for them all (a publish per
    payout cost the chunk more than its statements), or here when there are no workers
    (eager mode, broker down); the reconcile task takes any left PENDING."""
    from settlements.services.payouts import payouts_send_each
    from settlements.tasks import payouts_send_task

    if not enqueue(payouts_send_task, payout_ids):
        payouts_send_each(payout_ids)


def _in(values) -> tuple[str, list]:
    values = list(values)
    return ", ".join(["%s"] * len(values)), values


def _settle(*, run: SettlementRun, first: int, last: int, now) -> list[tuple[Settlement, Payout | None]]:
    """The chunk's statements: lock the merchants, make the day's settlements, their lines,
    their totals and payouts, and record their events."""
    if postgresql():
        # Foreign keys checked as each statement writes, not at the commit: the commit then
        # holds the run's row (taken last, shared by every chunk) for no check at all.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    merchants = merchants_lock(first=first, last=last)
    if not merchants:
        return []
    ops = connection.ops
    cutoff = business_day_end(run.business_date)
    p = {
        "first": merchants[0],
        "last": merchants[-1],
        "cutoff": ops.adapt_datetimefield_value(cutoff),
        "now": ops.adapt_datetimefield_value(now),
    }
    captured, captured_args = _in(CAPTURED)
    final, final_args = _in(REFUND_FINAL)
    pending = Payout.Status.PENDING
    # The captured plans of the chunk's merchants not settled yet: the day's settlements are
    # made for them (with the refunds and remainders), and their capture lines from them.
    due = f"""
        SELECT p.id, p.merchant_id, p.currency, p.merchant_reference, p.total_amount,
               COALESCE(p.merchant_fee, 0) AS fee, COALESCE(p.activated_at, p.created_at) AS posted_at
        FROM {_PLAN} p
        WHERE p.merchant_id BETWEEN %s AND %s AND p.status IN ({captured})
          AND COALESCE(p.activated_at, p.created_at) < %s
          AND NOT EXISTS (SELECT 1 FROM {_L} l WHERE l.plan_id = p.id AND l.type = %s)"""  # noqa: S608  # nosec B608
    due_args = [p["first"], p["last"], *captured_args, p["cutoff"], SettlementLine.Type.CAPTURE]
    make_settlements = f"""
        INSERT INTO {_S} (merchant_id, currency, business_date, cutoff_at, gross, fees, net, line_count,
                          run_id, created_at)
        SELECT DISTINCT x.merchant_id, x.currency, %s, %s, 0, 0, 0, 0, %s, %s FROM (
          SELECT merchant_id, currency FROM due
          UNION
          SELECT r.merchant_id, r.currency FROM {_REFUND} r
          WHERE r.merchant_id BETWEEN %s AND %s AND r.status = %s AND r.payout_status IN ({final})
            AND r.updated_at < %s
            AND NOT EXISTS (SELECT 1 FROM {_L} l WHERE l.refund_id = r.id AND l.type = %s)
          UNION
          SELECT s.merchant_id, s.currency FROM {_S} s
          JOIN {_USER} u ON u.id = s.merchant_id
          LEFT JOIN {_P} po ON po.settlement_id = s.id
          WHERE s.merchant_id BETWEEN %s AND %s AND u.payout_account_kind <> ''
            AND (po.status IS NULL OR po.status <> %s)
            AND s.net - COALESCE(CASE WHEN po.status = %s THEN po.amount END, 0) > 0
            AND NOT EXISTS (SELECT 1 FROM {_L} l WHERE l.source_settlement_id = s.id)
        ) x
        WHERE true
        ON CONFLICT DO NOTHING
        RETURNING id, merchant_id, currency"""  # noqa: S608  # nosec B608
    make_args = [
        ops.adapt_datefield_value(run.business_date),
        p["cutoff"],
        run.pk,
        p["now"],
        p["first"],
        p["last"],
        Refund.Status.APPROVED,
        *final_args,
        p["cutoff"],
        SettlementLine.Type.REFUND,
        p["first"],
        p["last"],
        pending,
        Payout.Status.PAID,
    ]
    # Every amount computed here is ROUND(..., 2): SQLite does this arithmetic in binary
    # floating point (287.70 - 0 + 95.70 ... is 687.0999999999999), and a total stored so
    # would fail the comparisons made in SQL later (a payout against its settlement's net,
    # a remainder against zero). Rounded, it is stored as the value Python writes for the
    # same amount. PostgreSQL's numeric is exact: there it changes nothing.
    columns = (
        "settlement_id, type, plan_id, refund_id, source_settlement_id, source_payout_id, merchant_reference,"
        " gross, fee, net, currency, posted_at"
    )
    capture_lines = f"""
        INSERT INTO {_L} ({columns})
        SELECT m.id, %s, d.id, NULL, NULL, NULL, d.merchant_reference, d.total_amount, d.fee,
               ROUND(d.total_amount - d.fee, 2), d.currency, d.posted_at
        FROM due d JOIN made m ON m.merchant_id = d.merchant_id AND m.currency = d.currency
        WHERE true
        ON CONFLICT DO NOTHING"""  # noqa: S608  # nosec B608
    with connection.cursor() as cursor:
        if postgresql():
            # One statement: the plans are read once, for the settlements and their lines.
            statement = f"WITH due AS MATERIALIZED ({due}), made AS ({make_settlements}), captured AS ({capture_lines})"
            statement += " SELECT id FROM made"
            cursor.execute(statement, [*due_args, *make_args, SettlementLine.Type.CAPTURE])
            new_ids = [row[0] for row in cursor.fetchall()]
        else:
            # SQLite has no INSERT in a WITH: the settlements, then their capture lines.
            cursor.execute(f"WITH due AS ({due}) {make_settlements}", [*due_args, *make_args])
            new_ids = [row[0] for row in cursor.fetchall()]
            if new_ids:
                made, made_args = _in(new_ids)
                settlements = f"SELECT id, merchant_id, currency FROM {_S} WHERE id IN ({made})"  # noqa: S608  # nosec B608
                statement = f"WITH due AS ({due}), made AS ({settlements}) {capture_lines}"
                cursor.execute(statement, [*due_args, *made_args, SettlementLine.Type.CAPTURE])
        if not new_ids:
            return []
        new, new_args = _in(new_ids)
        # Refunds: what each took from the payable; and the merchant fee it gave back.
        taken, taken_args = _in(REFUND_TAKEN)
        for kind, gross, fee, only in (
            (
                SettlementLine.Type.REFUND,
                "ROUND(-(r.applied_amount"
                f" + CASE WHEN r.payout_status IN ({taken}) THEN r.payout_amount ELSE 0 END), 2)",
                "0",
                "",
            ),
            (SettlementLine.Type.FEE, "0", "-r.merchant_fee_returned", "AND r.merchant_fee_returned > 0"),
        ):
            cursor.execute(
                f"""
                INSERT INTO {_L} ({columns})
                SELECT s.id, %s, r.plan_id, r.id, NULL, NULL,
                       COALESCE(NULLIF(r.merchant_reference, ''), rp.merchant_reference), {gross}, {fee},
                       ROUND(({gross}) - ({fee}), 2), r.currency, r.updated_at
                FROM {_S} s JOIN {_REFUND} r ON r.merchant_id = s.merchant_id AND r.currency = s.currency
                JOIN {_PLAN} rp ON rp.id = r.plan_id
                WHERE s.id IN ({new}) AND r.merchant_id BETWEEN %s AND %s AND r.status = %s
                  AND r.payout_status IN ({final}) AND r.updated_at < %s {only}
                  AND NOT EXISTS (SELECT 1 FROM {_L} l WHERE l.refund_id = r.id AND l.type = %s)
                ON CONFLICT DO NOTHING
                """,  # noqa: S608  # nosec B608
                [
                    kind,
                    *(taken_args if kind == SettlementLine.Type.REFUND else []) * 2,
                    *new_args,
                    p["first"],
                    p["last"],
                    Refund.Status.APPROVED,
                    *final_args,
                    p["cutoff"],
                    kind,
                ],
            )
        # Earlier settlements' remainders, once their payouts are no longer pending: a failed
        # payout's money back (adjustment), and what the payout did not cover (carried).
        cursor.execute(
            f"""
            INSERT INTO {_L} ({columns})
            SELECT n.id, x.type, NULL, NULL, x.source_id, x.payout_id, '', x.net, 0, x.net, n.currency, x.posted_at
            FROM {_S} n JOIN (
              SELECT s.merchant_id, s.currency, s.id AS source_id, NULL AS payout_id, %s AS type,
                     ROUND(s.net - COALESCE(po.amount, 0), 2) AS net, s.created_at AS posted_at
              FROM {_S} s LEFT JOIN {_P} po ON po.settlement_id = s.id
              WHERE s.merchant_id BETWEEN %s AND %s AND s.id NOT IN ({new}) AND (po.status IS NULL OR po.status <> %s)
                AND NOT EXISTS (SELECT 1 FROM {_L} l WHERE l.source_settlement_id = s.id)
              UNION ALL
              SELECT s.merchant_id, s.currency, s.id, po.id, %s, po.amount, po.updated_at
              FROM {_S} s JOIN {_P} po ON po.settlement_id = s.id
              WHERE s.merchant_id BETWEEN %s AND %s AND s.id NOT IN ({new}) AND po.status = %s
                AND NOT EXISTS (SELECT 1 FROM {_L} l WHERE l.source_settlement_id = s.id)
            ) x ON x.merchant_id = n.merchant_id AND x.currency = n.currency
            WHERE n.id IN ({new}) AND x.net <> 0
            ON CONFLICT DO NOTHING
            """,  # noqa: S608  # nosec B608
            [
                SettlementLine.Type.CARRIED,
                p["first"],
                p["last"],
                *new_args,
                pending,
                SettlementLine.Type.ADJUSTMENT,
                p["first"],
                p["last"],
                *new_args,
                Payout.Status.FAILED,
                *new_args,
            ],
        )
        cursor.execute(
            f"""
            UPDATE {_S} SET gross = t.gross, fees = t.fees, net = t.net, line_count = t.lines
            FROM (SELECT settlement_id, ROUND(SUM(gross), 2) AS gross, ROUND(SUM(fee), 2) AS fees,
                         ROUND(SUM(net), 2) AS net, COUNT(*) AS lines
                  FROM {_L} WHERE settlement_id IN ({new}) GROUP BY settlement_id) t
            WHERE {_S}.id = t.settlement_id
            """,  # noqa: S608  # nosec B608
            new_args,
        )
        # A day whose every line another run took first (it cannot, with the merchants
        # locked; kept so an empty settlement is never left).
        cursor.execute(f"DELETE FROM {_S} WHERE id IN ({new}) AND line_count = 0", new_args)  # noqa: S608  # nosec B608
    # Of the merchant only its account (decrypting the user's other encrypted columns cost
    # the chunk more than its payouts).
    made = list(
        Settlement.objects.filter(pk__in=new_ids)
        .select_related("merchant")
        .only(
            *SETTLEMENT_READ,
            "merchant__payout_account",
            "merchant__payout_account_kind",
            "merchant__payout_account_name",
        )
        .order_by("pk")
    )
    payouts = _payouts_make(made, now=now)
    events_record_many(
        events=[
            (
                settlement.merchant_id,
                Event.Type.SETTLEMENT_CREATED,
                settlement_event_data(settlement, payouts.get(settlement.pk)),
            )
            for settlement in made
        ]
    )
    return [(settlement, payouts.get(settlement.pk)) for settlement in made]


def _payouts_make(made: list[Settlement], *, now) -> dict[int, Payout]:
    """A PENDING payout for each settlement with a positive net whose merchant has an
    account: never above what the merchant is owed now less what is on its way already
    (its payable, lowered by refunds since the day ended); the rest is carried."""
    due = [s for s in made if s.net > 0 and s.merchant.payout_account_kind]
    if not due:
        return {}
    merchants = sorted({s.merchant_id for s in due})
    payable = payable_balances(merchant_ids=merchants)
    on_the_way = {
        (row["merchant_id"], row["currency"]): row["total"]
        for row in Payout.objects.filter(status=Payout.Status.PENDING, merchant_id__in=merchants)
        .values("merchant_id", "currency")
        .annotate(total=Sum("amount"))
        .order_by()
    }
    payouts = []
    for settlement in due:
        key = (settlement.merchant_id, settlement.currency)
        available = to_money(payable.get(key, ZERO)) - to_money(on_the_way.get(key, ZERO))
        amount = min(to_money(settlement.net), available)
        if amount <= 0:
            continue
        on_the_way[key] = to_money(on_the_way.get(key, ZERO)) + amount
        payouts.append(
            Payout(
                settlement=settlement,
                merchant_id=settlement.merchant_id,
                amount=amount,
                payable_available=available,
                currency=settlement.currency,
                account=settlement.merchant.payout_account,
                account_name=settlement.merchant.payout_account_name,
                account_masked=settlement.merchant.masked_payout_account,
                created_at=now,
            )
        )
    Payout.objects.bulk_create(payouts)
    return {payout.settlement_id: payout for payout in payouts}


def settlement_event_data(settlement: Settlement, payout: Payout | None) -> dict:
    """The ``settlement.created`` event's data (amounts as strings, the API's way)."""
    return {
        "settlement_id": settlement.pk,
        "business_date": settlement.business_date.isoformat(),
        "currency": settlement.currency,
        "gross": str(to_money(settlement.gross)),
        "fees": str(to_money(settlement.fees)),
        "net": str(to_money(settlement.net)),
        "line_count": settlement.line_count,
        "payout": None
        if payout is None
        else {"payout_id": payout.pk, "amount": str(payout.amount), "status": payout.status},
    }
