import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Installment, LateFee, Plan
from bnpl.schedule import business_today
from bnpl.services.sweep import overdue_sweep
from bnpl.tests.factories import late_fee_charged
from config.tests.faults import inject
from ledger.models import JournalEntry, Posting
from payments.api.serializers import PaymentOut, payment_out
from payments.models import Payment
from payments.tests.factories import payment_made, payment_pending

pytestmark = pytest.mark.django_db


def pay_installment(client, installment, **body):
    return client.post(f"/api/v1/installments/{installment.pk}/pay/", body, format="json")


def test_paying_an_installment_in_full(as_user, make_plan, customer, django_capture_on_commit_callbacks):
    plan = make_plan(customer=customer, total="500.00", count=3)
    first = plan.installments.get(sequence=1)

    with django_capture_on_commit_callbacks(execute=True):
        response = pay_installment(as_user(customer), first)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "SUCCEEDED"
    assert body["amount"] == "166.67"
    assert body["allocations"] == [{"installment_id": first.pk, "late_fee_id": None, "amount": "166.67"}]
    first.refresh_from_db()
    assert first.status == Installment.Status.PAID
    assert first.paid_at is not None
    assert JournalEntry.objects.filter(plan=plan, kind="PAYMENT").count() == 1


def test_a_partial_payment_raises_amount_paid_and_keeps_the_status(as_user, make_plan, customer):
    plan = make_plan(customer=customer, total="400.00")
    first = plan.installments.get(sequence=1)

    assert pay_installment(as_user(customer), first, amount="40.00").status_code == 201

    first.refresh_from_db()
    assert (first.amount_paid, first.status) == (Decimal("40.00"), Installment.Status.UPCOMING)
    assert pay_installment(as_user(customer), first).json()["amount"] == "60.00"


def test_a_debtor_paying_the_overdue_installment_is_normal_at_once(as_user, make_plan, merchant):
    customer = UserFactory()
    plan = make_plan(
        customer=customer, merchant=merchant, total="400.00", purchase_date=business_today() - timedelta(days=45)
    )
    overdue_sweep()
    customer.refresh_from_db()
    assert customer.status == User.Status.DEBT_USER

    response = pay_installment(as_user(customer), plan.installments.get(sequence=1))

    assert response.status_code == 201
    customer.refresh_from_db()
    assert customer.status == User.Status.NORMAL
    created = as_user(merchant).post(
        "/api/v1/plans/", {"user_id": customer.user_id, "total_amount": "10.00"}, format="json"
    )
    assert created.status_code == 201


def test_plan_payment_goes_to_overdue_then_fees_then_upcoming_and_pays_off(as_user, make_plan, customer):
    plan = make_plan(customer=customer, total="400.00", purchase_date=business_today() - timedelta(days=75))
    overdue_sweep(late_fees=True)  # installments 1 and 2 overdue, a 10.00 fee each
    installments = list(plan.installments.order_by("sequence"))
    fees = list(plan.late_fees.order_by("id"))
    client = as_user(customer)

    body = client.post(f"/api/v1/plans/{plan.pk}/pay/", {"amount": "230.00"}, format="json").json()

    assert body["allocations"] == [
        {"installment_id": installments[0].pk, "late_fee_id": None, "amount": "100.00"},
        {"installment_id": installments[1].pk, "late_fee_id": None, "amount": "100.00"},
        {"installment_id": None, "late_fee_id": fees[0].pk, "amount": "10.00"},
        {"installment_id": None, "late_fee_id": fees[1].pk, "amount": "10.00"},
        {"installment_id": installments[2].pk, "late_fee_id": None, "amount": "10.00"},
    ]
    payoff = client.post(f"/api/v1/plans/{plan.pk}/pay/", {"amount": "190.00"}, format="json")
    assert payoff.status_code == 201
    plan.refresh_from_db()
    assert plan.status == Plan.Status.COMPLETED
    assert set(plan.installments.values_list("status", flat=True)) == {"PAID"}
    assert set(plan.late_fees.values_list("status", flat=True)) == {LateFee.Status.PAID}
    again = client.post(f"/api/v1/plans/{plan.pk}/pay/", {"amount": "1.00"}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "plan_not_payable")


