"""Different refund operations at once, on PostgreSQL with real threads: a refund credited
while a payment spends the credit, the merchant's signed webhook against an operator's
decision, and two payouts of one refund. Each asserts the money: what the gateway charged
and paid back, the installments, the credit balance and the journal entries."""

from decimal import Decimal

import pytest

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Installment
from bnpl.tests.test_concurrency import run_at_once
from conftest import client_for
from ledger.accounts import CUSTOMER_CREDIT, CUSTOMER_RECEIVABLE, GATEWAY_CLEARING, MERCHANT_PAYABLE
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.selectors import credit_balances
from ledger.tests.books import balance, entries
from payments.models import Payment
from payments.services import payment_collect
from payments.tests.gateways import RecordingGateway
from refunds.models import Refund
from refunds.services import refund_payout, refund_request, refund_status_apply

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ZERO = Decimal("0.00")


@pytest.fixture
def merchant():
    return MerchantFactory(webhook_secret="whsec_races")


def worked_example(make_plan, merchant, *, payout_method: str = "CARD"):
    """100.00 in 4, the first 25.00 paid, 80.00 asked back: 75.00 to apply, 5.00 beyond it.
    The gateway's record is emptied after the setup's charge."""
    customer = UserFactory()
    plan = make_plan(customer=customer, merchant=merchant, total="100.00", count=4)
    first = plan.installments.get(sequence=1)
    payment_collect(plan_id=plan.pk, installment_id=first.pk, payer=customer)
    refund, _ = refund_request(
        plan_id=plan.pk,
        transaction_id="rf-race",
        amount=Decimal("80.00"),
        reason="",
        requester=merchant,
        payout_method=payout_method,
    )
    RecordingGateway.clear()
    return plan, refund


def refund_applied(plan, refund: Refund) -> None:
    """The worked example's refund applied once: installments 2-4 cancelled, 75.00 off the receivable."""
    assert list(plan.installments.order_by("sequence").values_list("status", "amount_due", "amount_paid")) == [
        (Installment.Status.PAID, Decimal("25.00"), Decimal("25.00")),
        *[(Installment.Status.CANCELLED, ZERO, ZERO)] * 3,
    ]
    assert (refund.status, refund.applied_amount, refund.payout_amount) == (
        Refund.Status.APPROVED,
        Decimal("75.00"),
        Decimal("5.00"),
    )
    assert entries(JournalEntry.Kind.REFUND_APPLIED, plan=plan) == [
        [(CUSTOMER_RECEIVABLE, Decimal("-75.00")), (MERCHANT_PAYABLE, Decimal("75.00"))]
    ]
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == ZERO


def paid_back_once(plan, refund: Refund, gateway) -> None:
    """The 5.00 beyond the unpaid remainder went back to the card once: every gateway call
    with the refund's own key (a network pays a key once), one payout entry."""
    key = f"refund_payout_{refund.pk}"
    assert gateway.refunds, "the payout reached the gateway"
    assert set(gateway.refunds) == {(key, Decimal("5.00"))}
    assert gateway.given_back() == {key: Decimal("5.00")}
    assert refund.payout_status == Refund.PayoutStatus.PAID
    assert entries(JournalEntry.Kind.REFUND_PAYOUT, plan=plan) == [
        [(GATEWAY_CLEARING, Decimal("-5.00")), (MERCHANT_PAYABLE, Decimal("5.00"))]
    ]
    assert balance(GATEWAY_CLEARING, plan=plan) == Decimal("20.00")  # 25.00 taken, 5.00 given back


