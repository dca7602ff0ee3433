"""What a PENDING payment has claimed is reserved on the installment or fee it claims
(``amount_reserved``, kept by bnpl's installments module): no other payment takes those
cents; success pays them, failure frees them; the ledger check finds any drift."""

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.models import User
from bnpl.models import Installment
from bnpl.schedule import business_today
from bnpl.services.sweep import overdue_sweep
from ledger.checks import ledger_check
from payments.models import Payment
from payments.services import Overpayment, payment_attempt, payment_resume
from payments.tests.factories import payment_pending

pytestmark = pytest.mark.django_db


def _amounts(plan) -> list[tuple[Decimal, Decimal]]:
    return list(plan.installments.order_by("sequence").values_list("amount_paid", "amount_reserved"))


def test_a_pending_payment_reserves_and_its_success_pays_what_it_reserved(settings, make_plan, customer):
    plan = make_plan(customer=customer, total="300.00", count=3)
    pending = payment_pending(settings, plan, amount=Decimal("150.00"))
    assert _amounts(plan) == [(Decimal("0.00"), Decimal("100.00")), (Decimal("0.00"), Decimal("50.00")), (0, 0)]

    # What is left for another payment is what is neither paid nor reserved.
    with pytest.raises(Overpayment) as refused:
        payment_attempt(plan_id=plan.pk, payer=customer, amount=Decimal("150.01"))
    assert refused.value.extra["payable"] == "150.00"
    assert ledger_check().ok

    assert payment_resume(payment_id=pending.pk).status == Payment.Status.SUCCEEDED
    assert _amounts(plan) == [(Decimal("100.00"), 0), (Decimal("50.00"), 0), (0, 0)]
    assert plan.installments.get(sequence=1).status == Installment.Status.PAID


def test_a_failed_payment_frees_what_it_reserved(settings, make_plan, customer):
    plan = make_plan(customer=customer, total="300.00", count=3)
    pending = payment_pending(settings, plan, installment=plan.installments.get(sequence=2))
    assert _amounts(plan)[1] == (Decimal("0.00"), Decimal("100.00"))
    customer.card_token = "tok_visa_0002"  # declined; the payment keeps the card it was made with
    Payment.objects.filter(pk=pending.pk).update(card_token="tok_visa_0002")

    assert payment_resume(payment_id=pending.pk).status == Payment.Status.FAILED
    assert _amounts(plan) == [(0, 0), (0, 0), (0, 0)]
    paid = payment_attempt(plan_id=plan.pk, payer=customer, installment_id=plan.installments.get(sequence=2).pk)
    assert (paid.status, paid.amount) == (Payment.Status.SUCCEEDED, Decimal("100.00"))


def test_the_ledger_check_finds_a_reservation_no_pending_payment_holds(settings, make_plan, customer):
    plan = make_plan(customer=customer, total="300.00", count=3)
    payment_pending(settings, plan, amount=Decimal("40.00"))
    first = plan.installments.get(sequence=1)
    Installment.objects.filter(pk=first.pk).update(amount_reserved=Decimal("45.00"))

    report = ledger_check()

    assert report.breaches == [f"installment {first.pk}: reserved 45.00 != pending payments' 40.00"]
    Installment.objects.filter(pk=first.pk).update(amount_reserved=Decimal("40.00"))
    assert ledger_check().ok


def test_an_installment_marked_overdue_while_its_payment_is_pending_ends_the_debt_when_it_is_paid(
    settings, make_plan, customer
):
    """The sweep marks without the plan's lock, so the payment settles an installment it read
    as UPCOMING that is OVERDUE by then: paying it in full must still restore the customer."""
    plan = make_plan(customer=customer, total="300.00", count=3, purchase_date=business_today() - timedelta(days=40))
    first = plan.installments.get(sequence=1)
    pending = payment_pending(settings, plan, installment=first)
    assert first.status == Installment.Status.UPCOMING

    overdue_sweep()
    first.refresh_from_db()
    customer.refresh_from_db()
    assert (first.status, customer.status) == (Installment.Status.OVERDUE, User.Status.DEBT_USER)

    assert payment_resume(payment_id=pending.pk).status == Payment.Status.SUCCEEDED
    first.refresh_from_db()
    customer.refresh_from_db()
    assert (first.status, customer.status) == (Installment.Status.PAID, User.Status.NORMAL)
    plan.refresh_from_db()
    assert plan.status == plan.Status.ACTIVE


def test_a_payment_that_pays_nothing_in_full_leaves_plan_and_customer_as_they_are(settings, make_plan, customer):
    plan = make_plan(customer=customer, total="300.00", count=3, purchase_date=business_today() - timedelta(days=40))
    overdue_sweep()
    customer.refresh_from_db()
    assert customer.status == User.Status.DEBT_USER

    payment = payment_attempt(plan_id=plan.pk, payer=customer, amount=Decimal("99.99"))

    assert payment.status == Payment.Status.SUCCEEDED
    assert [a.amount for a in payment.allocations.all()] == [Decimal("99.99")]  # came with the payment
    customer.refresh_from_db()
    plan.refresh_from_db()
    assert (plan.status, customer.status) == (plan.Status.ACTIVE, User.Status.DEBT_USER)
    assert plan.installments.get(sequence=1).status == Installment.Status.OVERDUE
