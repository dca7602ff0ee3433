"""Request and response shapes of plans, installments, late fees, debt status, analytics and spending power."""

from rest_framework import serializers

from accounts.models import User
from bnpl.models import Installment, LateFee, Plan
from bnpl.selectors import BUCKETS
from core.money import CurrencyField, MoneyField
from core.serializers import AMOUNT, StrictSerializer, date_out, datetime_out, money_out


class PlanCreateIn(StrictSerializer):
    user_id = serializers.CharField(max_length=64, help_text="The customer offered the plan.")
    merchant_id = serializers.CharField(
        max_length=64, required=False, help_text="The merchant; required of an operator, a merchant sells as itself."
    )
    total_amount = MoneyField(help_text="0 < amount <= 100000.00, at most two decimals, as a string.")
    installment_count = serializers.IntegerField(min_value=2, max_value=24, default=4)
    frequency = serializers.ChoiceField(choices=Plan.Frequency.choices, default=Plan.Frequency.MONTHLY)
    currency = CurrencyField(required=False)
    merchant_reference = serializers.CharField(
        max_length=128,
        required=False,
        allow_blank=True,
        default="",
        help_text="Your order's reference, unique among your plans: sent again with the same terms it returns "
        "the plan it made (200); with other terms, 409 `merchant_reference_conflict`.",
    )
    capture_mode = serializers.ChoiceField(
        choices=Plan.CaptureMode.choices,
        default=Plan.CaptureMode.AUTOMATIC,
        help_text="`automatic`: ACTIVE when the customer confirms; `manual`: AUTHORIZED until you capture it.",
    )


class PlanCaptureIn(StrictSerializer):
    amount = MoneyField(
        required=False, help_text="What to capture, at most the authorized amount; the whole of it when omitted."
    )


class NoBody(StrictSerializer):
    """An action that takes no fields (an empty object, or no body)."""


class ScheduleItemOut(serializers.Serializer):
    sequence = serializers.IntegerField()
    amount_due = serializers.DecimalField(**AMOUNT)
    due_date = serializers.DateField()


class InstallmentOut(serializers.Serializer):
    id = serializers.IntegerField()
    plan_id = serializers.IntegerField()
    sequence = serializers.IntegerField()
    amount_due = serializers.DecimalField(**AMOUNT)
    amount_paid = serializers.DecimalField(**AMOUNT)
    amount_remaining = serializers.DecimalField(**AMOUNT)
    due_date = serializers.DateField()
    status = serializers.ChoiceField(choices=Installment.Status.choices)
    paid_at = serializers.DateTimeField(allow_null=True)


class PlanOut(serializers.Serializer):
    id = serializers.IntegerField()
    user_id = serializers.CharField(source="customer.user_id")
    merchant_id = serializers.CharField(source="merchant.user_id")
    total_amount = serializers.DecimalField(**AMOUNT)
    currency = serializers.CharField()
    installment_count = serializers.IntegerField()
    frequency = serializers.ChoiceField(choices=Plan.Frequency.choices)
    status = serializers.ChoiceField(choices=Plan.Status.choices)
    merchant_reference = serializers.CharField()
    purchase_date = serializers.DateField()
    capture_mode = serializers.ChoiceField(choices=Plan.CaptureMode.choices)
    authorized_amount = serializers.DecimalField(
        **AMOUNT, source="amount_authorized", help_text="What the customer agreed to (or is offered)."
    )
    checkout_url = serializers.CharField(
        allow_null=True, help_text="The hosted page where the customer confirms or declines, while PENDING."
    )
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When a PENDING offer or an AUTHORIZED plan lapses (EXPIRED)."
    )
    confirmed_at = serializers.DateTimeField(allow_null=True)
    amount_paid = serializers.DecimalField(**AMOUNT, source="installments_paid")
    amount_remaining = serializers.DecimalField(**AMOUNT, source="installments_remaining")
    created_at = serializers.DateTimeField()
    schedule = ScheduleItemOut(
        many=True,
        source="schedule_shown",
        help_text="The installments' amounts and due dates; before the plan is ACTIVE, what they would be "
        "if it became ACTIVE today (installments are made then).",
    )
    installments = InstallmentOut(many=True, source="installments_in_order")


