"""Refresh-token services: a token is spent once, even by two uses at the same moment."""

import threading

import pytest
from django.db import connections
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.services import refresh_token_revoke, refresh_token_rotate
from accounts.tests.factories import UserFactory


@pytest.mark.django_db
def test_revoke_then_rotate_refuses_the_token():
    token = str(RefreshToken.for_user(UserFactory()))
    refresh_token_revoke(refresh=token)

    with pytest.raises(TokenError):
        refresh_token_rotate(refresh=token)
    with pytest.raises(TokenError):
        refresh_token_revoke(refresh=token)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("second", ["rotate", "revoke"])
def test_two_uses_of_one_token_at_the_same_moment_spend_it_once(monkeypatch, second):
    """Both calls pass the blacklist check before either writes (the barrier holds the first
    until the second has checked too): one must still win and the other be refused, or one
    stolen refresh token would open two sessions."""
    token = str(RefreshToken.for_user(UserFactory()))
    checked = threading.Barrier(2, timeout=10)
    check_blacklist = RefreshToken.check_blacklist

    def check_then_wait(self) -> None:
        check_blacklist(self)
        checked.wait()

    monkeypatch.setattr(RefreshToken, "check_blacklist", check_then_wait)
    calls = [
        ("rotate", refresh_token_rotate),
        (second, refresh_token_revoke if second == "revoke" else refresh_token_rotate),
    ]
    outcomes: dict[str, str] = {}

    def use(index: int, service) -> None:
        try:
            service(refresh=token)
            outcomes[f"{index}:{calls[index][0]}"] = "spent"
        except TokenError:
            outcomes[f"{index}:{calls[index][0]}"] = "refused"
        finally:
            connections.close_all()

    threads = [threading.Thread(target=use, args=(index, service)) for index, (_name, service) in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes.values()) == ["refused", "spent"], outcomes
    assert BlacklistedToken.objects.count() == 1
    rotated = [key for key, outcome in outcomes.items() if outcome == "spent" and key.endswith("rotate")]
    assert OutstandingToken.objects.count() == 1 + len(rotated)  # a new token for the winner only if it rotated
