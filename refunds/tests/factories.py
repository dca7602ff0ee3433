"""Refunds for tests, made through the refund services (never rows written past them)."""

from decimal import Decimal

from accounts.models import User
from bnpl.models import Plan
from refunds.models import Refund
from refunds.services import refund_request, refund_status_apply


def refund_requested(
    plan: Plan,
    amount: str | Decimal = "10.00",
    *,
    transaction_id: str = "rf-test",
    requester: User | None = None,
    payout_method: str | None = None,
    status: str | None = None,
) -> Refund:
    """A refund on ``plan`` requested by its merchant (or ``requester``); moved on to
    ``status`` (a Refund.Status) by the merchant's webhook when given."""
    refund, _ = refund_request(
        plan_id=plan.pk,
        transaction_id=transaction_id,
        amount=Decimal(amount),
        reason="",
        requester=requester or plan.merchant,
        payout_method=payout_method,
    )
    if status:
        refund = refund_status_apply(refund_id=refund.pk, status=status, source="webhook")
    return refund