@pytest.mark.parametrize(
    ("card", "code"), [("4000000000000002", "card_declined"), ("4000000000009995", "insufficient_funds")]
)
def test_declined_cards_change_nothing_and_are_listed_as_failed(
    as_user, make_plan, card, code, django_capture_on_commit_callbacks
):
    customer = UserFactory(card_number=card)
    plan = make_plan(customer=customer, total="100.00")
    postings = Posting.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        response = pay_installment(as_user(customer), plan.installments.get(sequence=1))

    assert response.status_code == 402
    assert response.json()["code"] == "payment_declined"
    assert response.json()["decline_code"] == code
    assert Posting.objects.count() == postings
    assert set(plan.installments.values_list("amount_paid", flat=True)) == {Decimal("0.00")}
    listed = as_user(customer).get("/api/v1/payments/").json()["results"]
    assert [(p["status"], p["decline_code"]) for p in listed] == [("FAILED", code)]
    # The failed attempt reserved nothing: the same installment can be paid again.
    User.objects.filter(pk=customer.pk).update(card_last4="1111")
    assert pay_installment(as_user(customer), plan.installments.get(sequence=1)).status_code == 201


def test_refusals(as_user, make_plan, customer, other_customer, merchant):
    plan = make_plan(customer=customer, merchant=merchant, total="100.00")
    first = plan.installments.get(sequence=1)
    client = as_user(customer)

    over = pay_installment(client, first, amount="25.01")
    assert (over.status_code, over.json()["code"]) == (422, "overpayment")
    assert client.post(f"/api/v1/plans/{plan.pk}/pay/", {"amount": "100.01"}, format="json").status_code == 422
    assert client.post(f"/api/v1/plans/{plan.pk}/pay/", {}, format="json").status_code == 400
    assert pay_installment(client, first, amount="0").status_code == 400
    assert pay_installment(client, first).status_code == 201
    paid = pay_installment(client, first)
    assert (paid.status_code, paid.json()["code"]) == (409, "nothing_to_pay")
    assert pay_installment(as_user(other_customer), first).status_code == 404
    assert pay_installment(as_user(merchant), plan.installments.get(sequence=2)).status_code == 403
    assert pay_installment(as_user(MerchantFactory()), plan.installments.get(sequence=2)).status_code == 403


def test_operator_pays_on_behalf_and_a_customer_without_card_gets_422(as_user, make_plan, operator):
    plan = make_plan(total="100.00")
    assert pay_installment(as_user(operator), plan.installments.get(sequence=1)).status_code == 201
    cardless = UserFactory(card_token="")
    other = make_plan(customer=cardless, total="100.00")
    response = pay_installment(as_user(operator), other.installments.get(sequence=1))
    assert (response.status_code, response.json()["code"]) == (422, "payment_method_missing")
    assert not Payment.objects.filter(plan=other).exists()


def test_payments_are_scoped(as_user, make_plan, customer, other_customer, merchant, operator):
    mine = make_plan(customer=customer, merchant=merchant)
    theirs = make_plan(customer=other_customer)
    pay_installment(as_user(customer), mine.installments.get(sequence=1))
    pay_installment(as_user(other_customer), theirs.installments.get(sequence=1))

    assert as_user(customer).get("/api/v1/payments/").json()["count"] == 1
    assert as_user(merchant).get("/api/v1/payments/").json()["count"] == 1
    assert as_user(operator).get("/api/v1/payments/").json()["count"] == 2
    their_payment = Payment.objects.get(plan=theirs)
    assert as_user(customer).get(f"/api/v1/payments/{their_payment.pk}/").status_code == 404


class TimingOutGateway:
    """A card network that never answers."""

    def charge(self, **kwargs):
        inject("gateway timeout (no answer)")
        raise TimeoutError("gateway timed out")


