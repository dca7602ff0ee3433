from rest_framework import serializers

from settlements.models import Payout, SettlementLine

AMOUNT = {"max_digits": 14, "decimal_places": 2}


class SettlementOut(serializers.Serializer):
    id = serializers.IntegerField()
    merchant_id = serializers.CharField(source="merchant.user_id")
    business_date = serializers.DateField()
    currency = serializers.CharField()
    gross = serializers.DecimalField(**AMOUNT, help_text="Sum of the lines' gross: captures less refunds.")
    fees = serializers.DecimalField(**AMOUNT, help_text="Merchant fees charged, less those refunds gave back.")
    net = serializers.DecimalField(
        **AMOUNT, help_text="`gross - fees`, with what earlier settlements carried; paid out when positive."
    )
    line_count = serializers.IntegerField()
    cutoff_at = serializers.DateTimeField(help_text="Everything posted before this instant and not settled before.")
    # Flat rather than a nullable object: OpenAPI 3.0 has no valid form for a nullable reference.
    # No default: a settlement without a payout reads as null (DRF's lookup of a missing
    # one-to-one), and the fields stay required in the schema, so clients need not expect
    # them absent.
    payout_id = serializers.IntegerField(source="payout.id", allow_null=True)
    payout_amount = serializers.DecimalField(**AMOUNT, source="payout.amount", allow_null=True)
    # A string, not the enum: a nullable enum reference is not valid OpenAPI 3.0 either.
    payout_status = serializers.CharField(
        source="payout.status",
        allow_null=True,
        help_text="`PENDING`, `PAID` or `FAILED`; null when nothing was paid out (a net not positive, carried; "
        "or no bank account on file).",
    )
    created_at = serializers.DateTimeField()


class SettlementLineOut(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=SettlementLine.Type.choices)
    plan_id = serializers.IntegerField(allow_null=True)
    merchant_reference = serializers.CharField()
    refund_id = serializers.IntegerField(allow_null=True)
    gross = serializers.DecimalField(**AMOUNT)
    fee = serializers.DecimalField(**AMOUNT)
    net = serializers.DecimalField(**AMOUNT, help_text="`gross - fee`: positive is owed to the merchant.")
    currency = serializers.CharField()
    posted_at = serializers.DateTimeField()


class PayoutOut(serializers.Serializer):
    id = serializers.IntegerField()
    settlement_id = serializers.IntegerField()
    merchant_id = serializers.CharField(source="merchant.user_id")
    amount = serializers.DecimalField(**AMOUNT)
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=Payout.Status.choices)
    account = serializers.CharField(source="account_masked", help_text="The bank account paid, masked.")
    failure_code = serializers.CharField(help_text="Why the bank refused it, e.g. `account_closed`; empty otherwise.")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
