from rest_framework import serializers

from core.money import MoneyField
from core.serializers import StrictSerializer
from refunds.models import Refund

AMOUNT = {"max_digits": 12, "decimal_places": 2}


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
