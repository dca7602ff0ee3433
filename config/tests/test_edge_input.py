"""Hostile input at the edge of every endpoint that takes a body: whatever it is, the answer
is a 4xx problem document naming the field, never a 500, and nothing changed: no plan,
payment, refund, user or journal entry made, no installment paid, no setting changed."""

import json
import time
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.test import Client

from accounts.models import User
from accounts.tests.factories import MerchantFactory
from bnpl.models import Installment, Plan
from conftest import PiiCheckingClient, client_for
from core.parsers import invalid_text_paths
from core.signatures import signature_header
from ledger.models import JournalEntry
from payments.models import Payment
from refunds.models import Refund
from refunds.services import refund_request

pytestmark = pytest.mark.django_db


@dataclass
class Endpoint:
    method: str
    path: str
    body: dict  # a body this endpoint accepts
    field: str  # a text field of it to spoil (a choice, where it has one)
    client: Client
    signed_by: User | None = None  # the refund webhook: signed with this merchant's secret

    def send(self, raw: bytes, content_type: str = "application/json"):
        headers = {}
        if self.signed_by is not None:
            headers["HTTP_BNPL_MERCHANT"] = self.signed_by.user_id
            headers["HTTP_BNPL_SIGNATURE"] = signature_header(self.signed_by.webhook_secret, int(time.time()), raw)
        return self.client.generic(self.method, self.path, raw, content_type=content_type, **headers)


@pytest.fixture
def endpoints(make_plan, customer, eager_tasks) -> dict[str, Endpoint]:
    merchant = MerchantFactory(webhook_secret="whsec_edge")
    plan = make_plan(customer=customer, merchant=merchant, total="400.00", count=4)
    refund_request(plan_id=plan.pk, transaction_id="rf-edge", amount=Decimal("5.00"), reason="", requester=merchant)
    anonymous = PiiCheckingClient()
    installment = plan.installments.get(sequence=1)
    return {
        "plan create": Endpoint(
            "POST",
            "/api/v1/plans/",
            {"user_id": customer.user_id, "total_amount": "100.00", "frequency": "WEEKLY", "currency": "USD"},
            "frequency",
            client_for(merchant),
        ),
        "plan pay": Endpoint(
            "POST", f"/api/v1/plans/{plan.pk}/pay/", {"amount": "10.00"}, "amount", client_for(customer)
        ),
        "installment pay": Endpoint(
            "POST", f"/api/v1/installments/{installment.pk}/pay/", {"amount": "10.00"}, "amount", client_for(customer)
        ),
        "refund create": Endpoint(
            "POST",
            "/api/v1/refunds/",
            {"plan_id": plan.pk, "transaction_id": "rf-new", "amount": "10.00", "payout_method": "CARD"},
            "payout_method",
            client_for(merchant),
        ),
        "refund webhook": Endpoint(
            "POST",
            "/webhook/refund-status/",
            {"refund_id": "rf-edge", "status": "processing"},
            "status",
            Client(),
            signed_by=merchant,
        ),
        "register": Endpoint(
            "POST",
            "/api/v1/auth/register/",
            {
                "username": "edge-new",
                "password": "s3cure-pass-phrase",
                "role": "CUSTOMER",
                "full_name": "Edge Case",
                "phone_number": "+998901112233",
                "email": "edge@example.com",
            },
            "role",
            anonymous,
        ),
        "token": Endpoint(
            "POST",
            "/api/v1/auth/token/",
            {"username": customer.username, "password": "correct-horse-battery-9"},
            "username",
            anonymous,
        ),
        "me update": Endpoint(
            "PATCH",
            "/api/v1/auth/me/",
            {"webhook_url": "https://shop.example.com/h"},
            "webhook_url",
            client_for(merchant),
        ),
        "me payout account": Endpoint(
            "PATCH",
            "/api/v1/auth/me/",
            {"payout_account": "DE89 3704 0044 0532 0130 00", "payout_account_name": "Edge Shop"},
            "payout_account",
            client_for(merchant),
        ),
    }


ENDPOINTS = [
    "plan create",
    "plan pay",
    "installment pay",
    "refund create",
    "refund webhook",
    "register",
    "token",
    "me update",
    "me payout account",
]


def state() -> dict:
    """What a request could have changed."""
    return {
        "plans": Plan.objects.count(),
        "payments": Payment.objects.count(),
        "entries": JournalEntry.objects.count(),
        "refunds": list(Refund.objects.order_by("id").values_list("id", "status", "amount")),
        "paid": list(Installment.objects.order_by("id").values_list("amount_paid", flat=True)),
        "users": list(
            User.objects.order_by("id").values_list("id", "role", "autopay", "webhook_url", "payout_account_kind")
        ),
    }


def problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert (body["status"], body["code"], body["type"]) == (status, code, f"/problems/{code}")
    assert body["title"]
    assert body["detail"]
    return body


def raw(body) -> bytes:
    # ensure_ascii: a lone surrogate goes out as its escape, "\ud800", as a hostile client sends it.
    return json.dumps(body).encode()


@pytest.mark.parametrize("name", ENDPOINTS)
def test_each_endpoints_good_body_is_accepted(endpoints, name):
    # The other tests spoil one part of these bodies: the rest must be good.
    endpoint = endpoints[name]
    response = endpoint.send(raw(endpoint.body))
    assert response.status_code in (200, 201), response.content


# --- Text that is not text ---------------------------------------------------------------


@pytest.mark.parametrize("name", ENDPOINTS)
@pytest.mark.parametrize("surrogate", [chr(0xD800), chr(0xDFFF), f"ok{chr(0xDC80)}ok"], ids=["high", "low", "inside"])
def test_a_lone_surrogate_in_a_field_is_400_invalid_text_naming_it(endpoints, name, surrogate):
    endpoint = endpoints[name]
    before = state()

    response = endpoint.send(raw(endpoint.body | {endpoint.field: surrogate}))

    body = problem(response, 400, "invalid_text")
    assert list(body["errors"]) == [endpoint.field]
    assert state() == before


@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_lone_surrogate_in_a_key_or_deep_inside_is_400_naming_where(endpoints, name):
    endpoint = endpoints[name]
    before = state()

    response = endpoint.send(raw(endpoint.body | {"x\ud800": "1", "meta": {"tags": ["fine", {"deep": "\udbff"}]}}))

    body = problem(response, 400, "invalid_text")
    assert sorted(body["errors"]) == ["meta.tags.1.deep", "x\\ud800"]
    assert state() == before


@pytest.mark.parametrize("name", ENDPOINTS)
def test_bytes_that_are_not_utf8_in_a_string_are_400_invalid_text_naming_it(endpoints, name):
    endpoint = endpoints[name]
    before = state()
    spoiled = raw(endpoint.body | {endpoint.field: "@@"}).replace(b"@@", b"\xff\xfe")

    response = endpoint.send(spoiled)

    body = problem(response, 400, "invalid_text")
    assert list(body["errors"]) == [endpoint.field]
    assert state() == before


@pytest.mark.parametrize("name", ENDPOINTS)
def test_bytes_that_are_not_utf8_outside_strings_are_400_parse_error(endpoints, name):
    endpoint = endpoints[name]
    before = state()

    problem(endpoint.send(raw(endpoint.body)[:-1] + b", \xff: 1}"), 400, "parse_error")
    assert state() == before


@pytest.mark.parametrize("name", ["plan create", "installment pay", "refund create", "register"])
def test_a_body_declared_in_another_charset_is_415(endpoints, name):
    # JSON is UTF-8 (RFC 8259): latin-1 would read these bytes as other text than UTF-8 does.
    endpoint = endpoints[name]
    before = state()

    response = endpoint.send(raw(endpoint.body), content_type="application/json; charset=latin-1")

    problem(response, 415, "unsupported_media_type")
    assert state() == before


def test_a_surrogate_pair_is_text_and_accepted(endpoints):
    endpoint = endpoints["register"]
    response = endpoint.send(raw(endpoint.body | {"full_name": "Edge \U0001f600 Case"}))  # "\ud83d\ude00" escaped

    assert response.status_code == 201, response.content
    assert User.objects.get(username="edge-new").full_name == "Edge \U0001f600 Case"


def test_the_whole_body_a_lone_surrogate_is_400_naming_the_body(endpoints):
    body = problem(endpoints["plan create"].send(b'"\\ud800"'), 400, "invalid_text")
    assert list(body["errors"]) == ["non_field_errors"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/plans/?status=%ED%A0%80",
        "/api/v1/plans/?user_id=%ff",
        "/api/v1/plans/?user_id=%ED%A0%80",
        "/api/v1/plans/?%ff=1",
        "/api/v1/installments/?status=%ED%A0%80&due_before=%ff",
        "/api/v1/payments/?status=%ff",
        "/api/v1/refunds/?status=%ED%A0%80",
        "/api/v1/users/?role=%ff",
        "/api/v1/users/%ff/",
        "/api/v1/users/%ED%A0%80/",
        "/api/v1/debt/%ED%A0%80/",
        "/api/v1/plans/%ff/",
        "/api/v1/events/?type=%ED%A0%80",
        "/api/v1/analytics/dashboard/?merchant_id=%ED%A0%80",
        "/api/v1/credit-transactions/?currency=%ff",
    ],
)
def test_query_strings_and_paths_that_are_not_utf8_are_never_a_500(as_user, operator, path):
    # Django decodes them with U+FFFD in place of what is not UTF-8: no surrogate gets through.
    response = as_user(operator).get(path)

    assert response.status_code in (200, 400, 404), response.content
    if response.status_code != 200:
        assert response["Content-Type"].startswith("application/problem+json")
    json.dumps(response.json(), ensure_ascii=False).encode("utf-8")  # it was written out as UTF-8


