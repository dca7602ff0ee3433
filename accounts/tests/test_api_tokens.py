"""Refresh tokens rotate and can be revoked: /auth/token/refresh/ spends the token it is
given (a new pair back, the old token blacklisted), /auth/logout/ revokes one, and every
refusal is a 401 problem document."""

import json
from datetime import timedelta

import pytest
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.test_api_auth import assert_problem

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"
LOGOUT = "/api/v1/auth/logout/"
ME = "/api/v1/auth/me/"


def login(client, user: User) -> dict:
    response = client.post(TOKEN, {"username": user.username, "password": DEFAULT_PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def refresh(client, token: str):
    return client.post(REFRESH, {"refresh": token}, format="json")


def logout(client, token: str):
    return client.post(LOGOUT, {"refresh": token}, format="json")


def assert_token_refused(response) -> dict:
    """A 401 problem with simplejwt's code, saying how to authenticate."""
    body = assert_problem(response, 401, "token_not_valid")
    assert body["type"] == "/problems/token_not_valid"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    return body


def test_the_pair_from_login_is_recorded_as_outstanding(api_client):
    user = UserFactory()

    pair = login(api_client, user)

    jti = RefreshToken(pair["refresh"])["jti"]
    recorded = OutstandingToken.objects.get(jti=jti)
    assert recorded.user == user
    assert not BlacklistedToken.objects.exists()


def test_refresh_answers_a_new_pair_whose_tokens_work(api_client):
    user = UserFactory()
    first = login(api_client, user)

    response = refresh(api_client, first["refresh"])

    assert response.status_code == 200, response.content
    second = response.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    assert RefreshToken(second["refresh"])["user_id"] == user.user_id
    assert OutstandingToken.objects.filter(jti=RefreshToken(second["refresh"])["jti"], user=user).exists()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {second['access']}")
    assert api_client.get(ME).json()["user_id"] == user.user_id
    api_client.credentials()
    third = refresh(api_client, second["refresh"])  # the rotated token is good for one refresh
    assert third.status_code == 200, third.content
    assert third.json()["refresh"] not in (first["refresh"], second["refresh"])


def test_a_refresh_token_is_spent_by_its_use(api_client):
    pair = login(api_client, UserFactory())
    assert refresh(api_client, pair["refresh"]).status_code == 200

    body = assert_token_refused(refresh(api_client, pair["refresh"]))

    assert body["detail"] == "Token is blacklisted"
    assert BlacklistedToken.objects.filter(token__jti=RefreshToken(pair["refresh"], verify=False)["jti"]).exists()


def test_logout_revokes_the_refresh_token(api_client):
    pair = login(api_client, UserFactory())

    response = logout(api_client, pair["refresh"])

    assert response.status_code == 204
    assert response.content == b""
    assert_token_refused(refresh(api_client, pair["refresh"]))


def test_logout_twice_is_401(api_client):
    pair = login(api_client, UserFactory())
    assert logout(api_client, pair["refresh"]).status_code == 204

    assert_token_refused(logout(api_client, pair["refresh"]))


def test_logout_with_a_spent_token_is_401_and_the_new_one_still_works(api_client):
    pair = login(api_client, UserFactory())
    rotated = refresh(api_client, pair["refresh"]).json()

    assert_token_refused(logout(api_client, pair["refresh"]))
    assert logout(api_client, rotated["refresh"]).status_code == 204


def test_logout_revokes_the_token_in_the_body_whatever_bearer_comes_along(api_client):
    """The refresh token is the credential: another user's access token sent along neither
    allows nor refuses it, and that user's own session is untouched."""
    owner, bystander = UserFactory(), UserFactory()
    owners, bystanders = login(api_client, owner), login(api_client, bystander)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {bystanders['access']}")

    assert logout(api_client, owners["refresh"]).status_code == 204

    api_client.credentials()
    assert_token_refused(refresh(api_client, owners["refresh"]))
    assert refresh(api_client, bystanders["refresh"]).status_code == 200


def test_access_tokens_outlive_a_logout_until_they_expire(api_client):
    """Documented: access tokens are not checked against the blacklist (they live minutes)."""
    pair = login(api_client, UserFactory())
    assert logout(api_client, pair["refresh"]).status_code == 204

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    assert api_client.get(ME).status_code == 200


@pytest.mark.parametrize("path", [REFRESH, LOGOUT])
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"refresh": None},
        {"refresh": ""},
        {"refresh": []},
        {"refresh": {"a": 1}},
        {"refresh": "\ud800"},  # a lone surrogate (escaped in the JSON)
        {"token": "x"},
    ],
    ids=["empty", "null", "blank", "list", "object", "surrogate", "other-field"],
)
def test_a_body_without_a_refresh_token_is_400_naming_it(api_client, path, body):
    response = api_client.post(path, json.dumps(body), content_type="application/json")

    # A string that is not text is refused by the JSON parser, for every endpoint alike.
    code = "invalid_text" if body == {"refresh": "\ud800"} else "validation_error"
    problem = assert_problem(response, 400, code)
    assert "refresh" in problem["errors"]
    assert "refresh" in problem["detail"]


