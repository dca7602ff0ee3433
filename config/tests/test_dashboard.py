import re
from datetime import timedelta

import pytest

from bnpl.schedule import business_today
from bnpl.services import overdue_sweep
from config.tests.faults import inject

pytestmark = pytest.mark.django_db


@pytest.fixture
def activity(make_plan, customer, as_user):
    make_plan(customer=customer, total="400.00", purchase_date=business_today() - timedelta(days=45))
    overdue_sweep()
    return customer


def test_dashboard_renders_components_figures_and_a_local_chart(api_client, activity):
    response = api_client.get("/api/v1/health/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    page = response.content.decode()
    assert '<meta http-equiv="refresh" content="30">' in page
    for component in ("database", "last_sweep", "ledger_check", "celery"):
        assert f'data-component="{component}"' in page
    assert "<svg" in page
    assert "http://" not in page
    assert "https://" not in page  # no CDN: everything is inline


def test_json_carries_every_figure_on_the_page(api_client, activity):
    page = api_client.get("/api/v1/health/", HTTP_ACCEPT="text/html").content.decode()
    data = api_client.get("/api/v1/health/", HTTP_ACCEPT="application/json").json()

    shown = dict(re.findall(r'data-figure="([^"]+)">(\d+)<', page))
    figures = data["figures"]
    flat = {
        "users": figures["users"],
        "customers_normal": figures["customers_normal"],
        "customers_debt": figures["customers_debt"],
        "installments_overdue": figures["installments_overdue"],
        "payments_failed_24h": figures["payments_failed_24h"],
        "events_pending": figures["events_pending"],
        "events_failed": figures["events_failed"],
        **{f"plans_{k}": v for k, v in figures["plans_by_status"].items()},
        **{f"bucket_{k}": v for k, v in figures["overdue_by_bucket"].items()},
        **{f"refunds_{k}": v for k, v in figures["refunds_by_status"].items()},
    }
    assert {k: int(v) for k, v in shown.items()} == flat
    assert figures["customers_debt"] == 1
    assert figures["installments_overdue"] == 1
    assert len(figures["daily"]) == 30
    assert data["components"]["last_sweep"]["status"] == "ok"
    assert api_client.get("/api/v1/health/?format=json", HTTP_ACCEPT="text/html").json()["figures"] == figures


@pytest.mark.faults
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_dashboard_is_503_and_still_renders_when_the_database_is_down(api_client, database_down):
    page = api_client.get("/api/v1/health/", HTTP_ACCEPT="text/html")
    data = api_client.get("/api/v1/health/", HTTP_ACCEPT="application/json")
    assert page.status_code == 503
    assert "The database is unreachable" in page.content.decode()
    assert data.status_code == 503
    assert data.json()["components"]["database"]["status"] == "down"
    assert data.json()["figures"] is None


@pytest.mark.faults
def test_with_redis_down_the_dashboard_shows_the_workers_down_without_waiting_on_the_broker(api_client, settings):
    # A hung Redis made the worker ping wait out the broker's timeouts (6 to 8 s) first.
    inject("redis unreachable (nothing listens)")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_TASK_ALWAYS_EAGER = False

    data = api_client.get("/api/v1/health/?format=json").json()

    assert data["status"] == "ok", "the database is up"
    assert data["components"]["redis"]["status"] == "down"
    assert data["components"]["celery"] == {"status": "down", "error": "broker unreachable"}
