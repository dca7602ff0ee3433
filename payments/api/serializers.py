"""Request and response shapes of payments."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.money import MoneyField
from core.serializers import AMOUNT, StrictSerializer, datetime_out, money_out
from ledger.models import JournalEntry
from payments.models import Payment


class InstallmentPayIn(StrictSerializer):
    amount = MoneyField(required=False, help_text="A partial amount; the whole remainder when omitted.")


class PlanPayIn(StrictSerializer):
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
    credit_amount = serializers.DecimalField(
        **AMOUNT, help_text="Paid from the credit balance; the card paid the rest."
    )
    excess_credited = serializers.DecimalField(
        **AMOUNT, help_text="Captured by the gateway beyond the card part, added to the credit balance."
    )
    source = serializers.ChoiceField(choices=Payment.Source.choices)
    attempt = serializers.IntegerField(allow_null=True, help_text="Autopay: 1 on the due date, then the retries.")
    status = serializers.ChoiceField(choices=Payment.Status.choices)
    decline_code = serializers.CharField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
    allocations = AllocationOut(many=True, source="allocations_shown")


class CreditTransactionOut(serializers.Serializer):
    """One movement of a customer's credit balance (a posting on the credit account)."""

    id = serializers.IntegerField()
    user_id = serializers.CharField(source="party.user_id")
    kind = serializers.ChoiceField(source="entry.kind", choices=JournalEntry.Kind.choices)
    amount = serializers.SerializerMethodField(help_text="Positive: added to the balance; negative: spent.")
    currency = serializers.CharField()
    plan_id = serializers.IntegerField(allow_null=True)
    memo = serializers.CharField(source="entry.memo")
    created_at = serializers.DateTimeField(source="entry.created_at")

    @extend_schema_field(serializers.DecimalField(**AMOUNT))
    def get_amount(self, posting) -> str:
        # The credit account is a liability: a credit posting (negative) raises the balance.
        return str(-posting.amount)


# PaymentOut(payment).data without DRF building and binding a copy of every declared field
# per answer (as refunds' refund_out): on a payment that copying took about a tenth of the
# request's Python. The values go through the same field classes' to_representation, and a
# test holds the result equal to PaymentOut's.
def payment_out(payment: Payment) -> dict:
    """What PaymentOut(payment).data gives, for a payment whose customer is loaded."""
    money = money_out
    return {
        "id": payment.pk,
        "plan_id": payment.plan_id,
        "user_id": payment.customer.user_id,
        "amount": money(payment.amount),
        "currency": payment.currency,
        "credit_amount": money(payment.credit_amount),
        "excess_credited": money(payment.excess_credited),
        "source": str(payment.source),
        "attempt": payment.attempt,
        "status": str(payment.status),
        "decline_code": payment.decline_code,
        "created_at": datetime_out(payment.created_at),
        "completed_at": datetime_out(payment.completed_at),
        "allocations": [
            {"installment_id": a.installment_id, "late_fee_id": a.late_fee_id, "amount": money(a.amount)}
            for a in payment.allocations_shown
        ],
    }
