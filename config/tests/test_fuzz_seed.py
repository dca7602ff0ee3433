"""The schema fuzzer's seed (scripts/fuzz_api.py): after the demo data, the day settled with
a paid and a failed payout, so the settlements and payouts operations are fuzzed on real
rows, the settlement's lines and its CSV file included."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from accounts.models import User
from conftest import client_for
from scripts.fuzz_api import FAILING_MERCHANT, seed_settlements
from settlements.models import Payout, Settlement

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]


@pytest.fixture
def seeded(settings):
    settings.DEBUG = True  # the demo data is for local use only
    call_command("populate_mock_data", verbosity=0)
    settings.DEBUG = False
    seed_settlements()


def test_the_demo_merchant_is_paid_and_the_second_merchants_payout_fails(seeded):
    paid = Payout.objects.get(merchant__user_id="merchant-001")
    settlement = paid.settlement
    assert (paid.status, paid.amount, paid.account_masked) == ("PAID", settlement.net, "DE89**************3000")
    assert sorted(settlement.lines.values_list("type", "plan__merchant_reference", "net")) == [
        ("capture", "demo-headphones", Decimal("172.50")),
        ("capture", "demo-laptop", Decimal("1151.70")),
        ("capture", "demo-phone", Decimal("767.70")),
        ("capture", "demo-tablet", Decimal("287.70")),
        ("refund", "demo-laptop", Decimal("-20.00")),
    ]
    failed = Payout.objects.get(merchant__user_id=FAILING_MERCHANT)
    assert (failed.status, failed.failure_code, failed.account_masked) == ("FAILED", "account_closed", "*****0002")
    assert failed.amount == failed.settlement.net == Decimal("239.70")  # 250.00 less 4.00% and 0.30


def test_the_seeded_rows_answer_through_the_api_as_the_fuzzed_roles_call_it(seeded):
    merchant = client_for(User.objects.get(user_id="merchant-001"))
    operator = client_for(User.objects.get(username="admin"))
    own = Settlement.objects.get(merchant__user_id="merchant-001")

    assert [row["id"] for row in merchant.get("/api/v1/settlements/").json()["results"]] == [own.pk]
    assert merchant.get(f"/api/v1/settlements/{own.pk}/lines/").json()["count"] == 5
    csv_file = merchant.get(f"/api/v1/settlements/{own.pk}/lines/", {"format": "csv"})
    assert (csv_file.status_code, csv_file["Content-Type"]) == (200, "text/csv; charset=utf-8")
    assert len(b"".join(csv_file.streaming_content).decode().splitlines()) == 1 + 5  # the header, a row per line
    statuses = {row["status"] for row in operator.get("/api/v1/payouts/").json()["results"]}
    assert statuses == {"PAID", "FAILED"}
    assert client_for(User.objects.get(user_id="usr-001")).get("/api/v1/payouts/").status_code == 403
