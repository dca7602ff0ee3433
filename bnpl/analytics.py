"""Merchant analytics and platform figures: a fixed number of aggregate queries.

``success_rate`` is the share of installments paid on time among those that have fallen
due (due date before today, cancelled ones left out): paid, and paid on or before the
due date in the business time zone. None when nothing has fallen due yet.
"""

from datetime import date

from django.db.models import Count, DecimalField, F, Q, Sum
from django.db.models.functions import Coalesce

from bnpl.models import Installment, LateFee, Plan
from bnpl.schedule import business_today, days_past_due_bucket
from core.money import ZERO, to_money

_MONEY = DecimalField(max_digits=14, decimal_places=2)


def _money(expression, filter=None):
    return Coalesce(Sum(expression, filter=filter, output_field=_MONEY), ZERO, output_field=_MONEY)


def plan_figures(*, plans, today: date | None = None) -> dict:
    """Outstanding, overdue, on-time rate and plans by status for the ``plans`` queryset."""
    today = today or business_today()
    installments = Installment.objects.filter(plan__in=plans)
    open_ = Q(status__in=(Installment.Status.UPCOMING, Installment.Status.OVERDUE))
    totals = installments.aggregate(
        outstanding=_money(F("amount_due") - F("amount_paid"), filter=open_),
        overdue_count=Count("id", filter=Q(status=Installment.Status.OVERDUE)),
        overdue_amount=_money(F("amount_due") - F("amount_paid"), filter=Q(status=Installment.Status.OVERDUE)),
        due=Count("id", filter=Q(due_date__lt=today) & ~Q(status=Installment.Status.CANCELLED)),
        on_time=Count(
            "id",
            filter=Q(due_date__lt=today, status=Installment.Status.PAID, paid_at__date__lte=F("due_date")),
        ),
    )
    fees_due = LateFee.objects.filter(plan__in=plans, status=LateFee.Status.DUE).aggregate(
        total=_money(F("amount") - F("amount_paid"))
    )["total"]
    buckets = dict.fromkeys(("1-30", "31-60", "61-90", "90+"), 0)
    for due_date, count in (
        installments.filter(status=Installment.Status.OVERDUE)
        .values("due_date")
        .annotate(n=Count("id"))
        .values_list("due_date", "n")
    ):
        bucket = days_past_due_bucket((today - due_date).days)
        if bucket in buckets:
            buckets[bucket] += count
    by_status = dict.fromkeys(Plan.Status.values, 0)
    by_status.update(dict(plans.values("status").annotate(n=Count("id")).values_list("status", "n")))
    rate = None if not totals["due"] else round(totals["on_time"] / totals["due"], 4)
    return {
        "outstanding": to_money(totals["outstanding"] + fees_due),
        "overdue_installments": totals["overdue_count"],
        "overdue_amount": to_money(totals["overdue_amount"]),
        "overdue_by_bucket": buckets,
        "success_rate": rate,
        "plans_by_status": by_status,
    }


def merchant_dashboard(*, plans, today: date | None = None) -> dict:
    """The analytics dashboard for ``plans``: money in and out from the ledger, the rest from the plans."""
    from ledger.accounts import GATEWAY_CLEARING, MERCHANT_PAYABLE
    from ledger.selectors import posted_total

    return {
        "total_revenue": posted_total(kinds=["PAYMENT"], account=GATEWAY_CLEARING, plans=plans),
        "refunds_total": posted_total(kinds=["REFUND_APPLIED", "REFUND_PAYOUT"], account=MERCHANT_PAYABLE, plans=plans),
        **plan_figures(plans=plans, today=today),
    }
