"""Request and response shapes of payments."""

from rest_framework import serializers

from config.money import MoneyField
from payments.models import Payment

AMOUNT = {"max_digits": 12, "decimal_places": 2}


class InstallmentPayIn(serializers.Serializer):
    amount = MoneyField(required=False, help_text="A partial amount; the whole remainder when omitted.")


class PlanPayIn(serializers.Serializer):
    amount = MoneyField(help_text="Allocated to overdue installments first (oldest first), then fees, then the rest.")


class AllocationOut(serializers.Serializer):
    installment_id = serializers.IntegerField(allow_null=True)
    late_fee_id = serializers.IntegerField(allow_null=True)
    amount = serializers.DecimalField(**AMOUNT)


class PaymentOut(serializers.Serializer):
    id = serializers.IntegerField()
    plan_id = serializers.IntegerField()
    user_id = serializers.CharField(source="customer.user_id")
    amount = serializers.DecimalField(**AMOUNT)
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=Payment.Status.choices)
    decline_code = serializers.CharField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
    allocations = AllocationOut(many=True)
