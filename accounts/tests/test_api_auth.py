import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.authentication import _token_user
from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register/"
TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"
ME = "/api/v1/auth/me/"


def register_body(**overrides) -> dict:
    body = {
        "username": "aziz",
        "password": "s3cure-pass-phrase",
        "role": "CUSTOMER",
        "full_name": "Aziz Karimov",
        "phone_number": "+998901234567",
        "email": "aziz@example.com",
        "passport_number": "AA1234567",
        "card_number": "4111 1111 1111 1111",
    }
    body.update(overrides)
    return body


def assert_problem(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    assert body["status"] == status
    if code:
        assert body["code"] == code
    return body


def test_register_customer_returns_masked_profile(api_client):
    response = api_client.post(REGISTER, register_body(), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["user_id"].startswith("usr-")
    assert body["role"] == "CUSTOMER"
    assert body["status"] == "NORMAL"
    assert body["phone_number"] == "+998****4567"
    assert body["passport_number"] == "AA*******"
    assert body["card_number"] == "4111 **** **** 1111"
    assert body["card_brand"] == "visa"
    assert "password" not in body


def test_register_keeps_no_card_number_and_no_plaintext_passport(api_client, raw_rows):
    api_client.post(REGISTER, register_body(), format="json")

    rows = "\n".join(row for table in connection.introspection.table_names() for row in raw_rows(table))
    assert "4111111111111111" not in rows
    assert "4111 1111 1111 1111" not in rows
    assert "AA1234567" not in rows
    user = User.objects.get(username="aziz")
    assert user.passport_number == "AA1234567"  # decrypts for the code that needs it
    assert (user.card_first6, user.card_last4) == ("411111", "1111")
    assert user.card_token.startswith("tok_")


def test_register_accepts_given_user_id_and_merchant_role(api_client):
    response = api_client.post(
        REGISTER, register_body(user_id="shop-42", role="MERCHANT", card_number="", passport_number=""), format="json"
    )

    assert response.status_code == 201
    assert response.json()["user_id"] == "shop-42"
    assert response.json()["card_number"] == ""
    assert User.objects.get(user_id="shop-42").role == User.Role.MERCHANT


def test_register_refuses_operator_role(api_client):
    body = assert_problem(api_client.post(REGISTER, register_body(role="OPERATOR"), format="json"), 400)
    assert "role" in body["errors"]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("customer", User.Role.CUSTOMER),
        ("Customer", User.Role.CUSTOMER),
        ("cUsToMeR", User.Role.CUSTOMER),
        ("CUSTOMER", User.Role.CUSTOMER),
        ("merchant", User.Role.MERCHANT),
        ("Merchant", User.Role.MERCHANT),
    ],
)
def test_register_takes_the_role_in_any_case_and_stores_it_canonical(api_client, given, stored):
    response = api_client.post(REGISTER, register_body(role=given), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["role"] == stored
    assert User.objects.get(username="aziz").role == stored


@pytest.mark.parametrize(
    "role",
    ["operator", "Operator", "OPERATOR", "cu\u017ftomer", "CUSTOMER ", " customer", "customers", "", "CUSTOMER\x00"],
)
def test_register_refuses_other_roles_in_any_case_naming_role(api_client, role):
    body = assert_problem(api_client.post(REGISTER, register_body(role=role), format="json"), 400, "validation_error")
    assert list(body["errors"]) == ["role"]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone_number", "901234567"),
        ("phone_number", "+0998901234567"),
        ("phone_number", "+99890123456789012"),
        ("phone_number", "phone"),
        ("card_number", "4111111111111112"),  # fails the Luhn check
        ("card_number", "4111-abc"),
        ("passport_number", "A!"),
        ("email", "not-an-email"),
        ("user_id", "x"),
        ("username", "bad name with spaces"),
        ("password", "123"),
        ("password", "aziz"),
        ("full_name", ""),
    ],
)
def test_register_names_the_invalid_field(api_client, field, value):
    response = api_client.post(REGISTER, register_body(**{field: value}), format="json")

    body = assert_problem(response, 400, "validation_error")
    assert field in body["errors"]
    assert field in body["detail"]
    assert not User.objects.exists()


def test_register_lists_every_missing_field(api_client):
    body = assert_problem(api_client.post(REGISTER, {}, format="json"), 400, "validation_error")
    assert {"username", "password", "role", "full_name", "phone_number", "email"} <= body["errors"].keys()


