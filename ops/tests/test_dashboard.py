import re
from datetime import date, timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models import F
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import MerchantFactory
from bnpl.schedule import business_today
from bnpl.services.sweep import overdue_sweep
from config.tests.faults import inject
from ops.dashboard import FIGURES_NOTE, _chart, _page_context

pytestmark = pytest.mark.django_db

FIGURE = re.compile(r'data-figure="([^"]+)">(\d+)<')


@pytest.fixture
def activity(make_plan, customer, as_user):
    make_plan(customer=customer, total="400.00", purchase_date=business_today() - timedelta(days=45))
    overdue_sweep()
    return customer


def signed_in(user, via: str) -> Client:
    """A client signed in as ``user``: by the admin's session, or by a bearer token (the API's)."""
    if via == "session":
        client = Client()
        client.force_login(user)
        return client
    return Client(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")


def page_and_json(client: Client) -> tuple[str, dict]:
    page = client.get("/api/v1/health/", HTTP_ACCEPT="text/html")
    data = client.get("/api/v1/health/", HTTP_ACCEPT="application/json")
    assert page.status_code == data.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    return page.content.decode(), data.json()


def test_dashboard_shows_an_operator_components_figures_and_a_local_chart(operator_client, activity):
    response = operator_client.get("/api/v1/health/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    page = response.content.decode()
    assert '<meta http-equiv="refresh" content="30">' in page
    for component in ("database", "last_sweep", "ledger_check", "celery"):
        assert f'data-component="{component}"' in page
    assert '<svg class="chart"' in page
    assert '<title id="chart-title">Plans created and successful payments per day</title>' in page
    today = date.fromisoformat(operator_client.get("/api/v1/health/?format=json").json()["figures"]["daily"][-1]["day"])
    assert '<text class="day-label" x="' in page
    assert f">{today.strftime('%b')} {today.day}</text>" in page  # today's bar is labelled
    assert "http://" not in page
    assert "https://" not in page  # no CDN: the chart is inline SVG, the styles this origin's


def test_json_carries_every_figure_on_the_page(operator_client, activity):
    page = operator_client.get("/api/v1/health/", HTTP_ACCEPT="text/html").content.decode()
    data = operator_client.get("/api/v1/health/", HTTP_ACCEPT="application/json").json()

    shown = dict(FIGURE.findall(page))
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
    assert "figures_note" not in data
    assert data["components"]["last_sweep"]["status"] == "ok"
    assert operator_client.get("/api/v1/health/?format=json", HTTP_ACCEPT="text/html").json()["figures"] == figures


@pytest.mark.parametrize("via", ["session", "jwt"])
def test_an_operator_sees_the_figures_by_session_or_by_bearer_token(operator, activity, via):
    page, data = page_and_json(signed_in(operator, via))

    assert data["figures"]["users"] >= 3
    assert data["figures"]["customers_debt"] == 1
    assert "figures_note" not in data
    assert FIGURE.search(page)
    assert 'id="figures"' in page
    assert '<svg class="chart"' in page
    assert 'id="figures-hidden"' not in page


@pytest.mark.parametrize(
    ("role", "via"),
    [("anonymous", None), ("customer", "jwt"), ("customer", "session"), ("merchant", "jwt"), ("merchant", "session")],
)
def test_only_operators_see_figures_others_see_components_and_a_note(activity, role, via):
    user = {"anonymous": None, "customer": activity, "merchant": MerchantFactory()}[role]
    page, data = page_and_json(Client() if user is None else signed_in(user, via))

    assert data["status"] == "ok"
    assert data["components"]["database"]["status"] == "ok"
    assert data["components"]["last_sweep"]["status"] == "ok"  # components are for anyone
    assert data["figures"] is None
    assert data["figures_note"] == FIGURES_NOTE
    assert 'data-component="last_sweep"' in page
    assert FIGURE.search(page) is None
    assert "<svg" not in page
    assert "normal customers" not in page
    assert 'id="figures-hidden"' in page
    assert FIGURES_NOTE.replace("'", "&#x27;") in page


def test_no_figures_are_read_for_a_caller_who_may_not_see_them(api_client, operator_client, activity):
    with CaptureQueriesContext(connection) as anonymous:
        api_client.get("/api/v1/health/?format=json")
    with CaptureQueriesContext(connection) as operator:
        operator_client.get("/api/v1/health/?format=json")

    assert not any(
        '"accounts_user"' in query["sql"] and "COUNT" in query["sql"] for query in anonymous.captured_queries
    )
    assert len(anonymous.captured_queries) < len(operator.captured_queries)


def test_a_bad_bearer_token_is_a_401_problem_not_an_anonymous_page(activity):
    response = Client(HTTP_AUTHORIZATION="Bearer not-a-token").get("/api/v1/health/", HTTP_ACCEPT="text/html")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json()["code"] == "token_not_valid"


def test_the_answer_varies_with_who_asks(api_client):
    response = api_client.get("/api/v1/health/?format=json")

    vary = {name.strip() for name in response["Vary"].split(",")}
    assert {"Accept", "Authorization", "Cookie"} <= vary
    assert "no-store" in response["Cache-Control"]


def test_card_titles_are_words_not_keys(operator_client, activity):
    page = operator_client.get("/api/v1/health/", HTTP_ACCEPT="text/html").content.decode()

    titles = re.findall(r"<h3>([^<]+)</h3>", page)
    assert {"Database", "Celery worker", "Last sweep", "Ledger check"} <= set(titles)
    assert not [title for title in titles if "_" in title or title != title.strip()], titles
    details = re.findall(r"<dt>([^<]+)</dt>", page)
    assert "latency (ms)" in details
    assert not [detail for detail in details if "_" in detail], details
    # A timestamp is short text, with the exact value kept for machines.
    at = re.search(r'<dd data-detail="at"><time datetime="([^"]+)"[^>]*>([^<]+)</time>', page)
    assert at, page
    assert at.group(2).endswith("\N{NO-BREAK SPACE}UTC")
    assert len(at.group(2)) < len(at.group(1))


def test_a_new_component_shows_with_its_label_without_a_template_change(rf: RequestFactory):
    snapshot = {
        "status": "ok",
        "checked_at": "2026-11-05T10:00:00+00:00",
        "components": {
            "database": {"status": "ok", "latency_ms": 1.2},
            "broker": {"status": "down", "error": "ConnectionRefusedErrorWithAVeryLongNameThatMustWrap"},
            "last_payout": {"status": "ok", "paid_at": "2026-11-05T09:00:00+00:00"},
        },
        "figures": None,
    }
    request = rf.get("/api/v1/health/")
    request.user = AnonymousUser()

    page = render_to_string("health.html", _page_context(snapshot, operator=False), request=request)

    assert "<h3>Broker</h3>" in page
    assert "<h3>Last payout</h3>" in page  # not in COMPONENT_LABELS: the key, in words
    assert '<dd data-detail="error">ConnectionRefusedErrorWithAVeryLongNameThatMustWrap</dd>' in page
    assert "<dt>paid at</dt>" in page
    assert '<time datetime="2026-11-05T09:00:00+00:00"' in page


def test_the_chart_labels_days_every_few_days_ending_today():
    first = date(2026, 10, 7)
    daily = [{"day": (first + timedelta(days=i)).isoformat(), "plans": i % 3, "payments": 1} for i in range(30)]

    chart = _chart(daily)

    assert [label["text"] for label in chart["day_labels"]] == [
        "Oct 11", "Oct 16", "Oct 21", "Oct 26", "Oct 31", "Nov 5"
    ]  # fmt: skip
    assert chart["first"] == "Oct 7"
    assert chart["last"] == "Nov 5"
    assert chart["peak"] == 2
    rightmost = max(bar["x_payments"] for bar in chart["bars"]) + chart["bar_width"]
    assert rightmost <= chart["width"]
    assert all(0 <= bar["y_plans"] <= chart["base"] for bar in chart["bars"])
    assert max(bar["h_plans"] for bar in chart["bars"]) == chart["base"] - chart["top"]


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
def test_with_redis_down_the_dashboard_shows_the_workers_down_without_waiting_on_the_broker(
    api_client, settings, broker_at
):
    # A hung Redis made the worker ping wait out the broker's timeouts (6 to 8 s) first.
    inject("redis unreachable (nothing listens)")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    broker_at("redis://127.0.0.1:1/0")

    data = api_client.get("/api/v1/health/?format=json").json()

    assert data["status"] == "ok", "the database is up"
    assert data["components"]["redis"]["status"] == "down"
    assert data["components"]["broker"]["status"] == "down"
    assert data["components"]["celery"] == {"status": "down", "error": "broker unreachable"}


@pytest.mark.redis
def test_the_dashboard_shows_the_broker_as_the_app_publishes_to_it(api_client, broker_at):
    assert api_client.get("/api/v1/health/?format=json").json()["components"]["broker"]["status"] == "ok"

    broker_at("sqs://")  # a transport that cannot be loaded: Redis still answers its ping
    data = api_client.get("/api/v1/health/?format=json").json()

    assert data["components"]["redis"]["status"] == "ok"
    assert data["components"]["broker"] == {"status": "down", "error": "ModuleNotFoundError"}
    assert data["components"]["celery"] == {"status": "down", "error": "broker unreachable"}
    page = api_client.get("/api/v1/health/", HTTP_ACCEPT="text/html").content.decode()
    assert "Broker" in page


@pytest.fixture
def settlement_day(make_plan, eager_tasks, django_capture_on_commit_callbacks):
    """A settled day: one merchant paid (100.00 USD, fee 4.30), one whose account is closed
    (its payout of 200.00 EUR less 8.30 fails)."""
    from django.db import transaction

    from accounts.services import merchant_payout_account_set
    from settlements.tests.factories import settled

    paid, closed = MerchantFactory(payout=True), MerchantFactory(payout=True)
    with transaction.atomic():
        merchant_payout_account_set(merchant=closed, account="123450002", name="Shop", changed_by=closed)
    make_plan(merchant=paid, total="100.00")
    make_plan(merchant=closed, total="200.00", currency="EUR")
    with django_capture_on_commit_callbacks(execute=True):
        return settled()


def test_the_last_settlement_is_a_component_for_anyone(api_client, settlement_day):
    assert settlement_day.finished_at is not None

    data = api_client.get("/api/v1/health/?format=json").json()
    page = api_client.get("/api/v1/health/", HTTP_ACCEPT="text/html").content.decode()

    assert data["components"]["last_settlement"] == {
        "status": "attention",  # a payout failed and no settlement has taken its money back yet
        "business_date": business_today().isoformat(),
        "at": settlement_day.started_at.isoformat(),
        "finished": True,
        "finished_at": settlement_day.finished_at.isoformat(),
        "settlements": 2,
        "payouts": 2,
        "payouts_failed": 1,
        "payouts_pending": 0,
    }
    assert data["figures"] is None
    assert "<h3>Last settlement</h3>" in page
    assert '<dd data-detail="finished">yes</dd>' in page
    assert "<dt>failed payouts to see to</dt>" in page
    assert 'id="money"' not in page


def test_the_last_settlement_says_never_running_stale_or_ok(
    api_client, make_plan, eager_tasks, django_capture_on_commit_callbacks
):
    from settlements.models import SettlementRun
    from settlements.tests.factories import settled

    def status():
        return api_client.get("/api/v1/health/?format=json").json()["components"]["last_settlement"]["status"]

    assert api_client.get("/api/v1/health/?format=json").json()["components"]["last_settlement"] == {"status": "never"}
    make_plan(merchant=MerchantFactory(payout=True), total="100.00")
    with django_capture_on_commit_callbacks(execute=True):
        settled()
    assert status() == "ok"
    # The run's own row, as a worker would leave it: chunks still out, or an old day.
    SettlementRun.objects.update(finished_at=None)
    assert status() == "running"
    SettlementRun.objects.update(finished_at=F("started_at"), business_date=business_today() - timedelta(days=3))
    assert status() == "stale"  # the beat settles yesterday each night: a day was missed
    SettlementRun.objects.update(business_date=business_today() - timedelta(days=2))
    assert status() == "ok"  # just after midnight, before the night's run


def test_an_operator_sees_the_money_per_currency_on_the_page_and_in_json(operator_client, settlement_day):
    page, data = page_and_json(operator_client)

    assert data["figures"]["money"] == [
        {
            "currency": "EUR",
            "collected": "0.00",
            "processed": "200.00",
            "refunded": "0.00",
            "merchant_fees": "8.30",
            "late_fees": "0.00",
            "paid_out": "0.00",  # its payout failed: nothing left the books
        },
        {
            "currency": "USD",
            "collected": "0.00",
            "processed": "100.00",
            "refunded": "0.00",
            "merchant_fees": "4.30",
            "late_fees": "0.00",
            "paid_out": "95.70",
        },
    ]
    shown = dict(re.findall(r'data-money="([^"]+)">([^<]+)<', page))
    assert shown == {
        f"{row['currency']}_{key}": row[key]
        for row in data["figures"]["money"]
        for key in ("processed", "refunded", "merchant_fees", "late_fees", "paid_out")
    }
    assert "<dt>merchant fees, net of refunds</dt>" in page


def test_the_dashboard_reads_a_fixed_number_of_queries_whatever_the_rows(
    api_client, operator_client, settlement_day, make_plan, eager_tasks, django_capture_on_commit_callbacks
):
    def queries(client) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/health/?format=json").status_code == 200
        return len(captured.captured_queries)

    operator, anonymous = queries(operator_client), queries(api_client)
    # More of everything the dashboard reads: a currency, plans, a second run, another payout.
    merchant = MerchantFactory(payout=True)
    for currency in ("UZS", "USD", "EUR"):
        make_plan(merchant=merchant, total="300.00", currency=currency)
    from settlements.models import SettlementRun
    from settlements.tests.factories import settled

    with django_capture_on_commit_callbacks(execute=True):
        settled()
    assert SettlementRun.objects.count() == 2

    assert queries(operator_client) == operator
    assert queries(api_client) == anonymous
    assert anonymous < operator