# PlanOut(plan).data without DRF building and binding a copy of every declared field per
# response: the plan is the API's most frequent answer (created, read), and that machinery
# cost more than the two statements that read it. The values go through the same field
# classes' to_representation, and a test holds the result equal to PlanOut's.
def installment_out(installment: Installment) -> dict:
    """What InstallmentOut(installment).data gives."""
    return {
        "id": installment.pk,
        "plan_id": installment.plan_id,
        "sequence": installment.sequence,
        "amount_due": money_out(installment.amount_due),
        "amount_paid": money_out(installment.amount_paid),
        "amount_remaining": money_out(installment.amount_remaining),
        "due_date": date_out(installment.due_date),
        "status": str(installment.status),
        "paid_at": datetime_out(installment.paid_at),
    }


def plan_out(plan: Plan) -> dict:
    """What PlanOut(plan).data gives, for a plan whose parties and installments are loaded."""
    installments = [installment_out(installment) for installment in plan.installments_in_order]
    return {
        "id": plan.pk,
        "user_id": plan.customer.user_id,
        "merchant_id": plan.merchant.user_id,
        "total_amount": money_out(plan.total_amount),
        "currency": plan.currency,
        "installment_count": plan.installment_count,
        "frequency": str(plan.frequency),
        "status": str(plan.status),
        "merchant_reference": plan.merchant_reference,
        "purchase_date": date_out(plan.purchase_date),
        "capture_mode": str(plan.capture_mode),
        "authorized_amount": money_out(plan.amount_authorized),
        "checkout_url": plan.checkout_url,
        "expires_at": datetime_out(plan.expires_at),
        "confirmed_at": datetime_out(plan.confirmed_at),
        "amount_paid": money_out(plan.installments_paid),
        "amount_remaining": money_out(plan.installments_remaining),
        "created_at": datetime_out(plan.created_at),
        "schedule": [
            {
                "sequence": item["sequence"],
                "amount_due": money_out(item["amount_due"]),
                "due_date": date_out(item["due_date"]),
            }
            for item in plan.schedule_shown
        ],
        "installments": installments,
    }


class LateFeeOut(serializers.Serializer):
    id = serializers.IntegerField()
    plan_id = serializers.IntegerField()
    installment_id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=LateFee.Kind.choices)
    amount = serializers.DecimalField(**AMOUNT)
    amount_paid = serializers.DecimalField(**AMOUNT)
    status = serializers.ChoiceField(choices=LateFee.Status.choices)
    waived_reason = serializers.CharField()
    waived_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class LateFeeWaiveIn(StrictSerializer):
    reason = serializers.CharField(max_length=500)


class OverdueInstallmentOut(serializers.Serializer):
    id = serializers.IntegerField()
    plan_id = serializers.IntegerField()
    currency = serializers.CharField(help_text="The plan's currency, of the amounts.")
    amount_due = serializers.DecimalField(**AMOUNT)
    amount_remaining = serializers.DecimalField(**AMOUNT)
    due_date = serializers.DateField()
    days_overdue = serializers.IntegerField()
    bucket = serializers.ChoiceField(choices=BUCKETS, help_text="Days past due.")


def _by_bucket(name: str, doc: str, field: type[serializers.Field], **kwargs) -> type[serializers.Serializer]:
    """A serializer with one required field per days-past-due bucket ("1-30" ... "90+"): the
    keys are fixed, so the schema names them (a map would let a client expect any key)."""
    fields = {bucket: field(**kwargs) for bucket in BUCKETS}  # not identifiers: declared this way
    return type(name, (serializers.Serializer,), {"__doc__": doc, "__module__": __name__, **fields})


OverdueAmountByBucketOut = _by_bucket(
    "OverdueAmountByBucketOut",
    "Unpaid remainder of overdue installments by days past due.",
    serializers.DecimalField,
    **AMOUNT,
)
# At the top level of the debt status: the one currency's, each null when there are several.
OverdueAmountByBucketOrNullOut = _by_bucket(
    "OverdueAmountByBucketOrNullOut",
    "Unpaid remainder of overdue installments by days past due, in the one currency owed; each null when the "
    "customer owes in several (see `by_currency`).",
    serializers.DecimalField,
    allow_null=True,
    **AMOUNT,
)
OverdueCountByBucketOut = _by_bucket(
    "OverdueCountByBucketOut", "Overdue installments by days past due.", serializers.IntegerField, min_value=0
)


