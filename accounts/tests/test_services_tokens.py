"""Refresh-token services: a token is spent once even by two refreshes at the same moment,
and the records of expired tokens are pruned (by beat, daily)."""

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from django.utils.module_loading import import_string
from django_celery_beat.models import PeriodicTask
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.services import outstanding_tokens_prune, refresh_token_revoke, refresh_token_rotate
from accounts.tasks import outstanding_tokens_prune_task
from accounts.tests.factories import UserFactory


def _token(user, *, expires_in: timedelta, blacklisted: bool = False) -> OutstandingToken:
    """An outstanding token of ``user`` whose record says it expires ``expires_in`` from now."""
    token = RefreshToken.for_user(user)
    record = OutstandingToken.objects.get(jti=token["jti"])
    record.expires_at = timezone.now() + expires_in
    record.save(update_fields=["expires_at"])
    if blacklisted:
        BlacklistedToken.objects.create(token=record)
    return record


@pytest.mark.django_db
def test_prune_deletes_the_expired_records_only_with_their_blacklist_rows():
    user = UserFactory()
    expired = [
        _token(user, expires_in=-timedelta(days=2), blacklisted=True),
        _token(user, expires_in=-timedelta(seconds=1)),
        _token(user, expires_in=-timedelta(hours=1), blacklisted=True),
    ]
    live = _token(user, expires_in=timedelta(hours=1))
    live_revoked = _token(user, expires_in=timedelta(seconds=30), blacklisted=True)

    assert outstanding_tokens_prune(chunk=2) == 3  # two chunks: the loop goes on past the first

    assert set(OutstandingToken.objects.values_list("pk", flat=True)) == {live.pk, live_revoked.pk}
    assert list(BlacklistedToken.objects.values_list("token_id", flat=True)) == [live_revoked.pk]
    assert not OutstandingToken.objects.filter(pk__in=[r.pk for r in expired]).exists()
    assert outstanding_tokens_prune() == 0


@pytest.mark.django_db
def test_prune_keeps_a_revoked_token_while_the_leeway_still_accepts_it(monkeypatch):
    """A token past its expiry by less than the backend's leeway is still accepted: its
    blacklist row must stay, or a revoked token would work again."""
    monkeypatch.setattr(token_backend, "leeway", 60)
    within = _token(UserFactory(), expires_in=-timedelta(seconds=30), blacklisted=True)
    beyond = _token(UserFactory(), expires_in=-timedelta(seconds=90), blacklisted=True)

    assert outstanding_tokens_prune() == 1

    assert list(OutstandingToken.objects.values_list("pk", flat=True)) == [within.pk]
    assert BlacklistedToken.objects.filter(token=within).exists()
    assert not OutstandingToken.objects.filter(pk=beyond.pk).exists()


@pytest.mark.django_db
def test_the_prune_task_runs_the_service(eager_tasks):
    _token(UserFactory(), expires_in=-timedelta(minutes=1))

    assert outstanding_tokens_prune_task.delay().get() == 1
    assert not OutstandingToken.objects.exists()


@pytest.mark.django_db
def test_beat_prunes_the_tokens_daily():
    job = PeriodicTask.objects.select_related("crontab").get(name="outstanding-tokens-prune")

    assert import_string(job.task) is outstanding_tokens_prune_task
    assert job.enabled
    assert job.interval is None
    assert (job.crontab.minute, job.crontab.hour, job.crontab.day_of_month, job.crontab.day_of_week) == (
        "40",
        "3",
        "*",
        "*",
    )


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
