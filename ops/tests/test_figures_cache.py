"""The figures served from the cache (bnpl.analytics.figures_cached): one computation at a
time however many callers arrive on a cold cache, stale figures served while one caller
computes them again, never a transaction's own view shared, and beat's refresh."""

import threading
import time
import uuid

import pytest
from django.core.cache import cache
from django.db import connections
from django.test import Client

from bnpl.analytics import Figures, FiguresUnavailable, _cache_key, figures_cached, figures_refresh

CALLERS = 8


@pytest.fixture
def name():
    """A figures name of this test's own, its cache entry and lock removed afterwards."""
    name = f"test:{uuid.uuid4().hex}"
    yield name
    cache.delete_many([_cache_key(name), _cache_key(name) + ":lock"])


def slow(seconds: float, calls: list):
    def compute():
        calls.append(threading.get_ident())
        time.sleep(seconds)
        return {"n": len(calls)}

    return compute


def side_by_side(target, callers: int = CALLERS) -> list:
    """``target()`` in ``callers`` threads released at once: their results (or exceptions)."""
    results: list = [None] * callers
    start = threading.Barrier(callers)

    def run(index):
        start.wait()
        try:
            results[index] = target()
        except Exception as exc:
            results[index] = exc
        finally:
            connections.close_all()  # this thread's own

    threads = [threading.Thread(target=run, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_a_cold_cache_computes_once_however_many_callers_arrive(name):
    calls: list = []

    results = side_by_side(lambda: figures_cached(name, slow(0.3, calls)))

    assert len(calls) == 1, "one computation; the other callers waited for it"
    assert all(isinstance(result, Figures) for result in results), results
    assert {result.value["n"] for result in results} == {1}
    assert len({result.computed_at for result in results}) == 1


def test_fresh_figures_come_from_the_cache_without_computing(name):
    calls: list = []
    first = figures_cached(name, slow(0, calls))

    again = figures_cached(name, slow(0, calls))

    assert calls == [calls[0]]
    assert again == first
    assert again.computed_at is not None
    assert again.age < 5


def test_stale_figures_are_served_at_once_while_one_caller_computes_them_again(name, settings):
    settings.FIGURES_CACHE_SECONDS = 60
    calls: list = []
    cache.set(_cache_key(name), ({"n": "old"}, time.time() - 61), timeout=600)

    results = side_by_side(lambda: figures_cached(name, slow(0.5, calls)))

    assert len(calls) == 1, "one caller computed them again"
    values = [result.value["n"] for result in results]
    assert sorted(values, key=str) == [1] + ["old"] * (CALLERS - 1), "the others got the stale ones at once"
    assert figures_cached(name, slow(0, calls)).value == {"n": 1}


def test_callers_of_a_cold_cache_give_up_after_the_wait_with_a_503(name, settings):
    settings.FIGURES_WAIT_SECONDS = 0.3
    calls: list = []
    assert cache.add(_cache_key(name) + ":lock", "another process", timeout=30)  # computing, elsewhere

    started = time.monotonic()
    with pytest.raises(FiguresUnavailable) as raised:
        figures_cached(name, slow(0, calls))

    assert 0.3 <= time.monotonic() - started < 2
    assert raised.value.status_code == 503
    assert calls == [], "no second computation beside the one under way"


def test_a_refresh_leaves_the_lock_of_another_computation_alone(name):
    assert cache.add(_cache_key(name) + ":lock", "another process", timeout=30)

    assert figures_refresh(name, lambda: 1) is None
    assert cache.get(_cache_key(name) + ":lock") == "another process"
    cache.delete(_cache_key(name) + ":lock")
    assert figures_refresh(name, lambda: 2).value == 2
    assert cache.get(_cache_key(name) + ":lock") is None, "released once computed"


def test_a_failed_computation_releases_the_lock(name):
    def broken():
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        figures_cached(name, broken)

    assert cache.get(_cache_key(name) + ":lock") is None
    assert figures_cached(name, lambda: 3).value == 3


@pytest.mark.django_db
def test_inside_a_transaction_figures_are_computed_for_the_caller_and_never_cached(name):
    calls: list = []
    cache.set(_cache_key(name), ({"n": "cached"}, time.time()), timeout=600)

    first = figures_cached(name, slow(0, calls))
    second = figures_cached(name, slow(0, calls))

    # They may count the transaction's own writes, which are nobody else's until it commits.
    assert (first.value, second.value) == ({"n": 1}, {"n": 2})
    assert first.computed_at is None
    assert cache.get(_cache_key(name))[0] == {"n": "cached"}


def test_with_no_cache_age_they_are_computed_every_time(name, settings):
    settings.FIGURES_CACHE_SECONDS = 0
    calls: list = []

    assert [figures_cached(name, slow(0, calls)).value for _ in range(2)] == [{"n": 1}, {"n": 2}]


# --- Through the pages, outside any transaction (what a deployment sees) -------------------


@pytest.fixture
def cold_cache():
    """The pages' cached figures removed before and after the test."""
    from ops.figures import refreshed_figures

    def clear():
        names = [*refreshed_figures(), "health:workers"]
        cache.delete_many([_cache_key(n) for n in names] + [_cache_key(n) + ":lock" for n in names])

    clear()
    yield
    clear()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_operators_on_a_cold_cache_make_one_computation_of_the_figures(operator, cold_cache, monkeypatch):
    import ops.dashboard

    calls: list = []
    real = ops.dashboard.health_figures

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(ops.dashboard, "health_figures", counted)
    client = Client()
    client.force_login(operator)

    answers = side_by_side(lambda: client.get("/api/v1/health/?format=json"), callers=6)

    assert [answer.status_code for answer in answers] == [200] * 6
    assert len(calls) == 1
    assert len({answer.json()["figures_at"] for answer in answers}) == 1
    assert all(answer.json()["figures"]["users"] == 1 for answer in answers)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_anonymous_visitors_on_a_cold_cache_make_one_ping_of_the_workers(cold_cache, monkeypatch):
    import ops.dashboard

    pings: list = []
    real = ops.dashboard.celery_ping

    def counted():
        pings.append(1)
        return real()  # no worker listens on the tests' broker: the whole timeout, then "down"

    monkeypatch.setattr(ops.dashboard, "celery_ping", counted)

    answers = side_by_side(lambda: Client().get("/api/v1/health/?format=json"), callers=6)

    assert [answer.status_code for answer in answers] == [200] * 6
    assert len(pings) == 1
    assert {answer.json()["components"]["celery"]["status"] for answer in answers} == {"down"}
    assert all(answer.json()["figures"] is None for answer in answers)
    later = Client().get("/api/v1/health/?format=json").json()["components"]["celery"]
    assert len(pings) == 1, "the next visitor is answered from the cache"
    assert later["workers"] == 0
    assert "at" in later


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_beat_computes_every_cached_figure_and_the_pages_serve_them(operator, cold_cache, make_plan):
    from ops.tasks import figures_refresh_task

    make_plan(total="100.00")
    computed = figures_refresh_task.apply().get()

    assert {"health:figures", "metrics:business", "analytics:all"} <= set(computed)
    client = Client()
    client.force_login(operator)
    health = client.get("/api/v1/health/?format=json").json()
    assert health["figures"]["plans_by_status"]["ACTIVE"] == 1
    assert health["figures"]["money"][0]["processed"] == "100.00"
    page = client.get("/api/v1/health/", HTTP_ACCEPT="text/html").content.decode()
    assert f'id="figures-at">Computed <time datetime="{health["figures_at"]}">' in page
    analytics = client.get("/api/v1/analytics/dashboard/")
    assert analytics.json()["processed_total"] == "100.00"
    assert int(analytics["Age"]) < 60
    metrics = client.get("/metrics").content.decode()
    assert "\nplans_created_total 1.0\n" in metrics
    assert "business_figures_age_seconds" in metrics


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_while_the_first_computation_runs_elsewhere_operators_are_told_so(operator, cold_cache, settings):
    from ops.dashboard import FIGURES, FIGURES_PENDING_NOTE

    settings.FIGURES_WAIT_SECONDS = 0.2
    for name in (FIGURES, "analytics:all"):
        assert cache.add(_cache_key(name) + ":lock", "another process", timeout=30)
    client = Client()
    client.force_login(operator)

    health = client.get("/api/v1/health/?format=json")
    page = client.get("/api/v1/health/", HTTP_ACCEPT="text/html").content.decode()
    analytics = client.get("/api/v1/analytics/dashboard/")

    assert health.status_code == 200
    assert (health.json()["figures"], health.json()["figures_note"]) == (None, FIGURES_PENDING_NOTE)
    assert 'id="figures-pending"' in page
    assert (analytics.status_code, analytics.json()["code"]) == (503, "service_unavailable")