# A figure that exists only in one currency: at the top level of a per-currency answer it is
# the one currency's, and null when there are several (amounts are never added across them).
ONE_CURRENCY = " In `currency`; null when there are several currencies (see `by_currency`)."


class CurrencyDebtOut(serializers.Serializer):
    currency = serializers.CharField()
    total_debt = serializers.DecimalField(**AMOUNT, help_text="Everything unpaid, late fees included.")
    overdue_amount = serializers.DecimalField(**AMOUNT, help_text="Unpaid remainder of overdue installments.")
    fees_due = serializers.DecimalField(**AMOUNT, help_text="Late fees due.")
    overdue_by_bucket = OverdueAmountByBucketOut()


class DebtStatusOut(serializers.Serializer):
    user_id = serializers.CharField()
    user_status = serializers.ChoiceField(choices=User.Status.choices)
    has_overdue = serializers.BooleanField(help_text="Something is overdue, in any currency.")
    currency = serializers.CharField(
        allow_null=True,
        help_text="The currency of the top-level amounts: the one the customer owes in (the default currency "
        "when nothing is owed); null when the customer owes in several, whose amounts are in `by_currency` only.",
    )
    total_debt = serializers.DecimalField(
        **AMOUNT, allow_null=True, help_text="Everything unpaid, late fees included." + ONE_CURRENCY
    )
    overdue_amount = serializers.DecimalField(
        **AMOUNT, allow_null=True, help_text="Unpaid remainder of overdue installments." + ONE_CURRENCY
    )
    fees_due = serializers.DecimalField(**AMOUNT, allow_null=True, help_text="Late fees due." + ONE_CURRENCY)
    overdue_by_bucket = OverdueAmountByBucketOrNullOut(help_text="Overdue by days past due." + ONE_CURRENCY)
    by_currency = CurrencyDebtOut(
        many=True,
        help_text="The same figures for each currency the customer owes in, by currency code (one entry, the "
        "default currency at zero, when nothing is owed).",
    )
    overdue_installments = OverdueInstallmentOut(many=True, help_text="Oldest due first, each in its currency.")


def _money_or_none(value):
    return None if value is None else money_out(value)


def _currency_debt_out(debt) -> dict:
    return {
        "currency": debt.currency,
        "total_debt": money_out(debt.total_debt),
        "overdue_amount": money_out(debt.overdue_amount),
        "fees_due": money_out(debt.fees_due),
        "overdue_by_bucket": {bucket: money_out(debt.overdue_by_bucket[bucket]) for bucket in BUCKETS},
    }


def debt_status_out(status) -> dict:
    """What DebtStatusOut(status).data gives (``status``: a bnpl.selectors.DebtStatus), built
    as plan_out builds a plan; a test holds the two equal."""
    by_currency = [_currency_debt_out(debt) for debt in status.by_currency]
    return {
        "user_id": status.user_id,
        "user_status": str(status.user_status),
        "has_overdue": status.has_overdue,
        "currency": status.currency,
        "total_debt": _money_or_none(status.total_debt),
        "overdue_amount": _money_or_none(status.overdue_amount),
        "fees_due": _money_or_none(status.fees_due),
        "overdue_by_bucket": dict(by_currency[0]["overdue_by_bucket"]) if status.single else dict.fromkeys(BUCKETS),
        "by_currency": by_currency,
        "overdue_installments": [
            {
                "id": row["id"],
                "plan_id": row["plan_id"],
                "currency": row["currency"],
                "amount_due": money_out(row["amount_due"]),
                "amount_remaining": money_out(row["amount_remaining"]),
                "due_date": date_out(row["due_date"]),
                "days_overdue": row["days_overdue"],
                "bucket": row["bucket"],
            }
            for row in status.overdue_installments
        ],
    }


class AnalyticsQueryIn(serializers.Serializer):
    merchant_id = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        help_text="Operators: one merchant's figures (its user_id); merchants always see their own.",
    )


PlansByStatusOut = type(
    "PlansByStatusOut",
    (serializers.Serializer,),
    {
        "__doc__": "Plans by status, every status named (0 when none).",
        "__module__": __name__,
        **{status: serializers.IntegerField(min_value=0) for status in Plan.Status.values},
    },
)