@pytest.mark.parametrize("username", ["aziz", "AZIZ"])
def test_register_refuses_a_taken_username(api_client, username):
    UserFactory(username="aziz")

    body = assert_problem(api_client.post(REGISTER, register_body(username=username), format="json"), 409)
    assert body["code"] == "username_taken"
    assert "username" in body["errors"]


def test_register_refuses_a_taken_user_id(api_client):
    UserFactory(user_id="usr-taken")

    body = assert_problem(api_client.post(REGISTER, register_body(user_id="usr-taken"), format="json"), 409)
    assert body["code"] == "user_id_taken"


def test_token_pair_for_good_credentials_and_refresh(api_client):
    user = UserFactory()

    response = api_client.post(TOKEN, {"username": user.username, "password": DEFAULT_PASSWORD}, format="json")

    assert response.status_code == 200
    pair = response.json()
    assert {"access", "refresh"} <= pair.keys()
    refreshed = api_client.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
    assert refreshed.status_code == 200
    assert "access" in refreshed.json()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    assert api_client.get(ME).json()["user_id"] == user.user_id


def test_token_refused_for_wrong_password_and_inactive_user(api_client):
    user = UserFactory()
    assert_problem(api_client.post(TOKEN, {"username": user.username, "password": "wrong"}, format="json"), 401)
    UserFactory(username="gone", is_active=False)
    assert_problem(api_client.post(TOKEN, {"username": "gone", "password": DEFAULT_PASSWORD}, format="json"), 401)


def test_refresh_with_a_bad_token_is_401(api_client):
    body = assert_problem(api_client.post(REFRESH, {"refresh": "not.a.token"}, format="json"), 401)
    assert body["code"] == "token_not_valid"


def test_me_needs_authentication(api_client):
    body = assert_problem(api_client.get(ME), 401, "not_authenticated")
    assert "credentials" in body["detail"]


def test_me_with_a_garbage_bearer_token_is_401(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    assert_problem(api_client.get(ME), 401, "token_not_valid")


def test_me_returns_own_masked_profile(as_user, customer):
    body = as_user(customer).get(ME).json()

    assert body["user_id"] == customer.user_id
    assert body["phone_number"] == customer.masked_phone
    assert body["phone_number"] != customer.phone_number
    assert body["passport_number"] == customer.passport_number[:2] + "*" * 7
    assert body["credit_limit"] == "2000.00"


POST_ENDPOINTS = [REGISTER, TOKEN, REFRESH]
BAD_BODIES = [
    ("{not json", "application/json"),
    ("[1, 2, 3]", "application/json"),
    ('"just a string"', "application/json"),
    ('{"username": 5, "password": [], "role": {}, "phone_number": null, "refresh": 7}', "application/json"),
    ("username=x&password=y", "application/x-www-form-urlencoded"),
    ("plain text", "text/plain"),
    ("", "application/json"),
    ('{"pad": "' + "x" * (2 * 1024 * 1024) + '"}', "application/json"),
]
BAD_BODY_IDS = ["malformed", "array", "string", "wrong-types", "form", "text", "empty", "2MiB"]


@pytest.mark.parametrize("path", POST_ENDPOINTS)
@pytest.mark.parametrize(("body", "content_type"), BAD_BODIES, ids=BAD_BODY_IDS)
def test_bad_body_to_every_post_endpoint_is_a_4xx_problem(api_client, path, body, content_type):
    response = api_client.post(path, data=body, content_type=content_type)

    assert_problem(response, response.status_code)
    assert 400 <= response.status_code < 500, (path, response.status_code)
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "query",
    ["page=abc", "page=0", "page=99999", "page_size=-5", "page_size=abc", "role=NOPE", "status=%00", "role=%ff%fe"],
)
@pytest.mark.parametrize("path", [ME, "/api/v1/users/", "/api/v1/users/usr-nobody/", "/api/v1/users/%00/"])
def test_bad_query_to_every_get_endpoint_is_never_a_5xx(as_user, customer, path, query):
    response = as_user(customer).get(f"{path}?{query}")

    assert response.status_code < 500, (path, query, response.content[:300])
    if response.status_code >= 400:
        assert_problem(response, response.status_code)


@pytest.mark.parametrize("path", [ME, "/api/v1/users/"])
def test_get_with_a_2_mib_body_is_413(as_user, customer, path):
    response = as_user(customer).generic("GET", path, data="x" * (2 * 1024 * 1024), content_type="text/plain")

    assert_problem(response, 413, "request_too_large")


