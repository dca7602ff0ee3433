import pytest
from django.test import override_settings

from config.tests.faults import inject

pytestmark = pytest.mark.django_db


def test_healthz_does_no_io(api_client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = api_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ok_checks_database_and_configured_redis(api_client, settings):
    response = api_client.get("/readyz")

    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert ("redis" in checks) == bool(settings.REDIS_URL)


@pytest.mark.redis
def test_readyz_pings_the_real_redis(api_client):
    assert api_client.get("/readyz").json()["checks"]["redis"]["status"] == "ok"


@pytest.mark.faults
def test_readyz_is_503_naming_redis_when_it_is_down(api_client):
    # Nothing listens on port 1: the same as a Redis that has stopped.
    inject("redis unreachable (nothing listens)")
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = api_client.get("/readyz")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "not_ready"
    assert body["down"] == ["redis"]
    assert "redis" in body["detail"]
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.faults
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_naming_the_database_when_it_is_unreachable(api_client, database_down):
    response = api_client.get("/readyz")

    assert response.status_code == 503
    assert "database" in response.json()["down"]


@pytest.mark.redis
def test_readyz_publishes_to_the_broker_and_leaves_nothing_queued(api_client, settings):
    import redis

    from config.celery import READINESS_QUEUE

    response = api_client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["broker"]["status"] == "ok"
    assert redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(READINESS_QUEUE) == 0


@pytest.mark.redis
def test_readyz_is_503_naming_the_broker_when_its_transport_cannot_be_loaded(api_client, broker_at):
    # The production install once lacked kombu's Redis extra: Redis answered its ping, yet no
    # task could be published. A transport whose library is missing is the same failure.
    broker_at("sqs://")

    response = api_client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker"]
    assert body["checks"]["broker"] == {"status": "down", "error": "ModuleNotFoundError"}
    assert body["checks"]["redis"]["status"] == "ok"
    assert "broker is down" in body["detail"]


@pytest.mark.redis
@pytest.mark.faults
def test_readyz_is_503_naming_the_broker_when_publishing_fails(api_client, broker_at):
    inject("broker unreachable for publishing (nothing listens)")
    broker_at("redis://127.0.0.1:1/0")

    response = api_client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]
    assert response.json()["checks"]["broker"]["status"] == "down"


def test_readyz_leaves_the_broker_out_in_eager_mode(api_client, monkeypatch):
    from config.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)

    assert "broker" not in api_client.get("/readyz").json()["checks"]


def test_system_check_fails_when_the_broker_transport_cannot_be_loaded(broker_at):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from config.celery import check_broker_transport

    assert check_broker_transport() == []
    broker_at("sqs://")

    [error] = check_broker_transport()
    assert error.id == "bnpl.E001"
    assert "ModuleNotFoundError" in error.msg
    with pytest.raises(SystemCheckError, match=r"bnpl\.E001"):
        call_command("check")