def test_a_refund_credited_while_a_payment_on_another_plan_spends_the_credit_spends_only_what_is_there(
    make_plan, merchant, operator, gateway
):
    plan, refund = worked_example(make_plan, merchant, payout_method="CREDIT")
    customer = plan.customer
    other = make_plan(customer=customer, merchant=merchant, total="100.00", count=4)
    first = other.installments.get(sequence=1)

    def work(index):
        if index == 0:
            return client_for(operator).post(f"/api/v1/refunds/{refund.pk}/approve/", format="json")
        return client_for(customer).post(f"/api/v1/installments/{first.pk}/pay/", {}, format="json")

    approved, paid = run_at_once(2, work)

    assert approved.status_code == 200, approved.content
    assert paid.status_code == 201, paid.content
    refund.refresh_from_db()
    refund_applied(plan, refund)
    assert refund.payout_status == Refund.PayoutStatus.CREDITED
    assert entries(JournalEntry.Kind.REFUND_CREDIT, plan=plan) == [
        [(CUSTOMER_CREDIT, Decimal("-5.00")), (MERCHANT_PAYABLE, Decimal("5.00"))]
    ]
    assert gateway.refunds == [], "credit never goes back to the card"
    payment = Payment.objects.get(plan=other)
    spent = payment.credit_amount
    assert spent in (ZERO, Decimal("5.00")), "all of the credit or none: it was there or not yet"
    card = Decimal("25.00") - spent
    assert (payment.status, payment.amount, payment.card_amount) == (Payment.Status.SUCCEEDED, Decimal("25.00"), card)
    assert gateway.charges == [(payment.gateway_key, card)], "the card pays only what the credit did not"
    assert entries(JournalEntry.Kind.PAYMENT, plan=other) == [
        sorted(
            [(CUSTOMER_RECEIVABLE, Decimal("-25.00")), (GATEWAY_CLEARING, card)]
            + ([(CUSTOMER_CREDIT, spent)] if spent else [])
        )
    ]
    assert credit_balances(customer_id=customer.pk).get("USD", ZERO) == Decimal("5.00") - spent
    assert ledger_check(record=False).ok


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_merchants_webhook_and_an_operators_decision_on_one_refund_at_once_apply_one_decision_once(
    make_plan, merchant, operator, gateway, webhook, no_broker, decision
):
    plan, refund = worked_example(make_plan, merchant)

    def work(index):
        if index == 0:
            return webhook(merchant, {"refund_id": refund.transaction_id, "status": "approved"})
        return client_for(operator).post(f"/api/v1/refunds/{refund.pk}/{decision}/", format="json")

    hooked, decided = run_at_once(2, work)

    assert hooked.status_code == 200, hooked.content
    assert decided.status_code in (200, 409), decided.content
    refund.refresh_from_db()
    assert refund.status in (Refund.Status.APPROVED, Refund.Status.REJECTED)
    operator_won = decided.status_code == 200
    assert hooked.json()["applied"] is (not operator_won)
    approved = not operator_won or decision == "approve"
    assert refund.status == (Refund.Status.APPROVED if approved else Refund.Status.REJECTED)
    if decided.status_code == 409:
        assert (decided.json()["code"], decided.json()["refund_status"]) == ("refund_already_decided", refund.status)
    outcomes = list(refund.events.values_list("outcome", flat=True))
    assert outcomes.count("applied") == 1, outcomes
    assert gateway.charges == []
    if refund.status == Refund.Status.APPROVED:
        refund_applied(plan, refund)
        paid_back_once(plan, refund, gateway)
    else:
        assert (refund.applied_amount, refund.payout_amount, refund.payout_status) == (
            ZERO,
            ZERO,
            Refund.PayoutStatus.NONE,
        )
        assert list(plan.installments.order_by("sequence").values_list("status", "amount_due", "amount_paid")) == [
            (Installment.Status.PAID, Decimal("25.00"), Decimal("25.00")),
            *[(Installment.Status.UPCOMING, Decimal("25.00"), ZERO)] * 3,
        ]
        assert gateway.refunds == []
        assert entries(JournalEntry.Kind.REFUND_APPLIED) == entries(JournalEntry.Kind.REFUND_PAYOUT) == []
        assert balance(CUSTOMER_RECEIVABLE, plan=plan) == Decimal("75.00")
    assert ledger_check(record=False).ok


@pytest.mark.faults
def test_two_payouts_of_one_refund_at_once_pay_it_back_once(make_plan, merchant, gateway, settings):
    """The approval's payout got no answer (the refund is APPROVED, its payout PENDING); two
    callers then finish it at once (the webhook repeated, reconciliation): the gateway is
    asked only with the refund's own key, and the payout is booked once."""
    plan, refund = worked_example(make_plan, merchant)
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RefundTimeoutGateway"
    with pytest.raises(TimeoutError):
        refund_status_apply(refund_id=refund.pk, status=Refund.Status.APPROVED, source="operator")
    refund.refresh_from_db()
    assert (refund.status, refund.payout_status) == (Refund.Status.APPROVED, Refund.PayoutStatus.PENDING)
    assert entries(JournalEntry.Kind.REFUND_PAYOUT) == []
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.SlowRecordingGateway"

    results = run_at_once(2, lambda _: refund_payout(refund_id=refund.pk))

    assert [r for r in results if isinstance(r, Exception)] == []
    assert {r.payout_status for r in results} == {Refund.PayoutStatus.PAID}
    refund.refresh_from_db()
    refund_applied(plan, refund)
    paid_back_once(plan, refund, gateway)
    assert gateway.charges == []
    assert ledger_check(record=False).ok
