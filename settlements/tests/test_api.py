"""Settlements and payouts over REST: scope, filters, the settlement file as CSV."""

import csv
import io
from decimal import Decimal

import pytest

from accounts.tests.factories import MerchantFactory, OperatorFactory, UserFactory
from bnpl.tests.factories import plan_originated
from conftest import client_for
from settlements.models import Payout, Settlement
from settlements.reports import COLUMNS
from settlements.tests.factories import settled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_tasks")]


@pytest.fixture
def books():
    """Two merchants, each with a settled, paid-out day."""
    mine, theirs = MerchantFactory(payout=True), MerchantFactory(payout=True)
    plans = [plan_originated(total="100.00", merchant=mine) for _ in range(3)]
    plan_originated(total="200.00", merchant=theirs, currency="EUR")
    settled()
    return mine, theirs, plans


def test_a_merchant_lists_and_reads_its_own_settlements_and_payouts(books):
    mine, theirs, _ = books
    client = client_for(mine)

    page = client.get("/api/v1/settlements/").json()
    assert [row["merchant_id"] for row in page["results"]] == [mine.user_id]
    settlement = page["results"][0]
    assert (settlement["net"], settlement["line_count"], settlement["payout_status"]) == ("287.10", 3, "PAID")
    assert client.get(f"/api/v1/settlements/{settlement['id']}/").json()["gross"] == "300.00"

    payouts = client.get("/api/v1/payouts/").json()["results"]
    assert [(p["amount"], p["status"], p["account"]) for p in payouts] == [("287.10", "PAID", "DE89**************3000")]
    assert client.get(f"/api/v1/payouts/{payouts[0]['id']}/").json()["settlement_id"] == settlement["id"]

    other = Settlement.objects.get(merchant=theirs)
    assert client.get(f"/api/v1/settlements/{other.pk}/").status_code == 404
    assert client.get(f"/api/v1/settlements/{other.pk}/lines/").status_code == 404
    assert client.get(f"/api/v1/payouts/{Payout.objects.get(merchant=theirs).pk}/").status_code == 404


def test_an_operator_sees_every_merchant_and_filters(books):
    mine, theirs, _ = books
    client = client_for(OperatorFactory())

    assert client.get("/api/v1/settlements/").json()["count"] == 2
    eur = client.get("/api/v1/settlements/", {"currency": "EUR"}).json()["results"]
    assert [row["merchant_id"] for row in eur] == [theirs.user_id]
    by_merchant = client.get("/api/v1/payouts/", {"merchant_id": mine.user_id}).json()["results"]
    assert [row["merchant_id"] for row in by_merchant] == [mine.user_id]
    assert client.get("/api/v1/payouts/", {"status": "FAILED"}).json()["count"] == 0


def test_customers_get_nothing(books):
    client = client_for(UserFactory())

    for url in ("/api/v1/settlements/", "/api/v1/payouts/", f"/api/v1/settlements/{Settlement.objects.first().pk}/"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert response["Content-Type"] == "application/problem+json"


def test_bad_filters_are_a_400_naming_the_field(books):
    client = client_for(books[0])

    response = client.get("/api/v1/settlements/", {"business_date_from": "yesterday"})
    assert response.status_code == 400
    assert "business_date_from" in response.json()["errors"]
    assert client.get("/api/v1/payouts/", {"status": "LOST"}).status_code == 400
    for odd in ("abc", "%C2%B2", "99999999999999999999"):  # not a number, a superscript digit, past a bigint
        assert client.get(f"/api/v1/settlements/{odd}/").status_code == 404, odd
        assert client.get(f"/api/v1/settlements/{odd}/lines/").status_code == 404, odd
        assert client.get(f"/api/v1/payouts/{odd}/").status_code == 404, odd


def test_lines_as_json_pages(books):
    mine, _, plans = books
    settlement = Settlement.objects.get(merchant=mine)
    client = client_for(mine)

    page = client.get(f"/api/v1/settlements/{settlement.pk}/lines/", {"page_size": 2}).json()
    assert page["count"] == 3
    assert [(row["type"], row["plan_id"], row["net"]) for row in page["results"]] == [
        ("capture", plans[0].pk, "95.70"),
        ("capture", plans[1].pk, "95.70"),
    ]


@pytest.mark.parametrize("how", [{"query": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}])
def test_lines_as_a_streamed_csv_file(books, how):
    mine, _, plans = books
    settlement = Settlement.objects.get(merchant=mine)
    client = client_for(mine)

    response = client.get(f"/api/v1/settlements/{settlement.pk}/lines/", how.get("query"), headers=how.get("headers"))

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"settlement-{settlement.business_date}-USD-{settlement.pk}.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert list(rows[0]) == COLUMNS
    assert [(int(row["plan_id"]), Decimal(row["net"])) for row in rows] == [(p.pk, Decimal("95.70")) for p in plans]


def test_a_csv_request_that_fails_gets_a_problem(books):
    _, theirs, _ = books
    other = Settlement.objects.get(merchant=theirs)
    client = client_for(books[0])

    response = client.get(f"/api/v1/settlements/{other.pk}/lines/", {"format": "csv"})

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 404
