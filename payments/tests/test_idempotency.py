import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError
from django.utils import timezone

from accounts.tests.factories import UserFactory
from bnpl.models import Plan
from core.idempotency import idempotency_keys_prune
from core.models import IdempotencyKey
from ledger.models import JournalEntry
from ledger.tests.books import money_state
from payments.models import Payment
from payments.tests.gateways import RecordingGateway

pytestmark = pytest.mark.django_db


def test_same_key_same_body_replays_the_same_answer(as_user, make_plan, customer):
    plan = make_plan(customer=customer, total="400.00")
    client = as_user(customer)
    path = f"/api/v1/plans/{plan.pk}/pay/"

    first = client.post(path, {"amount": "50.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post(path, {"amount": "50.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert Payment.objects.count() == 1


@pytest.mark.parametrize("accept", ["application/json", "application/json; indent=4", "*/*"])
@pytest.mark.parametrize("refused", [False, True], ids=["answer", "problem"])
def test_the_replay_is_the_first_answer_byte_for_byte_rendered_once(as_user, make_plan, customer, accept, refused):
    """The answer is kept as the client received it (its Accept's indent too), and the first
    response is rendered once: the bytes sent are the bytes kept."""
    from rest_framework.renderers import JSONRenderer

    plan = make_plan(customer=customer, total="400.00")
    client = as_user(customer)
    path = f"/api/v1/plans/{plan.pk}/pay/"
    body = {"amount": "500.00" if refused else "50.00"}
    renders = []
    original = JSONRenderer.render

    def counted(self, *args, **kwargs):
        renders.append(1)
        return original(self, *args, **kwargs)

    sent = {"data": json.dumps(body), "content_type": "application/json", "HTTP_IDEMPOTENCY_KEY": "k-b"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JSONRenderer, "render", counted)
        first = client.post(path, HTTP_ACCEPT=accept, **sent)
    again = client.post(path, HTTP_ACCEPT=accept, **sent)

    assert first.status_code == again.status_code == (422 if refused else 201)
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"]
    assert (b"\n    " in first.content) == ("indent" in accept and not refused)  # problems are never indented
    assert IdempotencyKey.objects.get(key="k-b").response_body.encode() == first.content
    assert len(renders) == 1


def test_same_key_with_another_body_is_422(as_user, make_plan, customer):
    plan = make_plan(customer=customer, total="400.00")
    client = as_user(customer)
    path = f"/api/v1/plans/{plan.pk}/pay/"
    client.post(path, {"amount": "50.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    before = money_state()

    reused = client.post(path, {"amount": "60.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert Payment.objects.count() == 1
    assert money_state() == before, "nothing paid, reserved or posted"


def test_keys_are_scoped_to_the_principal(as_user, make_plan, customer, other_customer):
    mine, theirs = make_plan(customer=customer), make_plan(customer=other_customer)
    as_user(customer).post(f"/api/v1/plans/{mine.pk}/pay/", {"amount": "5.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    response = as_user(other_customer).post(
        f"/api/v1/plans/{theirs.pk}/pay/", {"amount": "5.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response


def test_a_validation_failure_stores_nothing(as_user, make_plan, customer):
    plan = make_plan(customer=customer, total="400.00")
    client = as_user(customer)
    path = f"/api/v1/plans/{plan.pk}/pay/"

    before = money_state()
    assert client.post(path, {"amount": "-1"}, format="json", HTTP_IDEMPOTENCY_KEY="k-3").status_code == 400
    assert not IdempotencyKey.objects.exists()
    assert money_state() == before
    assert client.post(path, {"amount": "1.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-3").status_code == 201


def test_a_decline_is_stored_and_replayed_not_charged_again(as_user, make_plan, settings):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.clear()
    customer = UserFactory(card_number="4000000000000002")
    plan = make_plan(customer=customer)
    client = as_user(customer)
    path = f"/api/v1/plans/{plan.pk}/pay/"

    first = client.post(path, {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-4")
    again = client.post(path, {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-4")

    assert first.status_code == again.status_code == 402
    assert again.json() == first.json()
    assert again["Content-Type"].startswith("application/problem+json")
    assert Payment.objects.count() == 1
    payment = Payment.objects.get()
    assert RecordingGateway.charges == [(payment.gateway_key, Decimal("10.00"))], "the card was asked once"
    assert (payment.status, payment.decline_code) == (Payment.Status.FAILED, "card_declined")
    assert set(plan.installments.values_list("amount_paid", "amount_reserved")) == {(Decimal("0.00"), Decimal("0.00"))}
    assert not JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYMENT).exists()


def test_a_request_in_flight_is_409(as_user, make_plan, customer):
    plan = make_plan(customer=customer)
    client = as_user(customer)
    path = f"/api/v1/plans/{plan.pk}/pay/"
    client.post(path, {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-5")
    IdempotencyKey.objects.filter(key="k-5").update(status=IdempotencyKey.Status.IN_FLIGHT)
    before = money_state()

    response = client.post(path, {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-5")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_flight"
    assert money_state() == before, "nothing paid, reserved or posted"


def test_plan_creation_is_idempotent(as_user, merchant, customer):
    client = as_user(merchant)
    body = {"user_id": customer.user_id, "total_amount": "300.00"}

    first = client.post("/api/v1/plans/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-77")
    again = client.post("/api/v1/plans/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-77")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert Plan.objects.count() == 1


@pytest.mark.parametrize("key", ["", "   ", "x" * 256])
def test_a_bad_key_is_400_naming_the_header(as_user, make_plan, customer, key):
    plan = make_plan(customer=customer)
    before = money_state()
    response = as_user(customer).post(
        f"/api/v1/plans/{plan.pk}/pay/", {"amount": "1.00"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["errors"]
    assert money_state() == before


def test_expired_keys_are_pruned_and_can_be_used_again(as_user, make_plan, customer):
    plan = make_plan(customer=customer, total="400.00")
    client = as_user(customer)
    path = f"/api/v1/plans/{plan.pk}/pay/"
    client.post(path, {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    fresh = client.post(path, {"amount": "20.00"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert fresh.status_code == 201
    assert "Idempotent-Replayed" not in fresh
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert idempotency_keys_prune() == 1
    assert not IdempotencyKey.objects.exists()


def test_schema_documents_the_header_on_money_moving_posts(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in ("/api/v1/plans/", "/api/v1/plans/{id}/pay/", "/api/v1/installments/{id}/pay/"):
        names = [p["name"] for p in schema["paths"][path]["post"].get("parameters", []) if p["in"] == "header"]
        assert "Idempotency-Key" in names, path


def lose_the_database(monkeypatch, target: str, *, after_its_work: bool = False):
    """Make ``target`` (a dotted path) raise, once, the OperationalError of a lost database
    connection, before its work or ``after_its_work`` (a COMMIT that happened, though the
    caller never heard). Simulated: the project's own function raises, PostgreSQL is not
    touched, so it is not counted as an injected fault (config/tests/test_faults_postgres.py
    cuts the real connection)."""
    module_path, name = target.rsplit(".", 1)
    real = getattr(__import__(module_path, fromlist=[name]), name)
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            return real(*args, **kwargs)
        if after_its_work:
            real(*args, **kwargs)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(target, flaky)


def retry_after_the_lease(client, path, body, key):
    """The retry within the lease is told to wait (409); once the lease is over, it runs."""
    waiting = client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert (waiting.status_code, waiting.json()["code"]) == (409, "idempotency_key_in_flight")
    IdempotencyKey.objects.filter(key=key).update(created_at=timezone.now() - timedelta(minutes=2))
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_payment_committed_unheard_keeps_its_key_and_the_retry_answers_with_it(
    as_user, make_plan, customer, monkeypatch, settings
):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.charges.clear()
    plan = make_plan(customer=customer, total="400.00")
    client, path = as_user(customer), f"/api/v1/plans/{plan.pk}/pay/"
    lose_the_database(monkeypatch, "payments.api.views.payment_collect", after_its_work=True)

    lost = client.post(path, {"amount": "50.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-lost")

    assert (lost.status_code, lost.json()["code"]) == (503, "service_unavailable")
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.SUCCEEDED
    assert IdempotencyKey.objects.get(key="k-lost").status == IdempotencyKey.Status.IN_FLIGHT
    again = retry_after_the_lease(client, path, {"amount": "50.00"}, "k-lost")
    assert (again.status_code, again.json()["id"]) == (201, payment.pk)
    assert Payment.objects.count() == 1, "paid twice"
    assert RecordingGateway.charges == [(payment.gateway_key, Decimal("50.00"))]


def test_a_payment_left_pending_by_a_lost_connection_is_finished_by_the_retry_with_its_key(
    as_user, make_plan, customer, monkeypatch, settings
):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.charges.clear()
    plan = make_plan(customer=customer, total="400.00")
    client, path = as_user(customer), f"/api/v1/plans/{plan.pk}/pay/"
    lose_the_database(monkeypatch, "payments.services._settle_many")  # charged, not yet booked

    assert client.post(path, {"amount": "50.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-p").status_code == 503
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.PENDING
    again = retry_after_the_lease(client, path, {"amount": "50.00"}, "k-p")

    assert (again.status_code, again.json()["id"], again.json()["status"]) == (201, payment.pk, "SUCCEEDED")
    assert Payment.objects.count() == 1
    # Asked twice with the payment's own key: a network charges a key once.
    assert RecordingGateway.charges == [(payment.gateway_key, Decimal("50.00"))] * 2


def test_a_request_that_lost_the_database_before_any_work_is_done_by_the_retry(
    as_user, make_plan, customer, monkeypatch
):
    plan = make_plan(customer=customer, total="400.00")
    client, path = as_user(customer), f"/api/v1/plans/{plan.pk}/pay/"
    lose_the_database(monkeypatch, "payments.services._reserve_many")

    assert client.post(path, {"amount": "50.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-r").status_code == 503
    assert not Payment.objects.exists()
    again = retry_after_the_lease(client, path, {"amount": "50.00"}, "k-r")

    assert (again.status_code, again.json()["status"]) == (201, "SUCCEEDED")
    assert Payment.objects.count() == 1
