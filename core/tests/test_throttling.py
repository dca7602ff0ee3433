"""Rate limits (core/throttling.py): the real throttles, at low rates, on the real Redis
(and on the local-memory cache the embedded mode uses), each test in a key namespace of
its own and at a frozen instant, so no window boundary or earlier run can change a count."""

import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.cache import caches
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import DEFAULT_PASSWORD, MerchantFactory, UserFactory
from core import throttling
from core.tests.test_problems import problem

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"
LOGOUT = "/api/v1/auth/logout/"
REGISTER = "/api/v1/auth/register/"
ME = "/api/v1/auth/me/"
LOOSE = "100000/min"


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "locmem"])
def throttle_cache(request, settings):
    """The default cache, emptied of counters: a fresh key prefix on the real Redis, or a
    fresh local-memory cache."""
    if request.param == "redis":
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": settings.REDIS_URL,
                "KEY_PREFIX": f"{settings.CACHES['default'].get('KEY_PREFIX', 'bnpl')}-throttle-{uuid.uuid4().hex}",
                "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
            }
        }
    else:
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
        }
    throttling.backoff_reset()
    yield request.param
    throttling.backoff_reset()


@pytest.fixture
def rates(settings, throttle_cache):
    """``rates(user=..., anon=..., auth=..., login=...)``: those limits, the others loose."""

    def set_rates(**given: str) -> None:
        settings.BNPL_THROTTLE_RATES = {scope: given.get(scope, LOOSE) for scope in ("user", "anon", "auth", "login")}

    set_rates()
    return set_rates


@pytest.fixture
def frozen(time_machine):
    """Time stands still 5 s into the current minute: a per-minute window has 55 s left."""
    now = datetime.now(UTC).replace(second=5, microsecond=0)
    time_machine.move_to(now, tick=False)
    return time_machine


def throttled(response, retry_after: int | None = None) -> dict:
    body = problem(response, 429)
    assert body["code"] == "throttled"
    assert body["title"] == "Too Many Requests"
    wait = int(response["Retry-After"])
    assert wait >= 1
    assert body["retry_after"] == wait
    if retry_after is not None:
        assert wait == retry_after
    return body


def login(api_client, username: str, address: str = "10.0.0.1", password: str = "not-the-password"):  # noqa: S107
    return api_client.post(TOKEN, {"username": username, "password": password}, format="json", REMOTE_ADDR=address)


def test_token_requests_are_limited_per_address(api_client, rates, frozen):
    rates(auth="3/min")
    user = UserFactory()

    answers = [login(api_client, f"nobody-{n}").status_code for n in range(2)]
    answers.append(login(api_client, user.username, password=DEFAULT_PASSWORD).status_code)

    assert answers == [401, 401, 200]
    body = throttled(login(api_client, user.username, password=DEFAULT_PASSWORD), retry_after=55)
    assert "55 seconds" in body["detail"]
    assert login(api_client, "nobody-0", address="10.0.0.2").status_code == 401, "another address has its own count"
    frozen.shift(55)
    assert login(api_client, user.username, password=DEFAULT_PASSWORD).status_code == 200, "a new window"


def test_token_requests_are_limited_per_username_from_any_address(api_client, rates, frozen):
    rates(login="2/min")
    victim = UserFactory(username="victim")

    assert login(api_client, "victim", address="10.0.1.1").status_code == 401
    assert login(api_client, "victim", address="10.0.1.2").status_code == 401
    throttled(login(api_client, "victim", address="10.0.1.3", password=DEFAULT_PASSWORD), retry_after=55)
    throttled(login(api_client, "VICTIM", address="10.0.1.4"))
    assert login(api_client, "someone-else", address="10.0.1.3").status_code == 401
    frozen.shift(timedelta(minutes=1))
    assert login(api_client, victim.username, address="10.0.1.5", password=DEFAULT_PASSWORD).status_code == 200


