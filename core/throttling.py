"""Request rate limits: DRF throttles counted in the default cache (Redis in production).

Four scopes, their rates in ``settings.BNPL_THROTTLE_RATES`` (from the environment):

- ``user``: every authenticated API request, per user;
- ``anon``: every anonymous API request (and the health dashboard), per client address;
- ``auth``: token, token refresh, logout and register, per client address and endpoint:
  password guessing and mass sign-up from one address;
- ``login``: token, per username tried, whatever the address: guessing one account's
  password from many addresses.

A request over a limit is answered 429 ``throttled`` (problem details) with
``Retry-After``: the whole seconds until the window ends.

Counting is a fixed window aligned on the clock: one counter per scope, identity and
window, raised atomically (on Redis one command: a script that increments the counter and
gives a new one its expiry), so requests arriving at once from several processes are all
counted (DRF's own throttles read a list, then write it back, and lose the concurrent
ones). Identities are hashed: neither addresses nor usernames are kept in the cache in
clear.

When the cache cannot be reached the requests pass, unthrottled (a dead cache must not
take the API down with it), and the cache is not tried again by this process for
``BACKOFF_SECONDS``, so a cache that times out costs one slow request per process in that
time, not every request.

Not throttled: ``/healthz`` and ``/readyz`` (a probe answered 429 would restart or
unroute a healthy pod), ``/metrics`` (operators and the scraper's token only), and the
refund-status webhook (signed by the merchant; refused before any write when the
signature is wrong, and a merchant answered 429 would only retry).
"""

import functools
import hashlib
import logging
import os
import time

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

BACKOFF_SECONDS = 5
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_cache_down_until = 0.0
# One command, run atomically by Redis: the counter never exists without its expiry.
_INCR = Script(
    None,
    b"local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n",
)


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"10/min"`` → ``(10, 60)``; None for no limit (``None``, ``""`` or ``"off"``)."""
    if not rate or rate.strip().lower() in ("off", "none"):
        return None
    number, _, period = rate.partition("/")
    try:
        return int(number), _PERIODS[period.strip()[0].lower()]
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"A throttle rate reads like 60/min or 10/s, not {rate!r}.") from exc


def backoff_reset() -> None:
    """Try the cache again on the next request (after a test that took it down)."""
    global _cache_down_until
    _cache_down_until = 0.0


def _count(key: str, ttl: int) -> int | None:
    """Add one to the counter ``key`` (created to live ``ttl`` seconds); its new value, or
    None when the cache cannot be reached."""
    global _cache_down_until
    if time.monotonic() < _cache_down_until:
        return None
    cache = caches["default"]
    try:
        if isinstance(cache, RedisCache):
            return _incr(cache, cache.make_and_validate_key(key), ttl)
        cache.add(key, 0, ttl)
        try:
            return cache.incr(key)
        except ValueError:  # evicted between the two calls: a fresh window, counted once
            cache.add(key, 1, ttl)
            return 1
    except (RedisError, OSError) as exc:
        _cache_down_until = time.monotonic() + BACKOFF_SECONDS
        logger.warning(
            "Rate limits not enforced for %s s: the cache cannot be reached (%s)",
            BACKOFF_SECONDS,
            exc.__class__.__name__,
        )
        return None


def _incr(cache: RedisCache, key: str, ttl: int) -> int:
    """Run _INCR on ``key`` through the connection ``cache`` keeps for the throttle (one per
    cache object, so per thread, and per process). redis-py's client takes a connection from
    its pool, checks it and gives it back around every command, which cost more than the
    round trip. A connection the server closed since its last use is opened again, once."""
    held = getattr(cache, "_throttle_connection", None)
    if held is None or held[0] != os.getpid():  # a forked worker opens its own
        pool = cache._cache.get_client(write=True).connection_pool
        held = cache._throttle_connection = (os.getpid(), pool.make_connection())
    connection = held[1]
    try:
        try:
            return _incr_on(connection, key, ttl)
        except RedisConnectionError:
            connection.disconnect()
            return _incr_on(connection, key, ttl)
    except (RedisError, OSError):
        connection.disconnect()  # nothing half read is left for the next request
        raise


def _incr_on(connection, key: str, ttl: int) -> int:
    connection.send_command("EVALSHA", _INCR.sha, 1, key, ttl)
    try:
        return connection.read_response()
    except NoScriptError:  # the server forgot the script (restarted, flushed): sent whole
        connection.send_command("EVAL", _INCR.script, 1, key, ttl)
        return connection.read_response()


def _hashed(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=12).hexdigest()


class WindowRateThrottle(BaseThrottle):
    """A request limit of ``BNPL_THROTTLE_RATES[scope]`` per identity and window.

    Subclasses say whom a request counts against (``identity``; None: not counted here).
    The rate is read when the throttle is made, once per request, so a changed setting
    applies at once.
    """

    scope: str = ""

    def __init__(self) -> None:
        self.limit = parse_rate(settings.BNPL_THROTTLE_RATES.get(self.scope))
        self.retry_after: float | None = None

    def identity(self, request, view) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        if self.limit is None:
            return True
        identity = self.identity(request, view)
        if identity is None:
            return True
        allowed, period = self.limit
        now = time.time()
        window = int(now // period)
        count = _count(f"throttle:{self.scope}:{_hashed(identity)}:{window}", period + 1)
        if count is None or count <= allowed:
            return True
        self.retry_after = (window + 1) * period - now
        return False

    def wait(self) -> float | None:
        return self.retry_after

    @staticmethod
    def authenticated(request) -> bool:
        user = getattr(request, "user", None)
        return bool(user and user.is_authenticated)


class UserThrottle(WindowRateThrottle):
    """Authenticated requests, per user."""

    scope = "user"

    def identity(self, request, view) -> str | None:
        return f"user:{request.user.pk}" if self.authenticated(request) else None


class AnonThrottle(WindowRateThrottle):
    """Anonymous requests, per client address (``BNPL_TRUSTED_PROXIES`` says which one)."""

    scope = "anon"

    def identity(self, request, view) -> str | None:
        return None if self.authenticated(request) else f"addr:{self.get_ident(request)}"


class AuthThrottle(WindowRateThrottle):
    """Credential endpoints, per client address and endpoint: a burst of token refreshes
    from one address does not lock its logins out."""

    scope = "auth"

    def identity(self, request, view) -> str | None:
        return f"addr:{self.get_ident(request)}:{view.__class__.__name__}"


class LoginThrottle(WindowRateThrottle):
    """Token requests, per username tried (case-folded), from any address."""

    scope = "login"

    def identity(self, request, view) -> str | None:
        data = request.data
        username = data.get("username") if hasattr(data, "get") else None
        if not isinstance(username, str) or not username:
            return None  # the serializer answers 400
        return f"username:{username.casefold()}"


AUTH_THROTTLES = [AuthThrottle]
LOGIN_THROTTLES = [AuthThrottle, LoginThrottle]


def throttled_view(*throttle_classes: type[WindowRateThrottle]):
    """The DRF throttles on a plain Django view: over a limit, the same 429 problem with
    ``Retry-After`` that the API answers."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            waits = []
            for throttle in (cls() for cls in throttle_classes):
                if not throttle.allow_request(request, None):
                    waits.append(throttle.wait() or 1)
            if waits:
                # Imported here: core.problems imports DRF's views, which import this module.
                from core.problems import problem_response

                exc = Throttled(max(waits))
                return problem_response(
                    status=exc.status_code,
                    code=exc.default_code,
                    detail=str(exc.detail),
                    headers={"Retry-After": str(exc.wait)},
                    retry_after=exc.wait,
                )
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
