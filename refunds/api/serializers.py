from rest_framework import serializers

from core.money import MoneyField
from core.serializers import AMOUNT, StrictSerializer, datetime_out, money_out
from refunds.models import Refund


class RefundCreateIn(StrictSerializer):
    plan_id = serializers.IntegerField(min_value=1)
    transaction_id = serializers.CharField(max_length=128, help_text="Your id for this refund; one refund per id.")
    amount = MoneyField()
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    user_id = serializers.CharField(max_length=64, required=False, help_text="If given, must be the plan's customer.")
    payout_method = serializers.ChoiceField(
        choices=Refund.PayoutMethod.choices,
        required=False,
        help_text="Where what exceeds the unpaid remainder goes: back to the card (CARD) or to the "
        "customer's credit balance (CREDIT). Default from the platform's settings.",
    )


class RefundOut(serializers.Serializer):
    id = serializers.IntegerField()
    plan_id = serializers.IntegerField()
    transaction_id = serializers.CharField()
    user_id = serializers.CharField(source="customer.user_id")
    merchant_id = serializers.CharField(source="merchant.user_id")
    amount = serializers.DecimalField(**AMOUNT)
    currency = serializers.CharField()
    reason = serializers.CharField()
    status = serializers.ChoiceField(choices=Refund.Status.choices)
    applied_amount = serializers.DecimalField(**AMOUNT, help_text="Taken off unpaid installments.")
    payout_amount = serializers.DecimalField(**AMOUNT, help_text="Paid back to the card or credited.")
    payout_method = serializers.ChoiceField(choices=Refund.PayoutMethod.choices)
    payout_status = serializers.ChoiceField(choices=Refund.PayoutStatus.choices)
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)


# RefundOut(refund).data without DRF building and binding a copy of every declared field per
# answer (as bnpl.api.serializers.plan_out): on a refund request that took longer than the
# statements. The values go through the same field classes' to_representation, and a test
# holds the result equal to RefundOut's.
def refund_out(refund: Refund) -> dict:
    """What RefundOut(refund).data gives, for a refund whose customer and merchant are loaded."""
    return {
        "id": refund.pk,
        "plan_id": refund.plan_id,
        "transaction_id": refund.transaction_id,
        "user_id": refund.customer.user_id,
        "merchant_id": refund.merchant.user_id,
        "amount": money_out(refund.amount),
        "currency": refund.currency,
        "reason": refund.reason,
        "status": str(refund.status),
        "applied_amount": money_out(refund.applied_amount),
        "payout_amount": money_out(refund.payout_amount),
        "payout_method": str(refund.payout_method),
        "payout_status": str(refund.payout_status),
        "created_at": datetime_out(refund.created_at),
        "decided_at": datetime_out(refund.decided_at),
    }