def test_register_refresh_and_logout_are_limited_per_address_each_on_its_own(api_client, rates, frozen):
    rates(auth="2/min")
    user = UserFactory()
    body = {"username": "x", "password": "short", "role": "CUSTOMER"}  # refused (400), still counted

    assert [api_client.post(REGISTER, body, format="json").status_code for _ in range(2)] == [400, 400]
    throttled(api_client.post(REGISTER, body, format="json"), retry_after=55)
    refresh = str(RefreshToken.for_user(user))
    for _ in range(2):  # each refresh spends its token and answers the next one
        answer = api_client.post(REFRESH, {"refresh": refresh}, format="json")
        assert answer.status_code == 200, answer.content
        refresh = answer.json()["refresh"]
    throttled(api_client.post(REFRESH, {"refresh": refresh}, format="json"))
    assert api_client.post(LOGOUT, {"refresh": refresh}, format="json").status_code == 204
    assert api_client.post(LOGOUT, {"refresh": refresh}, format="json").status_code == 401  # revoked: counted
    throttled(api_client.post(LOGOUT, {"refresh": str(RefreshToken.for_user(user))}, format="json"))


def test_authenticated_requests_are_limited_per_user(as_user, rates, frozen):
    rates(user="3/min", anon="1/min")
    customer, merchant = UserFactory(), MerchantFactory()
    client = as_user(customer)

    assert [client.get(ME).status_code for _ in range(3)] == [200, 200, 200]
    throttled(client.get("/api/v1/plans/"), retry_after=55)
    assert as_user(merchant).get(ME).status_code == 200, "another user, same address: its own count"
    frozen.shift(55)
    assert client.get(ME).status_code == 200


def test_anonymous_requests_are_limited_per_address(api_client, rates, frozen):
    rates(anon="2/min")

    assert [api_client.get("/swagger/").status_code for _ in range(2)] == [200, 200]
    throttled(api_client.get("/redoc/"), retry_after=55)
    assert api_client.get("/swagger/", REMOTE_ADDR="10.0.2.1").status_code == 200
    # Without credentials a protected endpoint answers 401 before any throttle counts.
    assert api_client.get(ME).status_code == 401


def test_the_health_dashboard_is_limited_per_address_with_the_same_problem(api_client, settings, rates, frozen):
    rates(anon="2/min")
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no Celery ping waiting on a worker that is not there

    assert [api_client.get("/api/v1/health/?format=json").status_code for _ in range(2)] == [200, 200]
    throttled(api_client.get("/api/v1/health/?format=json"), retry_after=55)
    throttled(api_client.get("/api/v1/health/", HTTP_ACCEPT="text/html"))


def test_probes_metrics_and_the_webhook_are_never_throttled(api_client, as_user, rates, frozen):
    rates(user="1/min", anon="1/min", auth="1/min", login="1/min")
    operator = UserFactory(role="OPERATOR")
    merchant = MerchantFactory()

    assert {api_client.get("/healthz").status_code for _ in range(5)} == {200}
    assert {api_client.get("/readyz").status_code for _ in range(3)} == {200}
    assert {as_user(operator).get("/metrics").status_code for _ in range(3)} == {200}
    unsigned = [
        api_client.post("/webhook/refund-status/", {}, format="json", HTTP_BNPL_MERCHANT=merchant.user_id).status_code
        for _ in range(3)
    ]
    assert unsigned == [401, 401, 401]


def test_only_the_trusted_proxys_address_counts(api_client, settings, rates, frozen):
    rates(auth="1/min")

    def ask(username: str, **meta):
        return api_client.post(TOKEN, {"username": username, "password": "x"}, format="json", **meta)

    # No trusted proxy (the default): X-Forwarded-For is the client's to choose, so ignored.
    assert ask("a", REMOTE_ADDR="10.0.3.1").status_code == 401
    throttled(ask("b", REMOTE_ADDR="10.0.3.1", HTTP_X_FORWARDED_FOR="1.2.3.4"))

    # One trusted proxy: the address it appended (the last one) is the client's.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "10.0.3.9"
    assert ask("c", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="9.9.9.9, 5.6.7.8").status_code == 401
    assert ask("d", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="5.6.7.9").status_code == 401
    throttled(ask("e", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="1.1.1.1, 5.6.7.8"))


