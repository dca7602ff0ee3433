"""Settlements and payouts in the admin: read-only, masked, actions through the services."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from accounts.services import merchant_payout_account_set
from accounts.tests.factories import MerchantFactory
from bnpl.schedule import business_today
from bnpl.tests.factories import plan_originated
from settlements.models import Payout, Settlement, SettlementLine, SettlementRun
from settlements.tests.factories import settled
from settlements.tests.gateways import TimingOutPayoutGateway

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]

D = Decimal


@pytest.fixture
def day(django_capture_on_commit_callbacks):
    """A settled day: merchant-paid's 100.00 paid out, merchant-closed's 200.00 payout failed."""
    paid = MerchantFactory(payout=True, user_id="merchant-paid")
    closed = MerchantFactory(payout=True, user_id="merchant-closed")
    with transaction.atomic():
        merchant_payout_account_set(merchant=closed, account="123450002", name="Shop", changed_by=closed)
    plan_originated(total="100.00", merchant=paid)
    plan_originated(total="200.00", merchant=closed)
    with django_capture_on_commit_callbacks(execute=True):
        settled()
    return paid, closed


@pytest.mark.parametrize(
    "page",
    [
        "/admin/settlements/settlementrun/",
        "/admin/settlements/settlement/?currency__exact=USD&payout__status__exact=PAID",
        "/admin/settlements/settlement/?q=merchant-paid",
        "/admin/settlements/settlementline/?type__exact=capture",
        "/admin/settlements/payout/?status__exact=FAILED",
        "/admin/settlements/payout/?q=merchant-closed",
    ],
)
def test_admin_lists_render(operator_client, day, page):
    assert operator_client.get(page).status_code == 200


@pytest.mark.parametrize("model", ["settlement", "payout", "settlementline", "settlementrun"])
def test_a_business_date_or_a_merchant_finds_the_rows_and_a_word_is_no_error(operator_client, day, model):
    today = business_today().isoformat()

    by_day = operator_client.get(f"/admin/settlements/{model}/", {"q": today})
    by_word = operator_client.get(f"/admin/settlements/{model}/", {"q": "merchant-paid"})
    elsewhere = operator_client.get(f"/admin/settlements/{model}/", {"q": "1999-01-01"})

    assert by_day.status_code == by_word.status_code == elsewhere.status_code == 200
    assert "0 results" not in by_day.content.decode()
    assert "0 results" in elsewhere.content.decode()


def test_search_by_merchant_finds_its_settlement_only(operator_client, day):
    page = operator_client.get("/admin/settlements/settlement/", {"q": "merchant-closed"}).content.decode()

    assert "1 result" in page
    assert "200.00" in page
    assert "100.00" not in page


def test_a_settlement_shows_its_lines_read_only_and_money_rows_are_never_added_changed_or_deleted(operator_client, day):
    settlement = Settlement.objects.get(merchant=day[0])
    page = operator_client.get(f"/admin/settlements/settlement/{settlement.pk}/change/").content.decode()

    assert page.count('<td class="field-type">') == 1
    assert "95.70" in page
    assert 'name="_save"' not in page
    for model, row in (
        ("settlement", settlement),
        ("payout", settlement.payout),
        ("settlementline", SettlementLine.objects.first()),
        ("settlementrun", SettlementRun.objects.first()),
    ):
        assert operator_client.get(f"/admin/settlements/{model}/add/").status_code == 403
        assert operator_client.post(f"/admin/settlements/{model}/{row.pk}/delete/", {"post": "yes"}).status_code == 403
        assert operator_client.post(f"/admin/settlements/{model}/{row.pk}/change/", {"net": "1.00"}).status_code == 403
    settlement.refresh_from_db()
    assert settlement.net == D("95.70")


def test_a_payout_shows_the_account_masked_only(operator_client, day):
    paid, closed = day
    page = operator_client.get("/admin/settlements/payout/").content.decode()
    failed = Payout.objects.get(merchant=closed)
    form = operator_client.get(f"/admin/settlements/payout/{failed.pk}/change/").content.decode()

    assert "DE89**************3000" in page
    assert "*****0002" in form
    assert paid.payout_account not in page + form
    assert closed.payout_account not in page + form


def test_send_again_sends_a_pending_payout_through_the_service_and_skips_the_others(
    operator_client, settings, django_capture_on_commit_callbacks
):
    merchant = MerchantFactory(payout=True)
    plan_originated(total="100.00", merchant=merchant)
    settings.BNPL_PAYOUT_GATEWAY = f"{TimingOutPayoutGateway.__module__}.{TimingOutPayoutGateway.__qualname__}"
    with django_capture_on_commit_callbacks(execute=True):
        settled()
    pending = Payout.objects.get()
    assert (pending.status, pending.attempts) == ("PENDING", 1)

    timed_out = operator_client.post(
        "/admin/settlements/payout/", {"action": "send_again", "_selected_action": [pending.pk]}, follow=True
    )
    assert f"Payout #{pending.pk}: no answer from the bank" in timed_out.content.decode()
    settings.BNPL_PAYOUT_GATEWAY = "settlements.gateways.FakePayoutGateway"
    sent = operator_client.post(
        "/admin/settlements/payout/", {"action": "send_again", "_selected_action": [pending.pk]}, follow=True
    )
    again = operator_client.post(
        "/admin/settlements/payout/", {"action": "send_again", "_selected_action": [pending.pk]}, follow=True
    )

    pending.refresh_from_db()
    assert (pending.status, pending.attempts) == ("PAID", 3)
    assert f"Payout #{pending.pk}: paid" in sent.content.decode()
    assert "Skipped 1 not pending" in again.content.decode()


def test_settle_yesterday_now_runs_the_service_once_per_day(operator_client, django_capture_on_commit_callbacks):
    merchant = MerchantFactory(payout=True)
    plan_originated(total="100.00", merchant=merchant)  # posted today: yesterday's settlement leaves it
    yesterday = business_today() - timedelta(days=1)

    page = operator_client.get("/admin/settlements/settlementrun/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        done = operator_client.post("/admin/settlements/settlementrun/settle-now/", follow=True)

    assert "Settle yesterday now" in page
    assert f"Settlement of {yesterday} done: 0 settlements, 0 payouts." in done.content.decode()
    assert SettlementRun.objects.get().business_date == yesterday
    assert not Settlement.objects.exists()
    assert operator_client.get("/admin/settlements/settlementrun/settle-now/").status_code == 405
