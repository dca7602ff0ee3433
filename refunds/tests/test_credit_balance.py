"""The customer's credit balance: filled by refunds taken as credit and by overpayments the
gateway reports, spent first by the next payment, listed as movements."""

from decimal import Decimal

import pytest
from django.db import connections

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.tests.test_concurrency import run_at_once
from conftest import client_for
from ledger.accounts import CUSTOMER_CREDIT, GATEWAY_CLEARING
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.selectors import credit_balances
from ledger.services import Leg, ledger_post
from ledger.tests.books import entries
from payments.models import Payment
from payments.tests.gateways import RecordingGateway
from refunds.models import Refund

pytestmark = pytest.mark.django_db

ME = "/api/v1/auth/me/"
CREDITS = "/api/v1/credit-transactions/"


@pytest.fixture
def gateway(settings):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.clear()
    return RecordingGateway.charges


def pay_installment(client, plan, sequence):
    return client.post(f"/api/v1/installments/{plan.installments.get(sequence=sequence).pk}/pay/", {}, format="json")


def refund_five_to_credit(as_user, make_plan, customer, merchant, operator, **extra) -> Refund:
    """The worked example (100.00 in 4, first paid, 80.00 refunded): 5.00 beyond the unpaid remainder."""
    plan = make_plan(customer=customer, merchant=merchant, total="100.00", count=4)
    assert pay_installment(as_user(customer), plan, 1).status_code == 201
    body = {"plan_id": plan.pk, "transaction_id": "rf-credit", "amount": "80.00", **extra}
    created = as_user(merchant).post("/api/v1/refunds/", body, format="json")
    assert created.status_code == 201, created.content
    approved = as_user(operator).post(f"/api/v1/refunds/{created.json()['id']}/approve/")
    assert approved.status_code == 200, approved.content
    return Refund.objects.get(pk=created.json()["id"])


def test_a_refund_taken_as_credit_fills_the_balance_and_pays_nothing_back(
    as_user, make_plan, customer, merchant, operator, gateway
):
    refund = refund_five_to_credit(as_user, make_plan, customer, merchant, operator, payout_method="CREDIT")

    assert (refund.payout_amount, refund.payout_method, refund.payout_status) == (
        Decimal("5.00"),
        Refund.PayoutMethod.CREDIT,
        Refund.PayoutStatus.CREDITED,
    )
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.REFUND_PAYOUT).count() == 0
    assert entries(JournalEntry.Kind.REFUND_CREDIT) == [
        [(CUSTOMER_CREDIT, Decimal("-5.00")), ("merchant_payable", Decimal("5.00"))]
    ]
    assert RecordingGateway.refunds == [], "nothing went back to the card"
    assert as_user(customer).get(ME).json()["credit_balance"] == {"USD": "5.00"}
    movements = as_user(customer).get(CREDITS).json()["results"]
    assert [(m["kind"], m["amount"], m["currency"]) for m in movements] == [("REFUND_CREDIT", "5.00", "USD")]


def test_the_next_payment_spends_the_credit_first(as_user, make_plan, customer, merchant, operator, gateway):
    refund_five_to_credit(as_user, make_plan, customer, merchant, operator, payout_method="CREDIT")
    second = make_plan(customer=customer, merchant=merchant, total="100.00", count=4)
    gateway.clear()

    paid = pay_installment(as_user(customer), second, 1)

    assert paid.status_code == 201, paid.content
    assert (paid.json()["amount"], paid.json()["credit_amount"]) == ("25.00", "5.00")
    assert [amount for _, amount in gateway] == [Decimal("20.00")], "the card pays only the rest"
    assert as_user(customer).get(ME).json()["credit_balance"] == {}, "spent: no currency holds any"
    movements = as_user(customer).get(CREDITS).json()["results"]
    assert [(m["kind"], m["amount"]) for m in movements] == [("PAYMENT", "-5.00"), ("REFUND_CREDIT", "5.00")]


def test_a_payment_the_credit_covers_never_reaches_the_gateway(
    as_user, make_plan, customer, merchant, operator, gateway
):
    refund_five_to_credit(as_user, make_plan, customer, merchant, operator, payout_method="CREDIT")
    small = make_plan(customer=customer, merchant=merchant, total="8.00", count=2)
    gateway.clear()

    paid = pay_installment(as_user(customer), small, 1)

    assert paid.status_code == 201, paid.content
    assert paid.json()["credit_amount"] == "4.00"
    assert gateway == []
    assert credit_balances(customer_id=customer.pk) == {"USD": Decimal("1.00")}


def test_the_platform_setting_chooses_credit_when_the_request_does_not(
    as_user, make_plan, customer, merchant, operator, settings
):
    settings.BNPL_REFUND_PAYOUT_METHOD = "credit"
    refund = refund_five_to_credit(as_user, make_plan, customer, merchant, operator)
    assert refund.payout_status == Refund.PayoutStatus.CREDITED