@pytest.mark.faults
def test_a_gateway_timeout_leaves_the_payment_pending_and_never_charges_twice(as_user, make_plan, customer, settings):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.test_api_payments.TimingOutGateway"
    plan = make_plan(customer=customer, total="100.00")
    first = plan.installments.get(sequence=1)

    response = pay_installment(as_user(customer), first)

    assert response.status_code == 502
    assert response.json()["code"] == "gateway_unavailable"
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.PENDING
    first.refresh_from_db()
    assert first.amount_paid == Decimal("0.00")
    retry = pay_installment(as_user(customer), first)  # the pending reservation holds the cents
    assert (retry.status_code, retry.json()["code"]) == (409, "nothing_to_pay")


def test_a_cancelled_plan_cannot_be_paid(as_user, make_plan, customer):
    plan = make_plan(customer=customer)
    Plan.objects.filter(pk=plan.pk).update(status=Plan.Status.CANCELLED)

    response = as_user(customer).post(f"/api/v1/plans/{plan.pk}/pay/", {"amount": "1.00"}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "plan_not_payable")


_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT")


def test_a_payment_takes_a_fixed_number_of_statements(as_user, make_plan, customer):
    """One payment through the API: the key claimed, the reservation, the gateway's card lookup
    (the fake network's own), the settlement and the stored answer; no re-reads for the answer."""
    plan = make_plan(customer=customer, total="400.00")
    first = plan.installments.get(sequence=1)
    client = as_user(customer)
    pay = client.post  # the first request warms the process's caches (accounts, ledger ids)
    pay(f"/api/v1/installments/{first.pk}/pay/", {"amount": "0.01"}, format="json", HTTP_IDEMPOTENCY_KEY="warm")

    with CaptureQueriesContext(connection) as partial:
        response = pay(
            f"/api/v1/installments/{first.pk}/pay/", {"amount": "0.01"}, format="json", HTTP_IDEMPOTENCY_KEY="a"
        )
    assert response.status_code == 201, response.content
    with CaptureQueriesContext(connection) as in_full:
        response = pay(f"/api/v1/installments/{first.pk}/pay/", {}, format="json", HTTP_IDEMPOTENCY_KEY="b")
    assert response.json()["allocations"][0]["amount"] == "99.98"

    statements = [q["sql"] for q in partial.captured_queries if not q["sql"].startswith(_TRANSACTION_CONTROL)]
    # PostgreSQL writes the ledger entry with its postings, and the receipts with their
    # addresses, in one statement each; SQLite in two each.
    # A key this request claimed has no payment under it yet: none is looked for.
    assert len(statements) == (18 if connection.vendor == "postgresql" else 20), "\n".join(statements)
    assert not [sql for sql in statements if re.search(r'WHERE\s+("?\w+"?\.)?"?gateway_key"?\s*=', sql)]
    # Paid in full, more: the installment.paid event (on PostgreSQL with the merchant's
    # endpoint read by its insert; SQLite reads it first), whether the plan is done, whether
    # the customer's debt ended.
    more = 3 if connection.vendor == "postgresql" else 4
    assert len(in_full.captured_queries) - len(partial.captured_queries) == more


def test_the_answer_is_payment_out_s(settings, make_plan, customer):
    settings.BNPL_LATE_FEE_FIRST = Decimal("10.00")
    plan = make_plan(customer=customer, total="300.00")
    late_fee_charged(plan)
    across = payment_made(plan, "120.00")  # the overdue installment, its fee, the next one
    pending = payment_pending(settings, plan, "5.00")
    declined = payment_made(make_plan(customer=UserFactory(card_last4="0002")), "1.00")
    assert len(across.settled_allocations) == 3
    assert any(a.late_fee_id for a in across.settled_allocations)
    assert pending.completed_at is None
    assert declined.status == Payment.Status.FAILED
    for payment in (across, pending, declined):
        read = Payment.objects.select_related("customer").get(pk=payment.pk)
        assert payment_out(read) == PaymentOut(read).data
    assert payment_out(across) == PaymentOut(across).data  # as the service returns it