def _expired(user: User) -> str:
    token = RefreshToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    return str(token)


def _foreign(user: User) -> str:
    token = RefreshToken.for_user(user)
    return token.token_backend.__class__(token.token_backend.algorithm, "another-key-" + "x" * 40).encode(token.payload)


@pytest.mark.parametrize("path", [REFRESH, LOGOUT])
@pytest.mark.parametrize(
    "make",
    [
        lambda user: "not.a.token",
        lambda user: str(AccessToken.for_user(user)),  # of the wrong type
        _expired,
        _foreign,  # signed with another key
    ],
    ids=["garbage", "access-token", "expired", "foreign-key"],
)
def test_a_token_that_is_not_a_valid_refresh_token_is_401(api_client, path, make):
    user = UserFactory()

    assert_token_refused(api_client.post(path, {"refresh": make(user)}, format="json"))
    assert not BlacklistedToken.objects.exists()


@pytest.mark.parametrize("gone", ["inactive", "deleted"])
def test_refresh_for_a_user_no_longer_active_is_401(api_client, gone):
    user = UserFactory()
    token = str(RefreshToken.for_user(user))
    if gone == "inactive":
        User.objects.filter(pk=user.pk).update(is_active=False)
    else:
        user.delete()

    response = refresh(api_client, token)

    assert_problem(response, 401, "no_active_account")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert not BlacklistedToken.objects.exists()


def test_a_token_issued_before_the_blacklist_is_spent_once_too(api_client):
    """Tokens issued before this release have no outstanding row: the first refresh records
    and spends it."""
    user = UserFactory()
    token = RefreshToken.for_user(user)
    OutstandingToken.objects.filter(jti=token["jti"]).delete()

    assert refresh(api_client, str(token)).status_code == 200
    assert OutstandingToken.objects.get(jti=token["jti"]).user == user
    assert_token_refused(refresh(api_client, str(token)))


def test_the_schema_documents_the_rotated_pair_and_logout(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]

    def answer(path: str, status: str) -> dict:
        return schema["paths"][path]["post"]["responses"][status]

    for path in (TOKEN, REFRESH):
        pair = answer(path, "200")["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert set(components[pair]["required"]) == {"access", "refresh"}, path
    refresh_in = schema["paths"][REFRESH]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert refresh_in == "#/components/schemas/TokenRefreshRequest"  # the name of earlier releases
    logout_op = schema["paths"][LOGOUT]["post"]
    assert logout_op["operationId"] == "auth_logout"
    assert "content" not in logout_op["responses"]["204"]
    for status in ("400", "401", "413", "415", "429"):
        assert "application/problem+json" in logout_op["responses"][status]["content"], status
    body = logout_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert components[body]["required"] == ["refresh"]
