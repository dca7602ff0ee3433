"""A late fee waived while a payment of it is PENDING (DESIGN §6 Payments): the waiver
waits for that payment (409 ``late_fee_payment_pending``, nothing changed), and a fee is
settled PAID only while it is still DUE.

An earlier release waived the fee and then let the payment settle on it: the fee ended
PAID with its waiver recorded, the customer was charged for a waived fee and the books no
longer matched (race 2 of the money-races issue). These tests drive the phases one after
the other, then race them on threads, and watch the charges, the amounts and the entries.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.tests.factories import OperatorFactory, UserFactory
from bnpl.errors import LateFeeNotWaivable, LateFeePaymentPending
from bnpl.models import LateFee
from bnpl.services.installments import Part, late_fee_waive, reservation_settle
from bnpl.tests.factories import late_fee_charged
from bnpl.tests.test_concurrency import run_at_once
from conftest import wait_until
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.selectors import credit_balances
from payments.models import Payment
from payments.services import payment_collect, payment_resume
from payments.tests.factories import payment_pending
from payments.tests.gateways import RecordingGateway, SlowRecordingGateway

DECLINED_CARD = {"card_number": "4000000000000002"}


@pytest.fixture
def gateway(settings, monkeypatch):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.SlowRecordingGateway"
    settings.BNPL_LATE_FEE_FIRST = Decimal("10.00")
    monkeypatch.setattr(SlowRecordingGateway, "DELAY", 0)
    RecordingGateway.clear()
    return SlowRecordingGateway


def _fee_state(fee: LateFee) -> tuple:
    fee.refresh_from_db()
    return fee.status, fee.amount_paid, fee.amount_reserved, fee.waived_at is not None


def _waivers() -> int:
    return JournalEntry.objects.filter(kind=JournalEntry.Kind.FEE_WAIVER).count()


@pytest.mark.django_db
def test_a_fee_being_paid_is_not_waived_and_ends_paid_when_the_payment_succeeds(settings, make_plan, gateway):
    customer = UserFactory()
    plan = make_plan(customer=customer, total="400.00")
    fee = late_fee_charged(plan)
    pending = payment_pending(settings, plan, "110.00")  # 1. reserve: the overdue 100.00, then the fee

    with pytest.raises(LateFeePaymentPending):  # 2. waive
        late_fee_waive(fee_id=fee.pk, operator=OperatorFactory(), reason="Goodwill")
    assert _fee_state(fee) == (LateFee.Status.DUE, 0, Decimal("10.00"), False), "nothing changed"
    assert _waivers() == 0

    assert payment_resume(payment_id=pending.pk).status == Payment.Status.SUCCEEDED  # 3. settle
    assert _fee_state(fee) == (LateFee.Status.PAID, Decimal("10.00"), 0, False)
    with pytest.raises(LateFeeNotWaivable):
        late_fee_waive(fee_id=fee.pk, operator=OperatorFactory(), reason="Too late")
    assert [amount for _, amount in gateway.charges] == [Decimal("110.00")]
    assert credit_balances(customer_id=customer.pk) == {}
    assert _waivers() == 0
    assert ledger_check().ok


@pytest.mark.django_db
def test_a_fee_whose_payment_failed_can_be_waived(settings, make_plan, gateway):
    customer = UserFactory(**DECLINED_CARD)
    plan = make_plan(customer=customer, total="400.00")
    fee = late_fee_charged(plan)
    pending = payment_pending(settings, plan, "110.00")
    with pytest.raises(LateFeePaymentPending):
        late_fee_waive(fee_id=fee.pk, operator=OperatorFactory(), reason="Goodwill")

    assert payment_resume(payment_id=pending.pk).status == Payment.Status.FAILED
    waived = late_fee_waive(fee_id=fee.pk, operator=OperatorFactory(), reason="Goodwill")

    assert _fee_state(waived) == (LateFee.Status.WAIVED, 0, 0, True)
    assert _waivers() == 1
    assert ledger_check().ok


@pytest.mark.django_db
def test_a_share_for_a_fee_no_longer_due_is_not_applied_to_it(make_plan, gateway):
    """The settling rule itself: a fee WAIVED by the time its payment settles stays WAIVED
    with nothing paid, and the share is surplus (credited by the caller)."""
    plan = make_plan(total="400.00")
    fee = late_fee_waive(fee_id=late_fee_charged(plan).pk, operator=OperatorFactory(), reason="Goodwill")
    fee.amount_reserved = Decimal("10.00")  # as if a payment had reserved it before the waiver

    with transaction.atomic():
        settled = reservation_settle(parts=[Part(None, fee, Decimal("10.00"))], now=timezone.now())

    assert (settled.applied, settled.surplus([Part(None, fee, Decimal("10.00"))])) == ([0], Decimal("10.00"))
    assert _fee_state(fee) == (LateFee.Status.WAIVED, 0, 0, True)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_a_waiver_against_a_payment_of_the_fee_never_charges_a_waived_fee(make_plan, gateway):
    gateway.DELAY = 0.3  # the card is asked for 0.3 s: the other operation lands meanwhile
    customer = UserFactory()
    plan = make_plan(customer=customer, total="400.00", purchase_date=timezone.localdate() - timedelta(days=45))
    fee = late_fee_charged(plan)
    operator = OperatorFactory()

    def work(index: int):
        if index == 0:
            return payment_collect(plan_id=plan.pk, payer=customer, amount=Decimal("110.00"))
        wait_until(lambda: Payment.objects.filter(plan=plan, status=Payment.Status.PENDING).exists(), 10)
        return late_fee_waive(fee_id=fee.pk, operator=operator, reason="Goodwill")

    paid, waived = run_at_once(2, work)

    assert paid.status == Payment.Status.SUCCEEDED, paid
    assert isinstance(waived, LateFeePaymentPending), waived
    assert _fee_state(fee) == (LateFee.Status.PAID, Decimal("10.00"), 0, False)
    assert [amount for _, amount in gateway.charges] == [Decimal("110.00")]
    assert _waivers() == 0
    assert ledger_check().ok
