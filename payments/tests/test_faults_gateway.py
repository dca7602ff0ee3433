"""The card network does not answer in time, before or after it took the money: the payment
stays PENDING (never FAILED while the money may be taken), a retry with the same
Idempotency-Key never charges again, and reconciliation finishes it with the payment's own
key, which the network charges once."""

from decimal import Decimal

import pytest

from bnpl.models import Installment
from ledger.models import JournalEntry
from ledger.selectors import receivable_by_plan
from payments.models import Payment
from payments.services import payments_reconcile
from payments.tests.gateways import CardNetwork

pytestmark = [pytest.mark.faults, pytest.mark.django_db]


@pytest.fixture
def network(settings, monkeypatch):
    """The card network, reached over HTTP with a short client timeout."""
    with CardNetwork() as card_network:
        settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.NetworkGateway"
        monkeypatch.setenv("BNPL_TEST_CARD_NETWORK_URL", card_network.url)
        monkeypatch.setenv("BNPL_TEST_CARD_NETWORK_TIMEOUT", "0.5")
        yield card_network


def pay(client, installment, key: str):
    return client.post(f"/api/v1/installments/{installment.pk}/pay/", {}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def booked_once(network: CardNetwork) -> None:
    """What the network took is what the books say was paid: each succeeded payment once."""
    succeeded = Payment.objects.filter(status=Payment.Status.SUCCEEDED)
    assert sorted(network.captures) == sorted(succeeded.values_list("gateway_key", flat=True))
    booked = sum(succeeded.values_list("amount", flat=True), Decimal("0.00"))
    assert network.captured_total() == booked
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYMENT).count() == succeeded.count()


@pytest.mark.parametrize("timeout", ["timeout before capture", "timeout after capture"])
def test_a_gateway_timeout_leaves_the_payment_pending_a_retry_never_charges_and_reconciliation_charges_once(
    as_user, make_plan, customer, network, timeout
):
    plan = make_plan(customer=customer, total="400.00")
    first, second = plan.installments.order_by("sequence")[:2]
    client = as_user(customer)
    network.script = [timeout]

    answer = pay(client, first, "k-1")

    assert (answer.status_code, answer.json()["code"]) == (502, "gateway_unavailable")
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.PENDING, "never FAILED while the money may have been taken"
    taken = timeout == "timeout after capture"
    assert list(network.captures) == ([payment.gateway_key] if taken else [])
    first.refresh_from_db()
    assert first.amount_paid == Decimal("0.00")

    # The client retries with its key: the stored answer, no second call to the network.
    again = pay(client, first, "k-1")
    assert (again.status_code, again["Idempotent-Replayed"], again.json()["payment_id"]) == (502, "true", payment.pk)
    # With a new key it cannot pay the same installment twice: the reservation holds it.
    other = pay(client, first, "k-2")
    assert (other.status_code, other.json()["code"]) == (409, "nothing_to_pay")
    assert network.requests == [payment.gateway_key]
    # Another installment is another payment, charged once.
    assert pay(client, second, "k-3").status_code == 201

    # Reconciliation asks again with the payment's own key: charged once, booked once.
    assert payments_reconcile(older_than_minutes=0) == 1
    payment.refresh_from_db()
    first.refresh_from_db()
    assert (payment.status, first.status) == (Payment.Status.SUCCEEDED, Installment.Status.PAID)
    assert network.requests.count(payment.gateway_key) == 2
    assert network.captures[payment.gateway_key] == Decimal("100.00")
    booked_once(network)
    assert receivable_by_plan()[plan.pk] == Decimal("200.00")
    assert payments_reconcile(older_than_minutes=0) == 0


def test_a_gateway_still_timing_out_at_reconciliation_keeps_the_payment_pending_until_it_answers(
    as_user, make_plan, customer, network
):
    plan = make_plan(customer=customer, total="400.00")
    first = plan.installments.get(sequence=1)
    network.script = ["timeout after capture", "timeout after capture", "timeout before capture"]
    assert pay(as_user(customer), first, "k-1").status_code == 502
    payment = Payment.objects.get()

    assert payments_reconcile(older_than_minutes=0) == 0  # no answer twice more: still unknown
    assert payments_reconcile(older_than_minutes=0) == 0
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
    assert payments_reconcile(older_than_minutes=0) == 1

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert network.requests == [payment.gateway_key] * 4
    booked_once(network)
