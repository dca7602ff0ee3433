"""Bearer-token authentication for the API."""

import functools
import time

from django.conf import settings
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token

from accounts.models import User
from core.db import row_converted

# Read on every authenticated request, needed by almost none: three of them are encrypted, so
# loading them cost a decryption each (and this process would keep them in clear in
# `_recent`). A view that does need one reads it on access.
RARELY_NEEDED = ("password", "passport_number", "webhook_secret", "payout_account")
FIELDS = tuple(f.attname for f in User._meta.concrete_fields if f.attname not in RARELY_NEEDED)

# user_id -> (expires at, the row's values): this process's recent token users.
_recent: dict[str, tuple[float, tuple]] = {}
# raw token -> (its expiry, the token validated from it): the tokens this process verified.
_verified: dict[bytes, tuple[float, Token]] = {}


class BearerAuthentication(JWTAuthentication):
    """simplejwt's access tokens; the user row is read without its rarely needed columns."""

    # simplejwt looks the user model up in its __init__, and DRF makes an authenticator for
    # every request: looked up once here instead.
    user_model = User

    def __init__(self) -> None:
        """Nothing to set up: the user model is the class's."""

    def get_validated_token(self, raw_token: bytes) -> Token:
        """simplejwt's validated token. One this process verified before is taken again until it
        expires, without decoding it and checking its signature anew: those are the same bytes
        under the same key, and it was a third of the cost of authenticating a request."""
        seen = _verified.get(raw_token)
        if seen is not None and time.time() < seen[0]:
            return seen[1]
        token = super().get_validated_token(raw_token)
        expiry = token.payload.get("exp")  # simplejwt requires it; checked against now, as it does
        if isinstance(expiry, int | float):
            if len(_verified) > 10_000:
                _verified.clear()  # a bound, not an LRU: refilled as requests come
            _verified[raw_token] = (expiry, token)
        return token

    def get_user(self, validated_token):
        if api_settings.CHECK_REVOKE_TOKEN:
            return super().get_user(validated_token)  # compares the password hash: read it all
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as exc:
            raise InvalidToken("Token contained no recognizable user identification") from exc
        user = _token_user(str(user_id))
        if user is None:
            raise AuthenticationFailed("User not found", code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed("User is inactive", code="user_inactive")
        return user


def _token_user(user_id: str) -> User | None:
    """The user a token names: a fresh instance per request, from a row this process read at
    most ``BNPL_AUTH_USER_CACHE_SECONDS`` ago (0: read every time)."""
    ttl, now = settings.BNPL_AUTH_USER_CACHE_SECONDS, time.monotonic()
    recent = _recent.get(user_id) if ttl > 0 else None
    if recent is None or recent[0] <= now:
        with connection.cursor() as cursor:
            cursor.execute(_user_sql(api_settings.USER_ID_FIELD), [user_id])
            row = cursor.fetchone()
        if row is None:
            _recent.pop(user_id, None)
            return None
        row = tuple(row_converted(User, row, fields=FIELDS))
        if ttl > 0:
            if len(_recent) > 10_000:
                _recent.clear()  # a bound, not an LRU: refilled within seconds
            _recent[user_id] = (now + ttl, row)
        recent = (0, row)
    return User.from_db("default", FIELDS, recent[1])


@functools.cache
def _user_sql(id_field: str) -> str:
    """The statement reading FIELDS of the user whose ``id_field`` (unique) is the parameter.
    Written out: on a miss, the ORM took 0.9 ms composing it and converting its row, several
    times the round trip (a customer confirming an offer is usually one)."""
    meta = User._meta
    columns = ", ".join(meta.get_field(name).column for name in FIELDS)
    return f"SELECT {columns} FROM {meta.db_table} WHERE {meta.get_field(id_field).column} = %s"  # noqa: S608  # nosec B608


def token_users_forget() -> None:
    """Forget every user row and verified token this process kept (tests: each starts with a
    clean process)."""
    _recent.clear()
    _verified.clear()


def _forget(sender, instance, **kwargs) -> None:
    """A user saved or deleted through this process is read afresh by its next request: the
    row is dropped now, and again once the change commits (a request in another thread may
    have kept the old row meanwhile). A change by ``QuerySet.update()`` sends no signal: the
    other processes and it see it within ``BNPL_AUTH_USER_CACHE_SECONDS``."""
    user_id = str(getattr(instance, api_settings.USER_ID_FIELD))
    _recent.pop(user_id, None)
    transaction.on_commit(lambda: _recent.pop(user_id, None), robust=True)


post_save.connect(_forget, sender=User, dispatch_uid="bearer-auth-forget-saved")
post_delete.connect(_forget, sender=User, dispatch_uid="bearer-auth-forget-deleted")


class BearerAuthenticationScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of BearerAuthentication: simplejwt's, under the same name."""

    target_class = BearerAuthentication
