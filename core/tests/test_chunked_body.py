"""A request body sent chunked (``Transfer-Encoding: chunked``, no ``Content-Length``) is read
whole, never dropped: gunicorn hands the WSGI application a de-chunked ``wsgi.input`` and no
``CONTENT_LENGTH``, and Django alone would read that as an empty body (a payment of "10.00"
became a payment of the whole remainder). core.middleware.ChunkedBodyMiddleware."""

import http.client
import io
import json
import socket
import time
from decimal import Decimal

import pytest
from django.test import Client, override_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import MerchantFactory
from bnpl.models import Installment
from config.tests.faults import Launcher, service_env
from core.signatures import signature_header
from payments.models import Payment
from refunds.models import Refund
from refunds.services import refund_request


def token(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


def problem(status: int, content_type: str, body: dict, expected: int, code: str) -> dict:
    assert status == expected, body
    assert content_type.startswith("application/problem+json")
    assert body["status"] == expected
    assert body["code"] == code
    assert body["type"] == f"/problems/{code}"
    return body


# --- The middleware, through Django's test client --------------------------------------------


def post_chunked(client, path: str, body: bytes, *, terminated: bool = True, stream=None):
    """POST ``body`` as gunicorn hands a chunked one to the application: de-chunked in
    ``wsgi.input``, no ``CONTENT_LENGTH``, ``Transfer-Encoding`` among the headers."""
    return client.post(
        path,
        data=body,
        content_type="application/json",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": stream or io.BytesIO(body), "wsgi.input_terminated": terminated},
    )


class Unreadable(io.RawIOBase):
    def read(self, size=-1):
        raise ValueError("invalid chunk size")  # what gunicorn raises is no OSError either


@pytest.fixture
def installment(make_plan, customer):
    return make_plan(customer=customer, total="400.00", count=4).installments.get(sequence=1)


def nothing_paid(installment) -> None:
    installment.refresh_from_db()
    assert installment.amount_paid == Decimal("0.00")
    assert not Payment.objects.filter(plan_id=installment.plan_id).exists()


@pytest.mark.django_db
def test_chunked_body_is_read_whole_and_pays_the_amount_sent(as_user, customer, installment):
    response = post_chunked(as_user(customer), f"/api/v1/installments/{installment.pk}/pay/", b'{"amount": "10.00"}')

    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "10.00"
    installment.refresh_from_db()
    assert installment.amount_paid == Decimal("10.00")


@pytest.mark.django_db
def test_chunked_body_of_exactly_the_limit_is_read(as_user, customer, installment):
    body = b'{"amount": "10.00"}'
    with override_settings(MAX_REQUEST_BODY_BYTES=len(body)):
        response = post_chunked(as_user(customer), f"/api/v1/installments/{installment.pk}/pay/", body)

    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "10.00"


@pytest.mark.django_db
def test_chunked_body_over_the_limit_is_413_and_nothing_is_paid(as_user, customer, installment):
    body = b'{"amount": "10.00"}'
    with override_settings(MAX_REQUEST_BODY_BYTES=len(body) - 1):
        response = post_chunked(as_user(customer), f"/api/v1/installments/{installment.pk}/pay/", body)

    problem(response.status_code, response["Content-Type"], response.json(), 413, "request_too_large")
    nothing_paid(installment)


@pytest.mark.django_db
def test_chunked_body_on_a_server_that_cannot_read_it_whole_is_411(as_user, customer, installment):
    # Django's runserver hands over no terminated wsgi.input: reading would find nothing.
    response = post_chunked(
        as_user(customer), f"/api/v1/installments/{installment.pk}/pay/", b'{"amount": "10.00"}', terminated=False
    )

    problem(response.status_code, response["Content-Type"], response.json(), 411, "length_required")
    nothing_paid(installment)


@pytest.mark.django_db
def test_chunked_body_the_server_cannot_decode_is_400(as_user, customer, installment):
    response = post_chunked(
        as_user(customer), f"/api/v1/installments/{installment.pk}/pay/", b"{}", stream=Unreadable()
    )

    problem(response.status_code, response["Content-Type"], response.json(), 400, "bad_request")
    nothing_paid(installment)


@pytest.mark.django_db
def test_a_body_with_a_content_length_is_left_alone(as_user, customer, installment):
    # The server framed it (it sent the length): the usual path, Transfer-Encoding or not.
    response = as_user(customer).post(
        f"/api/v1/installments/{installment.pk}/pay/",
        data=b'{"amount": "10.00"}',
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
    )

    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "10.00"


@pytest.mark.django_db
def test_a_chunked_webhook_body_is_the_body_the_signature_covers(customer, make_plan, eager_tasks):
    merchant = MerchantFactory(webhook_secret="whsec_chunked")
    plan = make_plan(customer=customer, merchant=merchant)
    refund_request(plan_id=plan.pk, transaction_id="rf-chunked", amount=Decimal("5.00"), reason="", requester=merchant)
    body = json.dumps({"refund_id": "rf-chunked", "status": "rejected"}).encode()

    response = Client().post(
        "/webhook/refund-status/",
        data=body,
        content_type="application/json",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        HTTP_BNPL_MERCHANT=merchant.user_id,
        HTTP_BNPL_SIGNATURE=signature_header(merchant.webhook_secret, int(time.time()), body),
        **{"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )

    assert response.status_code == 200, response.content
    assert Refund.objects.get(transaction_id="rf-chunked").status == Refund.Status.REJECTED


# --- Against a real gunicorn (config/gunicorn.py) ------------------------------------------


@pytest.fixture(scope="module")
def service(django_db_setup):
    """gunicorn on the test database, one sync worker, Celery eager (no broker)."""
    launcher = Launcher()
    try:
        yield launcher.service(service_env())
    finally:
        launcher.stop()


def send_chunked(service, path: str, parts: list[bytes], headers: dict) -> tuple[int, str, dict]:
    """POST ``parts`` as the chunks of a chunked body (http.client sends no Content-Length)."""
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        connection.request("POST", path, body=iter(parts), headers=headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_gunicorn_chunked_partial_payment_charges_the_amount_sent(service, make_plan, customer):
    plan = make_plan(customer=customer, total="400.00", count=4)
    first = plan.installments.get(sequence=1)

    status, content_type, body = send_chunked(
        service,
        f"/api/v1/installments/{first.pk}/pay/",
        [b'{"amount": ', b'"10.00"}'],
        {"Authorization": f"Bearer {token(customer)}", "Content-Type": "application/json"},
    )

    assert status == 201, (body, service.logs())
    assert content_type == "application/json"
    assert body["amount"] == "10.00"
    payment = Payment.objects.get(plan=plan)
    assert payment.amount == Decimal("10.00")
    first.refresh_from_db()
    assert first.amount_paid == Decimal("10.00")
    assert first.status != Installment.Status.PAID


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_gunicorn_malformed_chunks_are_400_problem_not_500(service):
    request = (
        b"POST /api/v1/plans/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:500]
    assert b"application/problem+json" in head
    assert b'"code": "bad_request"' in rest or b'"code":"bad_request"' in rest