# The money totals the books hold (ledger.selectors.MONEY_TOTALS), in words.
REFUNDED = (
    "Approved refunds: taken off unpaid installments, credited to the customer, or paid back to the card "
    "(counted once paid)."
)
PROCESSED = "Totals of the plans that became ACTIVE (captured)."
MERCHANT_FEES = "Merchant fees charged on those plans, less the fee share refunds gave back."
LATE_FEES = "Late fees charged to customers, less those waived (apart from the merchant fees)."
PAID_OUT = "Payouts paid to the merchant's bank account (every merchant's, for an operator's whole view)."


class CurrencyAnalyticsOut(serializers.Serializer):
    currency = serializers.CharField()
    total_revenue = serializers.DecimalField(**AMOUNT, help_text="Collected through successful payments.")
    outstanding = serializers.DecimalField(**AMOUNT, help_text="Unpaid installments and late fees due.")
    overdue_installments = serializers.IntegerField(min_value=0)
    overdue_amount = serializers.DecimalField(**AMOUNT)
    refunds_total = serializers.DecimalField(**AMOUNT, help_text=REFUNDED)
    processed_total = serializers.DecimalField(**AMOUNT, help_text=PROCESSED)
    merchant_fees_total = serializers.DecimalField(**AMOUNT, help_text=MERCHANT_FEES)
    late_fees_total = serializers.DecimalField(**AMOUNT, help_text=LATE_FEES)
    payouts_total = serializers.DecimalField(**AMOUNT, help_text=PAID_OUT)


class AnalyticsOut(serializers.Serializer):
    currency = serializers.CharField(
        allow_null=True,
        help_text="The currency of the top-level amounts: the one the plans that became ACTIVE are in (the "
        "default currency when there are none); null when they are in several, whose amounts are in "
        "`by_currency` only.",
    )
    total_revenue = serializers.DecimalField(
        **AMOUNT, allow_null=True, help_text="Collected through successful payments." + ONE_CURRENCY
    )
    outstanding = serializers.DecimalField(
        **AMOUNT, allow_null=True, help_text="Unpaid installments and late fees due." + ONE_CURRENCY
    )
    overdue_installments = serializers.IntegerField(help_text="Overdue installments now, in every currency.")
    overdue_amount = serializers.DecimalField(
        **AMOUNT, allow_null=True, help_text="Unpaid remainder of overdue installments." + ONE_CURRENCY
    )
    overdue_by_bucket = OverdueCountByBucketOut(help_text="Overdue installments by days past due, in every currency.")
    success_rate = serializers.FloatField(
        allow_null=True,
        help_text="Share of installments paid on time among those that have fallen due (cancelled ones left out), "
        "in every currency.",
    )
    refunds_total = serializers.DecimalField(**AMOUNT, allow_null=True, help_text=REFUNDED + ONE_CURRENCY)
    processed_total = serializers.DecimalField(**AMOUNT, allow_null=True, help_text=PROCESSED + ONE_CURRENCY)
    merchant_fees_total = serializers.DecimalField(**AMOUNT, allow_null=True, help_text=MERCHANT_FEES + ONE_CURRENCY)
    late_fees_total = serializers.DecimalField(**AMOUNT, allow_null=True, help_text=LATE_FEES + ONE_CURRENCY)
    payouts_total = serializers.DecimalField(**AMOUNT, allow_null=True, help_text=PAID_OUT + ONE_CURRENCY)
    plans_by_status = PlansByStatusOut()
    by_currency = CurrencyAnalyticsOut(
        many=True,
        help_text="The amounts for each currency of the plans that became ACTIVE, by currency code (the default "
        "currency at zero when there are none).",
    )


class CreditPositionOut(serializers.Serializer):
    currency = serializers.CharField()
    credit_limit = serializers.DecimalField(**AMOUNT, help_text="Your limit, the same in each currency.")
    outstanding = serializers.DecimalField(**AMOUNT, help_text="Unpaid installments and late fees due.")
    reserved = serializers.DecimalField(
        **AMOUNT, help_text="Held by offers awaiting your answer and plans authorized but not yet captured."
    )
    available = serializers.DecimalField(
        **AMOUNT,
        help_text="What a new plan in this currency may total: the limit less outstanding and reserved, 0 at least.",
    )


class SpendingPowerOut(serializers.Serializer):
    user_status = serializers.ChoiceField(
        choices=User.Status.choices, help_text="A DEBT_USER may take no new plan, whatever `available` says."
    )
    by_currency = CreditPositionOut(
        many=True,
        help_text="Per currency, by currency code: each one you owe or have reserved in, and the default currency.",
    )
