import re
from decimal import Decimal

import pytest

from accounts.tests.factories import MerchantFactory, UserFactory
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


def test_money_series_are_the_books_per_currency(
    as_user, operator, make_plan, eager_tasks, django_capture_on_commit_callbacks, settings
):
    from refunds.services import refund_request, refund_status_apply
    from settlements.tests.factories import settled

    settings.BNPL_REFUND_RETURNS_FEE = True
    merchant = MerchantFactory(payout=True)
    make_plan(merchant=merchant, total="100.00")  # fee 4.30
    euros = make_plan(merchant=merchant, total="200.00", currency="EUR")  # fee 8.30
    with django_capture_on_commit_callbacks(execute=True):
        settled()  # paid out 95.70 USD and 191.70 EUR
    refund, _ = refund_request(
        plan_id=euros.pk, transaction_id="m-eur", amount=Decimal("50.00"), reason="", requester=merchant
    )
    refund_status_apply(refund_id=refund.pk, status="APPROVED", source="operator", actor=operator)

    text = as_user(operator).get("/metrics").content.decode()

    assert "# TYPE money_processed_total counter" in text
    assert "# TYPE merchant_fees_earned gauge" in text  # falls when a refund gives a fee share back
    samples = {
        (series, currency): value(text, f'{series}{{currency="{currency}"}}')
        for series in (
            "money_processed_total",
            "money_refunded_total",
            "merchant_fees_earned",
            "late_fees_earned",
            "money_paid_out_total",
        )
        for currency in ("EUR", "USD")
    }
    assert samples == {
        ("money_processed_total", "EUR"): 200.0,
        ("money_processed_total", "USD"): 100.0,
        ("money_refunded_total", "EUR"): 50.0,
        ("money_refunded_total", "USD"): 0.0,
        ("merchant_fees_earned", "EUR"): 6.22,  # 8.30 less the refund's share: 8.30 * 50 / 200 = 2.08 (half up)
        ("merchant_fees_earned", "USD"): 4.3,
        ("late_fees_earned", "EUR"): 0.0,
        ("late_fees_earned", "USD"): 0.0,
        ("money_paid_out_total", "EUR"): 191.7,
        ("money_paid_out_total", "USD"): 95.7,
    }
