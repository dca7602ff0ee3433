import re

import pytest

from accounts.tests.factories import UserFactory
from refunds.models import Refund

pytestmark = pytest.mark.django_db

SERIES = (
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "plans_created_total",
    "payments_succeeded_total",
    "payments_failed_total",
    "refunds_processed_total",
    "installments_overdue",
    "overdue_sweep_seconds",
    "ledger_check_failures_total",
    "merchant_events_pending",
    "merchant_events_failed_total",
)


def value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{series} not in metrics"
    return float(match.group(1))


def test_metrics_need_an_operator_or_the_token(api_client, as_user, customer, operator, settings):
    assert api_client.get("/metrics").status_code == 401
    assert as_user(customer).get("/metrics").status_code == 403
    assert as_user(operator).get("/metrics").status_code == 200
    settings.METRICS_TOKEN = "scrape-secret"
    assert api_client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
    assert api_client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_every_series_is_exposed_and_moves(as_user, operator, make_plan, merchant):
    client = as_user(operator)
    before = client.get("/metrics").content.decode()
    for series in SERIES:
        assert re.search(rf"^{series}", before, re.MULTILINE), series

    declined = UserFactory(card_number="4000000000000002")
    plan = make_plan(customer=declined, merchant=merchant, total="100.00")
    as_user(declined).post(f"/api/v1/plans/{plan.pk}/pay/", {"amount": "10.00"}, format="json")
    refund = client.post(
        "/api/v1/refunds/", {"plan_id": plan.pk, "transaction_id": "m-1", "amount": "10.00"}, format="json"
    ).json()
    client.post(f"/api/v1/refunds/{refund['id']}/approve/")
    after = client.get("/metrics").content.decode()

    assert value(after, "payments_failed_total") == value(before, "payments_failed_total") + 1
    assert value(after, "plans_created_total") == value(before, "plans_created_total") + 1
    approved = 'refunds_processed_total{status="approved"}'
    assert value(after, approved) == value(before, approved) + 1
    assert Refund.objects.get().status == "APPROVED"
    # Counted from before, as above: the counter is the process's, and other tests may pay too.
    declined_pay = 'http_requests_total{method="POST",status="402",view="plan-pay"}'
    assert value(after, declined_pay) == (value(before, declined_pay) if declined_pay in before else 0) + 1
