"""The refunds part of the ledger invariants, registered with the ledger's runner: no plan
refunded above its total."""

from django.db.models import F, Sum

from core.money import to_money
from ledger.checks import MAX_LISTED, LedgerReport
from refunds.models import Refund


def over_refunded_plans(report: LedgerReport) -> list[str]:
    rows = (
        Refund.objects.filter(status=Refund.Status.APPROVED)
        .values("plan_id", "plan__total_amount")
        .annotate(refunded=Sum("amount"))
        .filter(refunded__gt=F("plan__total_amount"))
        .order_by("plan_id")
    )
    return [
        f"plan {row['plan_id']} is refunded {to_money(row['refunded'])} above its total {row['plan__total_amount']}"
        for row in rows[:MAX_LISTED]
    ]