@pytest.mark.redis
def test_requests_arriving_at_once_are_all_counted(settings, rates):
    """Sixteen threads ask at once against a limit of five: exactly five pass (the counter
    is raised atomically in Redis, not read and written back)."""
    rates(auth="5/min")
    request = SimpleNamespace(META={"REMOTE_ADDR": "10.0.4.1"}, headers={}, user=AnonymousUser())
    view = SimpleNamespace()
    start = threading.Barrier(16)
    answers = []

    def ask():
        throttle = throttling.AuthThrottle()
        start.wait()
        answers.append(throttle.allow_request(request, view))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [False] * 11 + [True] * 5


def test_a_cache_that_cannot_be_reached_lets_requests_through(as_user, settings, log_lines):
    """Redis stopped: the API keeps answering, unthrottled, and says so once in the log."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    settings.BNPL_THROTTLE_RATES = dict.fromkeys(settings.BNPL_THROTTLE_RATES, "1/min")
    throttling.backoff_reset()
    client = as_user(UserFactory())
    try:
        answers = [client.get(ME).status_code for _ in range(3)]
        logins = [client.post(TOKEN, {"username": "x", "password": "y"}, format="json") for _ in range(2)]
    finally:
        throttling.backoff_reset()

    assert answers == [200, 200, 200]
    assert [response.status_code for response in logins] == [401, 401]
    warnings = [line for line in log_lines() if "Rate limits not enforced" in line]
    assert len(warnings) == 1, warnings


def test_the_schema_documents_429_with_retry_after_on_every_operation(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operations = [op for ops in schema["paths"].values() for op in ops.values() if isinstance(op, dict)]
    assert len(operations) > 20
    for operation in operations:
        answer = operation["responses"]["429"]
        assert answer["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
        assert answer["headers"]["Retry-After"]["schema"]["type"] == "integer"


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("10/min", (10, 60)),
        ("5/s", (5, 1)),
        ("100/hour", (100, 3600)),
        ("7/day", (7, 86400)),
        ("off", None),
        ("", None),
    ],
)
def test_rates_read_like_drfs(rate, parsed):
    assert throttling.parse_rate(rate) == parsed


def test_a_malformed_rate_stops_the_service_from_starting():
    from config.tests.test_settings import manage

    result = manage("check", BNPL_THROTTLE_LOGIN="five a minute")

    assert result.returncode != 0
    assert "BNPL_THROTTLE_LOGIN" in result.stderr


REDIS_ONLY = pytest.mark.parametrize("throttle_cache", [pytest.param("redis", marks=pytest.mark.redis)], indirect=True)


@REDIS_ONLY
def test_counting_goes_on_when_redis_closes_the_connection_or_forgets_the_script(rates, log_lines):
    """The throttle's own Redis connection, closed by the server (a restart, an idle
    timeout), or finding the script flushed, counts on: no request missed, no back-off."""
    rates(auth="3/min")
    request = SimpleNamespace(META={"REMOTE_ADDR": "10.0.5.1"}, headers={}, user=AnonymousUser())
    throttle = throttling.AuthThrottle()
    assert throttle.allow_request(request, None)
    cache = caches["default"]
    client = cache._cache.get_client(write=True)
    _, connection = cache._throttle_connection
    name = f"throttle-{uuid.uuid4().hex}"
    connection.send_command("CLIENT", "SETNAME", name)
    connection.read_response()
    (held,) = [c for c in client.client_list() if c.get("name") == name]
    assert client.client_kill_filter(_id=held["id"]) == 1

    assert throttle.allow_request(request, None)
    client.script_flush()
    assert throttle.allow_request(request, None)
    assert not throttle.allow_request(request, None), "all three were counted"
    assert not [line for line in log_lines() if "Rate limits not enforced" in line]


@REDIS_ONLY
def test_a_forked_process_opens_its_own_throttle_connection(rates):
    request = SimpleNamespace(META={"REMOTE_ADDR": "10.0.5.2"}, headers={}, user=AnonymousUser())
    assert throttling.AuthThrottle().allow_request(request, None)
    cache = caches["default"]
    pid, inherited = cache._throttle_connection
    cache._throttle_connection = (pid - 1, inherited)  # what a child of this process finds
    assert throttling.AuthThrottle().allow_request(request, None)
    assert cache._throttle_connection[0] == pid
    assert cache._throttle_connection[1] is not inherited
