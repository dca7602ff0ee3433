"""check_ledger finds what the two money races of an earlier release left in the books
(the state written here as that release's code wrote it), so a database that lived through
them is reported, not silently trusted."""

from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from accounts.tests.factories import OperatorFactory, UserFactory
from bnpl.models import LateFee
from bnpl.services.installments import late_fee_waive
from bnpl.tests.factories import late_fee_charged
from ledger.accounts import CUSTOMER_RECEIVABLE, GATEWAY_CLEARING, MERCHANT_PAYABLE
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.services import Leg, ledger_post
from payments.models import Payment, PaymentAllocation
from refunds.models import Refund
from refunds.tests.factories import refund_requested

pytestmark = [pytest.mark.django_db, pytest.mark.breaks_ledger]


def _payment_as_written(plan, amount: str, status: str, **fields) -> Payment:
    """A finished payment of the plan's customer, as the earlier release left it."""
    return Payment.objects.create(
        plan=plan,
        customer=plan.customer,
        created_by=plan.customer,
        amount=Decimal(amount),
        currency="USD",
        status=status,
        gateway_key=f"pay_old_{plan.pk}",
        completed_at=timezone.now(),
        **fields,
    )


def test_a_refund_paid_back_while_its_payment_was_pending_then_declined_is_a_breach(make_plan):
    """Race 1: 40.00 in 2; a payment of 40.00 reserved both installments, the refund of 40.00
    skipped them as held and paid all 40.00 back to the card, then the card declined."""
    customer = UserFactory(card_number="4000000000000002")
    plan = make_plan(customer=customer, total="40.00", count=2)
    payment = _payment_as_written(plan, "40.00", Payment.Status.FAILED, decline_code="card_declined")
    PaymentAllocation.objects.bulk_create(
        PaymentAllocation(payment=payment, installment=installment, amount=Decimal("20.00"))
        for installment in plan.installments.all()
    )
    refund = refund_requested(plan, "40.00")
    Refund.objects.filter(pk=refund.pk).update(
        status=Refund.Status.APPROVED,
        applied_amount=Decimal("0.00"),
        payout_amount=Decimal("40.00"),
        payout_status=Refund.PayoutStatus.PAID,
    )
    ledger_post(
        kind=JournalEntry.Kind.REFUND_PAYOUT,
        plan_id=plan.pk,
        memo="Refund paid back to the customer",
        legs=[
            Leg(MERCHANT_PAYABLE, Decimal("40.00"), "USD", plan.pk, plan.merchant_id),
            Leg(GATEWAY_CLEARING, Decimal("-40.00"), "USD", plan.pk, customer.pk),
        ],
    )

    report = ledger_check()

    assert report.breaches == [f"plan {plan.pk}: paid back 40.00 > received 0.00"]


@pytest.mark.postgres
def test_a_fee_waived_and_then_paid_is_a_breach(make_plan):
    """Race 2: a payment reserved the fee, an operator waived it, the payment settled on it:
    PAID with its waiver recorded, the receivable lowered twice."""
    plan = make_plan(total="400.00")
    fee = late_fee_waive(fee_id=late_fee_charged(plan).pk, operator=OperatorFactory(), reason="Goodwill")
    customer = plan.customer
    payment = _payment_as_written(plan, "10.00", Payment.Status.SUCCEEDED)
    PaymentAllocation.objects.create(payment=payment, late_fee=fee, amount=Decimal("10.00"))
    # The old code's write. PostgreSQL now refuses a PAID fee with a waiver recorded (bnpl
    # 0012), for rows written from then on: the constraint is dropped for this test's
    # transaction, as the database was before it.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # settle the rows' pending foreign-key checks
        cursor.execute("ALTER TABLE bnpl_latefee DROP CONSTRAINT late_fee_waived_iff_recorded")
    LateFee.objects.filter(pk=fee.pk).update(status=LateFee.Status.PAID, amount_paid=Decimal("10.00"))
    ledger_post(
        kind=JournalEntry.Kind.PAYMENT,
        plan_id=plan.pk,
        memo=f"Payment {payment.pk}",
        legs=[
            Leg(GATEWAY_CLEARING, Decimal("10.00"), "USD", plan.pk, customer.pk),
            Leg(CUSTOMER_RECEIVABLE, Decimal("-10.00"), "USD", plan.pk, customer.pk),
        ],
    )

    breaches = ledger_check().breaches

    assert breaches == [
        f"plan {plan.pk}: receivable in the ledger 390.00 != unpaid installments and fees 400.00",
        f"late fee {fee.pk} is PAID and waived",
    ]
