"""Merchant analytics and platform figures: a fixed number of aggregate queries.

Money is per currency and never added across currencies: each figure of an amount is made
for one currency (``by_currency``). Counts (overdue installments, plans by status, the
on-time rate) are not money and cover every currency.

``success_rate`` is the share of installments paid on time among those that have fallen
due (due date before today, cancelled ones left out): paid, and paid on or before the
due date in the business time zone. None when nothing has fallen due yet.
"""

from datetime import date

from django.conf import settings
from django.db.models import Count, DecimalField, F, Q, Sum
from django.db.models.functions import Coalesce

from bnpl.models import PLAN_CAPTURED_STATUSES, Installment, LateFee, Plan
from bnpl.schedule import business_today, days_past_due_bucket
from bnpl.selectors import BUCKETS
from core.money import ZERO, to_money

_MONEY = DecimalField(max_digits=14, decimal_places=2)
# Plans that hold money (installments, postings): those that became ACTIVE. An offer never
# taken (pending, authorized, declined, expired, voided) holds none.
MONEY_STATUSES = PLAN_CAPTURED_STATUSES
MONEY_FIELDS = (
    "total_revenue",
    "outstanding",
    "overdue_amount",
    "refunds_total",
    "processed_total",
    "merchant_fees_total",
    "late_fees_total",
    "payouts_total",
)
EMPTY = {"outstanding": ZERO, "overdue_installments": 0, "overdue_amount": ZERO}


def _money(expression, filter=None):
    return Coalesce(Sum(expression, filter=filter, output_field=_MONEY), ZERO, output_field=_MONEY)


def plan_figures(*, plans, today: date | None = None) -> dict:
    """Counts for the ``plans`` queryset (overdue installments and their buckets, on-time rate,
    plans by status, every status named) and, under ``by_currency``, per currency: what is
    outstanding (unpaid installments and late fees due), overdue (count and amount). The
    currencies are those of the plans that became ACTIVE, or the default one when none did.
    Four queries."""
    today = today or business_today()
    installments = Installment.objects.filter(plan__in=plans)
    open_ = Q(status__in=(Installment.Status.UPCOMING, Installment.Status.OVERDUE))
    per_currency = (
        installments.values("plan__currency")
        .annotate(
            outstanding=_money(F("amount_due") - F("amount_paid"), filter=open_),
            overdue_count=Count("id", filter=Q(status=Installment.Status.OVERDUE)),
            overdue_amount=_money(F("amount_due") - F("amount_paid"), filter=Q(status=Installment.Status.OVERDUE)),
            due=Count("id", filter=Q(due_date__lt=today) & ~Q(status=Installment.Status.CANCELLED)),
            on_time=Count(
                "id",
                filter=Q(due_date__lt=today, status=Installment.Status.PAID, paid_at__date__lte=F("due_date")),
            ),
        )
        .order_by()
    )
    fees_due = dict(
        LateFee.objects.filter(plan__in=plans, status=LateFee.Status.DUE)
        .values("plan__currency")
        .annotate(total=_money(F("amount") - F("amount_paid")))
        .order_by()
        .values_list("plan__currency", "total")
    )
    buckets = dict.fromkeys(BUCKETS, 0)
    for due_date, count in (
        installments.filter(status=Installment.Status.OVERDUE)
        .values("due_date")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("due_date", "n")
    ):
        bucket = days_past_due_bucket((today - due_date).days)
        if bucket in buckets:
            buckets[bucket] += count
    by_status = dict.fromkeys(Plan.Status.values, 0)
    currencies = set()
    for currency, status, n in (
        plans.values("currency", "status").annotate(n=Count("id")).order_by().values_list("currency", "status", "n")
    ):
        by_status[status] += n
        if status in MONEY_STATUSES:
            currencies.add(currency)
    money = {}
    overdue_count = due = on_time = 0
    for row in per_currency:
        # Counts add up across currencies; amounts stay in their own.
        overdue_count, due, on_time = overdue_count + row["overdue_count"], due + row["due"], on_time + row["on_time"]
        money[row["plan__currency"]] = {
            "outstanding": to_money(row["outstanding"] + fees_due.get(row["plan__currency"], ZERO)),
            "overdue_installments": row["overdue_count"],
            "overdue_amount": to_money(row["overdue_amount"]),
        }
    currencies |= set(money) | set(fees_due)
    if not currencies:
        currencies = {settings.BNPL_DEFAULT_CURRENCY}
    return {
        "overdue_installments": overdue_count,
        "overdue_by_bucket": buckets,
        "success_rate": None if not due else round(on_time / due, 4),
        "plans_by_status": by_status,
        "by_currency": [{"currency": currency, **money.get(currency, EMPTY)} for currency in sorted(currencies)],
    }


def in_one_currency(by_currency: list[dict], fields: tuple[str, ...]) -> dict:
    """The top-level figures of a per-currency answer: ``currency`` and each of ``fields`` as
    the one currency's when there is exactly one, else None (never a sum across currencies)."""
    single = by_currency[0] if len(by_currency) == 1 else {}
    return {"currency": single.get("currency"), **{name: single.get(name) for name in fields}}


# The dashboard's names for the ledger's money totals (ledger.selectors.MONEY_TOTALS).
LEDGER_FIELDS = {
    "total_revenue": "collected",
    "refunds_total": "refunded",
    "processed_total": "processed",
    "merchant_fees_total": "merchant_fees",
    "late_fees_total": "late_fees",
    "payouts_total": "paid_out",
}


def merchant_dashboard(*, plans, merchant=None, today: date | None = None) -> dict:
    """The analytics dashboard for ``plans`` and the payouts of ``merchant`` (every merchant's
    when None): money in and out from the ledger, the rest from the plans; each amount per
    currency (``by_currency``), and at the top level for the one currency when there is only
    one (None when there are several). Five queries.

    From the ledger (``ledger.selectors.MONEY_TOTALS``): ``total_revenue`` collected through
    payments; ``processed_total`` the totals of plans that became ACTIVE; ``refunds_total``
    approved refunds taken off unpaid installments, credited or paid back to the card;
    ``merchant_fees_total`` merchants' fees less those refunds gave back; ``late_fees_total``
    late fees charged less those waived (kept apart from the merchants' fees: customers pay
    them); ``payouts_total`` payouts paid to the merchant's bank account."""
    from ledger.selectors import money_totals

    money = money_totals(plans=plans, merchant_id=merchant.pk if merchant is not None else None)
    figures = plan_figures(plans=plans, today=today)
    rows = {row["currency"]: row for row in figures.pop("by_currency")}
    # Postings belong to plans that became ACTIVE, whose currencies are already listed (a plan
    # never goes back), or to payouts of their money; should one not be, its money is still
    # shown rather than dropped.
    for currency in money:
        rows.setdefault(currency, {"currency": currency, **EMPTY})
    by_currency = [
        {
            **rows[currency],
            **{field: money.get(currency, {}).get(total, ZERO) for field, total in LEDGER_FIELDS.items()},
        }
        for currency in sorted(rows)
    ]
    return {**figures, **in_one_currency(by_currency, MONEY_FIELDS), "by_currency": by_currency}
