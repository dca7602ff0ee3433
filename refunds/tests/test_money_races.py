"""A refund approved while a payment on the same plan is PENDING (DESIGN §6 Payments): the
cents that payment reserved are not yet received, so the refund lowers them off the debt
and pays back only money received; if the payment then succeeds, its share no longer owed
goes to the customer's credit; if it fails, nothing was received and nothing went back.

An earlier release paid those cents straight back to the card (the refund skipped them
as "held") and, when the payment failed, nothing undid it: race 1 of the money-races
issue. These tests drive the phases one after the other, then race them on threads, and
watch the gateway's charges and refunds, the amounts, the entries and the books.
"""

from decimal import Decimal

import pytest

from accounts.tests.factories import OperatorFactory, UserFactory
from bnpl.models import Installment, Plan
from bnpl.tests.test_concurrency import run_at_once
from conftest import wait_until
from ledger.accounts import CUSTOMER_CREDIT
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.selectors import credit_balances
from payments.models import Payment
from payments.services import PaymentDeclined, payment_collect, payment_resume
from payments.tests.factories import payment_pending
from payments.tests.gateways import RecordingGateway, SlowRecordingGateway
from refunds.models import Refund
from refunds.services import refund_decide
from refunds.tests.factories import refund_requested

DECLINED_CARD = {"card_number": "4000000000000002"}


@pytest.fixture
def gateway(settings, monkeypatch):
    """The recording gateway: every charge and refund the card network was asked for."""
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.SlowRecordingGateway"
    monkeypatch.setattr(SlowRecordingGateway, "DELAY", 0)
    RecordingGateway.clear()
    return SlowRecordingGateway


def _kinds(plan: Plan) -> list[str]:
    return list(JournalEntry.objects.filter(plan=plan).order_by("id").values_list("kind", flat=True))


def _installments(plan: Plan) -> list[tuple]:
    return list(
        plan.installments.order_by("sequence").values_list("amount_due", "amount_paid", "amount_reserved", "status")
    )


@pytest.mark.django_db
def test_a_refund_approved_while_a_payment_is_pending_pays_back_nothing_that_payment_then_fails_to_bring(
    settings, make_plan, gateway
):
    customer = UserFactory(**DECLINED_CARD)
    plan = make_plan(customer=customer, total="40.00", count=2)
    pending = payment_pending(settings, plan, "40.00")  # 1. reserve (the card is being asked)
    refund = refund_requested(plan, "40.00")

    refund = refund_decide(refund_id=refund.pk, status=Refund.Status.APPROVED, actor=OperatorFactory())  # 2. approve
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.SlowRecordingGateway"
    assert payment_resume(payment_id=pending.pk).status == Payment.Status.FAILED  # 3. the card declines

    assert (refund.applied_amount, refund.payout_amount, refund.payout_status) == (
        Decimal("40.00"),
        Decimal("0.00"),
        Refund.PayoutStatus.NONE,
    ), "all 40.00 was still owed: none of it is paid back"
    assert gateway.refunds == [], "no money went back to the card"
    assert [amount for _, amount in gateway.charges] == [Decimal("40.00")]  # asked once, declined
    assert _installments(plan) == [(0, 0, 0, Installment.Status.CANCELLED)] * 2
    plan.refresh_from_db()
    assert plan.status == Plan.Status.CANCELLED
    assert _kinds(plan) == [JournalEntry.Kind.ORIGINATION, JournalEntry.Kind.REFUND_APPLIED]
    assert credit_balances(customer_id=customer.pk) == {}
    assert ledger_check().ok


@pytest.mark.django_db
def test_a_refund_approved_while_a_payment_is_pending_credits_that_payment_when_it_succeeds(
    settings, make_plan, gateway
):
    customer = UserFactory()
    plan = make_plan(customer=customer, total="40.00", count=2)
    pending = payment_pending(settings, plan, "30.00")  # 20.00 of the first, 10.00 of the second
    refund = refund_requested(plan, "25.00")

    refund = refund_decide(refund_id=refund.pk, status=Refund.Status.APPROVED, actor=OperatorFactory())
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.SlowRecordingGateway"
    assert payment_resume(payment_id=pending.pk).status == Payment.Status.SUCCEEDED

    # The refund lowered the second installment by 20.00 (to 0, cancelled) and the first by
    # 5.00 (to 15.00): 25.00 applied, nothing paid back.
    assert (refund.applied_amount, refund.payout_amount) == (Decimal("25.00"), Decimal("0.00"))
    # The payment's 20.00 for the first pays its 15.00; 5.00 + 10.00 were no longer owed.
    assert _installments(plan) == [
        (Decimal("15.00"), Decimal("15.00"), 0, Installment.Status.PAID),
        (0, 0, 0, Installment.Status.CANCELLED),
    ]
    credited = pending.allocations.order_by("installment__sequence").values_list("amount", "credited")
    assert list(credited) == [(Decimal("20.00"), Decimal("5.00")), (Decimal("10.00"), Decimal("10.00"))]
    assert credit_balances(customer_id=customer.pk) == {"USD": Decimal("15.00")}
    payment_entry = JournalEntry.objects.get(plan=plan, kind=JournalEntry.Kind.PAYMENT)
    assert payment_entry.postings.get(account__code=CUSTOMER_CREDIT).amount == Decimal("-15.00")
    assert gateway.refunds == []
    assert [amount for _, amount in gateway.charges] == [Decimal("30.00")]
    plan.refresh_from_db()
    assert plan.status == Plan.Status.COMPLETED
    assert ledger_check().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("card", ["declined", "charged"])
def test_racing_a_refund_approval_against_a_payment_never_pays_back_money_not_received(make_plan, gateway, card):
    """The payment and the approval on threads: the approval lands while the card is being
    asked (the gateway takes 0.3 s), whichever way the card answers."""
    gateway.DELAY = 0.3  # the card is asked for 0.3 s: the other operation lands meanwhile
    customer = UserFactory(**(DECLINED_CARD if card == "declined" else {}))
    plan = make_plan(customer=customer, total="40.00", count=2)
    refund = refund_requested(plan, "40.00")
    operator = OperatorFactory()

    def work(index: int):
        if index == 0:
            return payment_collect(plan_id=plan.pk, payer=customer, amount=Decimal("40.00"))
        wait_until(lambda: Payment.objects.filter(plan=plan, status=Payment.Status.PENDING).exists(), 10)
        return refund_decide(refund_id=refund.pk, status=Refund.Status.APPROVED, actor=operator)

    paid, decided = run_at_once(2, work)

    assert isinstance(decided, Refund), decided
    assert (decided.applied_amount, decided.payout_amount) == (Decimal("40.00"), Decimal("0.00"))
    assert gateway.refunds == []
    assert len(gateway.charges) == 1
    if card == "declined":
        assert isinstance(paid, PaymentDeclined), paid
        assert credit_balances(customer_id=customer.pk) == {}
    else:
        assert paid.status == Payment.Status.SUCCEEDED, paid
        assert credit_balances(customer_id=customer.pk) == {"USD": Decimal("40.00")}, "paid for nothing: credited"
    assert _installments(plan) == [(0, 0, 0, Installment.Status.CANCELLED)] * 2
    assert ledger_check().ok