# --- Amounts ------------------------------------------------------------------------------

MONEY_FIELDS = {
    "plan create": "total_amount",
    "plan pay": "amount",
    "installment pay": "amount",
    "refund create": "amount",
}
HOSTILE_AMOUNTS = [
    "\u0661\u0660",  # Arabic-Indic "10"
    "\U0001d7cf\U0001d7ce",  # mathematical bold "10"
    " 10",
    "+5.00",
    "1E+1",
    "10e-2",
    "10.001",
    "NaN",
    10,
    10.5,
    True,
    None,
    ["10.00"],
]


@pytest.mark.parametrize("name", list(MONEY_FIELDS))
@pytest.mark.parametrize("amount", HOSTILE_AMOUNTS, ids=repr)
def test_an_amount_that_is_not_a_plain_decimal_string_is_400_and_moves_no_money(endpoints, name, amount):
    endpoint, field = endpoints[name], MONEY_FIELDS[name]
    before = state()

    response = endpoint.send(raw(endpoint.body | {field: amount}))

    body = problem(response, 400, "validation_error")
    assert list(body["errors"]) == [field]
    assert state() == before


# --- Fields a money-moving request does not take -------------------------------------------

MONEY_MOVING = ["plan create", "plan pay", "installment pay", "refund create", "refund webhook"]


@pytest.mark.parametrize("name", MONEY_MOVING)
@pytest.mark.parametrize("extra", [{"surprise": 1}, {"amount_cents": 1000, "Amount": "1.00"}], ids=["one", "two"])
def test_an_unknown_field_on_a_money_moving_request_is_400_naming_it(endpoints, name, extra):
    endpoint = endpoints[name]
    before = state()

    response = endpoint.send(raw(endpoint.body | extra))

    body = problem(response, 400, "validation_error")
    assert body["errors"] == {key: ["Unknown field."] for key in extra}
    assert state() == before


@pytest.mark.parametrize("name", MONEY_MOVING)
def test_unknown_fields_are_named_beside_the_other_errors(endpoints, name):
    endpoint = endpoints[name]
    before = state()

    response = endpoint.send(raw(endpoint.body | {endpoint.field: "NOT-A-CHOICE-OR-AMOUNT!", "surprise": 1}))

    body = problem(response, 400, "validation_error")
    assert sorted(body["errors"]) == sorted([endpoint.field, "surprise"])
    assert state() == before


@pytest.mark.parametrize("path", ["plans/{plan}/pay/", "installments/{installment}/pay/"])
def test_a_currency_on_a_payment_of_an_eur_plan_is_refused_not_ignored(make_plan, customer, as_user, path):
    plan = make_plan(customer=customer, total="400.00", count=4, currency="EUR")
    url = "/api/v1/" + path.format(plan=plan.pk, installment=plan.installments.get(sequence=1).pk)
    before = state()

    response = as_user(customer).post(url, {"amount": "10.00", "currency": "USD"}, format="json")

    body = problem(response, 400, "validation_error")
    assert body["errors"] == {"currency": ["Unknown field."]}
    assert state() == before


def test_a_late_fee_waiver_with_an_unknown_field_is_refused(make_plan, customer, as_user, operator):
    from datetime import timedelta

    from bnpl.models import LateFee
    from bnpl.schedule import business_today
    from bnpl.services.sweep import overdue_sweep

    make_plan(customer=customer, total="400.00", purchase_date=business_today() - timedelta(days=75))
    overdue_sweep(late_fees=True)
    fee = LateFee.objects.filter(plan__customer=customer).first()

    response = as_user(operator).post(
        f"/api/v1/late-fees/{fee.pk}/waive/", {"reason": "Hospital", "amount": "5.00"}, format="json"
    )

    assert problem(response, 400, "validation_error")["errors"] == {"amount": ["Unknown field."]}
    fee.refresh_from_db()
    assert fee.status == LateFee.Status.DUE


def test_invalid_text_paths_walk_any_depth_the_decoder_takes():
    document: object = {"a": chr(0xD800)}
    for _ in range(5000):
        document = [document]

    assert invalid_text_paths(document) == [".".join(["0"] * 5000) + ".a"]
    assert invalid_text_paths({"fine": ["text", 1, None, {"k": "\U0001f600"}]}) == []