def test_a_refund_to_the_card_stays_the_default(as_user, make_plan, customer, merchant, operator, gateway):
    refund = refund_five_to_credit(as_user, make_plan, customer, merchant, operator)
    assert (refund.payout_method, refund.payout_status) == (Refund.PayoutMethod.CARD, Refund.PayoutStatus.PAID)
    assert as_user(customer).get(ME).json()["credit_balance"] == {}
    assert RecordingGateway.refunds == [(f"refund_payout_{refund.pk}", Decimal("5.00"))]
    assert entries(JournalEntry.Kind.REFUND_PAYOUT) == [
        [(GATEWAY_CLEARING, Decimal("-5.00")), ("merchant_payable", Decimal("5.00"))]
    ]
    assert entries(JournalEntry.Kind.REFUND_CREDIT) == []


def test_an_overpayment_the_gateway_reports_goes_to_the_credit_balance(as_user, make_plan, customer, settings):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.OvercapturingGateway"
    plan = make_plan(customer=customer, total="100.00", count=4)

    paid = pay_installment(as_user(customer), plan, 1)

    assert paid.status_code == 201
    assert paid.json()["excess_credited"] == "3.00"
    assert credit_balances(customer_id=customer.pk) == {"USD": Decimal("3.00")}
    entry = JournalEntry.objects.get(kind=JournalEntry.Kind.PAYMENT)
    assert sorted((p.account.code, p.amount) for p in entry.postings.all()) == [
        ("customer_credit", Decimal("-3.00")),
        ("customer_receivable", Decimal("-25.00")),
        ("gateway_clearing", Decimal("28.00")),
    ]


def test_credit_movements_are_scoped(as_user, make_plan, customer, merchant, operator):
    refund_five_to_credit(as_user, make_plan, customer, merchant, operator, payout_method="CREDIT")

    assert as_user(UserFactory()).get(CREDITS).json()["count"] == 0
    assert as_user(MerchantFactory()).get(CREDITS).json()["count"] == 0
    assert as_user(merchant).get(CREDITS).json()["count"] == 1
    assert as_user(operator).get(CREDITS, {"user_id": customer.user_id}).json()["count"] == 1
    assert as_user(operator).get(CREDITS, {"user_id": "nobody"}).json()["count"] == 0


@pytest.mark.breaks_ledger
def test_the_ledger_check_reports_a_negative_credit_balance(customer, make_plan):
    plan = make_plan(customer=customer)
    ledger_post(
        kind=JournalEntry.Kind.PAYMENT,
        plan_id=plan.pk,
        legs=[
            Leg(CUSTOMER_CREDIT, Decimal("2.00"), "USD", plan.pk, customer.pk),  # spent what was never there
            Leg(GATEWAY_CLEARING, Decimal("-2.00"), "USD", plan.pk, customer.pk),
        ],
    )
    report = ledger_check(record=False)
    assert any("credit balance below zero" in breach for breach in report.breaches)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_payments_at_once_on_two_plans_spend_the_credit_once(
    make_plan, customer, merchant, operator, as_user, gateway
):
    refund_five_to_credit(as_user, make_plan, customer, merchant, operator, payout_method="CREDIT")
    plans = [make_plan(customer=customer, merchant=merchant, total="100.00", count=4) for _ in range(2)]
    gateway.clear()

    def pay(index):
        try:
            return pay_installment(client_for(customer), plans[index], 1)
        finally:
            connections.close_all()

    responses = run_at_once(2, pay)

    assert sorted(r.status_code for r in responses) == [201, 201]
    assert sorted(Payment.objects.filter(plan__in=plans).values_list("credit_amount", flat=True)) == [
        Decimal("0.00"),
        Decimal("5.00"),
    ]
    assert credit_balances(customer_id=customer.pk).get("USD", Decimal("0")) == Decimal("0.00")
    # The cards paid the rest: 25.00 for the payment without credit, 20.00 for the other.
    payments = Payment.objects.filter(plan__in=plans)
    assert sorted(gateway) == sorted((p.gateway_key, p.amount - p.credit_amount) for p in payments)
    assert sorted(amount for _, amount in gateway) == [Decimal("20.00"), Decimal("25.00")]
    spent = [
        amount
        for entry in entries(JournalEntry.Kind.PAYMENT)
        for code, amount in entry
        if code == CUSTOMER_CREDIT and amount > 0
    ]
    assert spent == [Decimal("5.00")]
    assert ledger_check(record=False).ok


def test_a_capture_below_the_amount_asked_is_refused_and_books_nothing(as_user, make_plan, customer, settings):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.UndercapturingGateway"
    plan = make_plan(customer=customer, total="100.00", count=4)

    paid = pay_installment(as_user(customer), plan, 1)

    assert paid.status_code == 402
    assert paid.json()["decline_code"] == "partial_capture"
    assert not JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYMENT).exists()


def test_a_repeated_transaction_id_with_another_payout_method_is_a_conflict(
    as_user, make_plan, customer, merchant, operator
):
    plan = make_plan(customer=customer, merchant=merchant, total="100.00", count=4)
    body = {"plan_id": plan.pk, "transaction_id": "rf-twice", "amount": "10.00"}
    assert as_user(merchant).post("/api/v1/refunds/", body, format="json").status_code == 201
    assert as_user(merchant).post("/api/v1/refunds/", body, format="json").status_code == 200
    again = as_user(merchant).post("/api/v1/refunds/", body | {"payout_method": "CREDIT"}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "transaction_id_conflict")