def test_two_mib_body_is_413_before_parsing(api_client):
    payload = json.dumps({"username": "x" * (2 * 1024 * 1024)})
    body = assert_problem(api_client.post(REGISTER, data=payload, content_type="application/json"), 413)
    assert body["code"] == "request_too_large"


def test_form_encoded_body_is_415(api_client):
    body = assert_problem(
        api_client.post(REGISTER, data="username=x", content_type="application/x-www-form-urlencoded"), 415
    )
    assert body["code"] == "unsupported_media_type"


def test_malformed_json_is_400_parse_error(api_client):
    body = assert_problem(api_client.post(REGISTER, data="{oops", content_type="application/json"), 400)
    assert body["code"] == "parse_error"


def test_a_token_user_is_read_once_in_a_while_and_afresh_after_a_save(as_user, settings):
    settings.BNPL_AUTH_USER_CACHE_SECONDS = 60
    user = UserFactory()
    client = as_user(user)
    assert client.get("/api/v1/plans/").status_code == 200  # reads the row

    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/plans/").status_code == 200
    assert not [q for q in queries if 'FROM "accounts_user"' in q["sql"]]

    user.is_active = False
    user.save()  # this process forgets the row at once
    assert client.get("/api/v1/plans/").status_code == 401


def test_every_request_gets_its_own_user_instance(settings):
    settings.BNPL_AUTH_USER_CACHE_SECONDS = 60
    user = UserFactory()
    first, second = _token_user(user.user_id), _token_user(user.user_id)

    assert first is not second
    first.role = User.Role.OPERATOR  # a request changing its copy changes no other request's
    assert second.role == User.Role.CUSTOMER
    assert _token_user("nobody") is None


def test_with_no_cache_a_change_made_behind_the_models_back_is_seen_at_once(as_user, settings):
    settings.BNPL_AUTH_USER_CACHE_SECONDS = 0
    user = UserFactory()
    client = as_user(user)
    assert client.get("/api/v1/plans/").status_code == 200

    User.objects.filter(pk=user.pk).update(is_active=False)  # no signal: only a fresh read sees it

    assert client.get("/api/v1/plans/").status_code == 401


def _counting_decodes(monkeypatch) -> list:
    """A list that grows by one each time a token is decoded and its signature checked."""
    from rest_framework_simplejwt.backends import TokenBackend

    decodes, decode = [], TokenBackend.decode

    def counted(self, token, verify=True):
        decodes.append(token)
        return decode(self, token, verify)

    monkeypatch.setattr(TokenBackend, "decode", counted)
    return decodes


def test_a_token_is_verified_once_then_taken_again_until_it_expires(api_client, monkeypatch):
    import time_machine
    from rest_framework_simplejwt.tokens import AccessToken

    decodes = _counting_decodes(monkeypatch)
    user = UserFactory()
    with time_machine.travel("2026-03-02 10:00:00+00:00", tick=False) as moment:
        token = AccessToken.for_user(user)
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        assert api_client.get(ME).status_code == 200
        assert api_client.get(ME).status_code == 200
        assert len(decodes) == 1

        moment.move_to(token["exp"] + 1)  # expired: checked anew, and refused
        assert_problem(api_client.get(ME), 401)
        assert len(decodes) == 2


def test_a_token_altered_after_one_was_verified_is_refused(api_client, monkeypatch):
    from rest_framework_simplejwt.tokens import AccessToken

    token = str(AccessToken.for_user(UserFactory()))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api_client.get(ME).status_code == 200

    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert_problem(api_client.get(ME), 401)


def test_a_token_user_read_written_out_is_the_row_the_orm_reads(settings):
    from datetime import UTC, datetime
    from decimal import Decimal

    from accounts.authentication import FIELDS

    settings.BNPL_AUTH_USER_CACHE_SECONDS = 0
    user = UserFactory(
        credit_limit=Decimal("1234.56"),
        autopay=True,
        last_login=datetime(2026, 3, 2, 10, 0, 1, 250000, tzinfo=UTC),
        full_name="Zoë Ünal",
    )
    ours, orms = _token_user(user.user_id), User.objects.get(pk=user.pk)
    for name in FIELDS:
        assert getattr(ours, name) == getattr(orms, name), name
        assert type(getattr(ours, name)) is type(getattr(orms, name)), name
    assert ours.get_deferred_fields() == {"password", "passport_number", "webhook_secret", "payout_account"}


def test_the_bearer_authenticator_knows_the_user_model_simplejwt_would_look_up():
    from django.contrib.auth import get_user_model

    from accounts.authentication import BearerAuthentication

    assert BearerAuthentication().user_model is get_user_model()
