"""The refunds part of the ledger invariants: no plan refunded above its total."""

from django.db.models import F, Sum

from core.money import to_money
from refunds.models import Refund


def over_refunded_plans() -> list[str]:
    rows = (
        Refund.objects.filter(status=Refund.Status.APPROVED)
        .values("plan_id", "plan__total_amount")
        .annotate(refunded=Sum("amount"))
        .filter(refunded__gt=F("plan__total_amount"))
    )
    return [
        f"plan {row['plan_id']} is refunded {to_money(row['refunded'])} above its total {row['plan__total_amount']}"
        for row in rows
    ]
