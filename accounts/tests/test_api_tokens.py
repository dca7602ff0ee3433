"""Refresh tokens are recorded when issued, so that they can be spent and revoked."""

import pytest
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"


def login(client, user: User) -> dict:
    response = client.post(TOKEN, {"username": user.username, "password": DEFAULT_PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_the_pair_from_login_is_recorded_as_outstanding(api_client):
    user = UserFactory()

    pair = login(api_client, user)

    jti = RefreshToken(pair["refresh"])["jti"]
    recorded = OutstandingToken.objects.get(jti=jti)
    assert recorded.user == user
    assert not BlacklistedToken.objects.exists()
