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
