"""Late fees: charging them in the sweep, within each plan's cap, and posting them.

A fee is born DUE here; paying and waiving it are transitions of ``installments``.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from bnpl.models import Installment, LateFee
from core.db import postgresql
from core.money import ZERO, floor_money
from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME, ledger_account_ids
from ledger.models import JournalEntry
from ledger.services import Leg, ledger_post_many
from ledger.sql import ledger_post_ctes


@dataclass(frozen=True)
class _FeeCandidate:
    installment_id: int
    plan_id: int
    customer_id: int
    currency: str
    total_amount: Decimal
    kind: str


def late_fee_cap(total_amount: Decimal) -> Decimal:
    """The most a plan may be charged in late fees: min(percent of its total, fixed amount)."""
    share = floor_money(total_amount * settings.BNPL_LATE_FEE_CAP_PERCENT / 100)
    return min(share, settings.BNPL_LATE_FEE_CAP_AMOUNT)


# The late fees of a chunk, their ledger entry and postings in one PostgreSQL statement.
# A plan's candidates are priced in the order late_fees_charge() takes them (first fees,
# then second fees, each by sequence): with ``room`` what the cap still allows and ``upto``
# the running sum of prices, a fee is what its price adds to min(room, upto), so the fee
# that meets the cap is cut to fit and those after it are not charged. The fees of a run
# are one journal entry per currency (late_fees_charge() says why), posted by the ledger's
# own SQL (ledger.sql) from the rows of this statement; a test holds it equal to the ORM path.
_LATE_FEES_PG_SQL = """
WITH overdue AS MATERIALIZED (
  SELECT i.id, i.plan_id, i.sequence, i.overdue_since, p.customer_id, p.currency, p.total_amount
  FROM bnpl_installment i JOIN bnpl_plan p ON p.id = i.plan_id
  WHERE i.status = %(overdue)s AND i.plan_id BETWEEN %(first)s AND %(last)s
), candidates AS MATERIALIZED (
  SELECT o.*, %(first_kind)s::varchar AS kind, %(first_fee)s::numeric AS price, 0 AS kind_order FROM overdue o
  WHERE NOT EXISTS (SELECT 1 FROM bnpl_latefee f WHERE f.installment_id = o.id AND f.kind = %(first_kind)s)
  UNION ALL
  SELECT o.*, %(second_kind)s::varchar, %(second_fee)s::numeric, 1 FROM overdue o
  WHERE o.overdue_since <= %(second_day)s
    AND EXISTS (SELECT 1 FROM bnpl_latefee f WHERE f.installment_id = o.id AND f.kind = %(first_kind)s)
    AND NOT EXISTS (SELECT 1 FROM bnpl_latefee f WHERE f.installment_id = o.id AND f.kind = %(second_kind)s)
), used AS (
  SELECT plan_id, SUM(amount) AS amount FROM bnpl_latefee
  WHERE status <> %(waived)s AND plan_id BETWEEN %(first)s AND %(last)s GROUP BY plan_id
), priced AS (
  SELECT c.*,
    GREATEST(LEAST(%(cap_amount)s::numeric, floor(c.total_amount * %(cap_percent)s::numeric) / 100)
             - COALESCE(u.amount, 0), 0) AS room,
    SUM(c.price) OVER (PARTITION BY c.plan_id ORDER BY c.kind_order, c.sequence ROWS UNBOUNDED PRECEDING) AS upto
  FROM candidates c LEFT JOIN used u ON u.plan_id = c.plan_id
), charged AS MATERIALIZED (
  SELECT id AS installment_id, plan_id, sequence, kind, kind_order, customer_id, currency,
         LEAST(room, upto) - LEAST(room, upto - price) AS amount
  FROM priced WHERE LEAST(room, upto) - LEAST(room, upto - price) > 0
), currencies AS MATERIALIZED (
  SELECT currency AS entry_key, %(entry_kind)s AS kind, %(memo)s || ': ' || count(*) || ' in ' || currency AS memo,
         NULL::bigint AS plan_id, %(now)s::timestamptz AS created_at, SUM(amount) AS amount
  FROM charged GROUP BY currency
), fees AS (
  INSERT INTO bnpl_latefee (installment_id, plan_id, kind, amount, amount_paid, status, waived_reason, created_at)
  SELECT installment_id, plan_id, kind, amount, 0, %(due)s, '', %(now)s FROM charged
  ORDER BY plan_id, kind_order, sequence
), legs AS (
  SELECT currency AS entry_key, %(receivable)s::bigint AS account_id, amount, currency, plan_id,
         customer_id AS party_id, row_number() OVER (ORDER BY plan_id, kind_order, sequence) AS leg_order
  FROM charged
  UNION ALL
  SELECT entry_key, %(fee_income)s::bigint, -amount, entry_key, NULL, NULL, 9223372036854775807 FROM currencies
), {ledger_post}
SELECT count(*) FROM charged
""".replace("{ledger_post}", ledger_post_ctes(entries="currencies", legs="legs"))  # constants and the ledger's CTEs  # nosec B608


def late_fees_charge(*, today: date, plans: tuple[int, int] | None = None, memo: str = "Late fees") -> int:
    """Charge the first fee of newly overdue installments and the second of those still
    unpaid N days on, each at most once, within the plan's cap; post them to the ledger.
    ``plans`` (first and last id) limits it to a sweep chunk's plans. Returns the fees charged.

    The fees charged together are one journal entry per currency (``memo`` and the count):
    a line owed by each fee's customer on its plan, and one line of fee income. Income is
    not followed per plan, and an entry per fee cost the sweep an entry and a posting more
    per fee, with their checks, for nothing the books use.

    Runs inside a sweep chunk's transaction. A fixed number of queries: on PostgreSQL one
    statement, no row passing through Python.
    """
    if postgresql() and plans is not None:
        return _late_fees_charge_pg(today=today, plans=plans, memo=memo)
    fields = ("id", "plan_id", "plan__customer_id", "plan__currency", "plan__total_amount")
    overdue = Installment.objects.filter(status=Installment.Status.OVERDUE)
    if plans is not None:
        overdue = overdue.filter(plan__gte=plans[0], plan__lte=plans[1])
    firsts = overdue.exclude(late_fees__kind=LateFee.Kind.FIRST).values_list(*fields)
    second_day = today - timedelta(days=settings.BNPL_LATE_FEE_SECOND_AFTER_DAYS)
    seconds = (
        overdue.filter(overdue_since__lte=second_day, late_fees__kind=LateFee.Kind.FIRST)
        .exclude(late_fees__kind=LateFee.Kind.SECOND)
        .values_list(*fields)
    )
    candidates = [_FeeCandidate(*row, kind=LateFee.Kind.FIRST) for row in firsts.order_by("plan_id", "sequence")]
    candidates += [_FeeCandidate(*row, kind=LateFee.Kind.SECOND) for row in seconds.order_by("plan_id", "sequence")]
    if not candidates:
        return 0
    charged = dict(
        LateFee.objects.filter(plan_id__in={c.plan_id for c in candidates})
        .exclude(status=LateFee.Status.WAIVED)
        .values("plan_id")
        .annotate(total=Sum("amount"))
        .values_list("plan_id", "total")
    )
    price = {LateFee.Kind.FIRST: settings.BNPL_LATE_FEE_FIRST, LateFee.Kind.SECOND: settings.BNPL_LATE_FEE_SECOND}
    fees, legs = [], defaultdict(list)
    for candidate in sorted(candidates, key=lambda c: (c.plan_id, c.kind != LateFee.Kind.FIRST)):
        used = charged.get(candidate.plan_id, ZERO)
        amount = min(price[candidate.kind], late_fee_cap(candidate.total_amount) - used)
        if amount <= 0:
            continue
        charged[candidate.plan_id] = used + amount
        fees.append(
            LateFee(
                installment_id=candidate.installment_id,
                plan_id=candidate.plan_id,
                kind=candidate.kind,
                amount=amount,
            )
        )
        legs[candidate.currency].append(
            Leg(CUSTOMER_RECEIVABLE, amount, candidate.currency, candidate.plan_id, candidate.customer_id)
        )
    LateFee.objects.bulk_create(fees)
    ledger_post_many(
        kind=JournalEntry.Kind.LATE_FEE,
        entries=[
            (
                None,
                f"{memo}: {len(owed)} in {currency}",
                [*owed, Leg(FEE_INCOME, -sum((leg.amount for leg in owed), ZERO), currency)],
            )
            for currency, owed in sorted(legs.items())
        ],
    )
    return len(fees)


def _late_fees_charge_pg(*, today: date, plans: tuple[int, int], memo: str) -> int:
    accounts = ledger_account_ids()
    with connection.cursor() as cursor:
        cursor.execute(
            _LATE_FEES_PG_SQL,
            {
                "first": plans[0],
                "last": plans[1],
                "first_fee": settings.BNPL_LATE_FEE_FIRST,
                "second_fee": settings.BNPL_LATE_FEE_SECOND,
                "second_day": today - timedelta(days=settings.BNPL_LATE_FEE_SECOND_AFTER_DAYS),
                "cap_amount": settings.BNPL_LATE_FEE_CAP_AMOUNT,
                "cap_percent": settings.BNPL_LATE_FEE_CAP_PERCENT,
                "now": timezone.now(),
                "entry_kind": JournalEntry.Kind.LATE_FEE,
                "memo": memo,
                "receivable": accounts[CUSTOMER_RECEIVABLE],
                "fee_income": accounts[FEE_INCOME],
                "overdue": Installment.Status.OVERDUE,
                "first_kind": LateFee.Kind.FIRST,
                "second_kind": LateFee.Kind.SECOND,
                "due": LateFee.Status.DUE,
                "waived": LateFee.Status.WAIVED,
            },
        )
        return cursor.fetchone()[0]
