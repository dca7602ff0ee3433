from datetime import timedelta

import pytest

from bnpl.schedule import business_today
from bnpl.services.sweep import overdue_sweep
from ledger.models import JournalEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def books(make_plan):
    plan = make_plan(purchase_date=business_today() - timedelta(days=45))
    overdue_sweep(late_fees=True)
    return plan


@pytest.mark.parametrize(
    "page",
    [
        "/admin/bnpl/plan/",
        "/admin/bnpl/plan/?status__exact=ACTIVE&q=usr",
        "/admin/bnpl/installment/?status__exact=OVERDUE",
        "/admin/bnpl/latefee/",
        "/admin/bnpl/reminder/",
        "/admin/bnpl/sweeprun/",
        "/admin/ledger/journalentry/?kind__exact=ORIGINATION",
        "/admin/ledger/posting/",
        "/admin/ledger/ledgeraccount/",
        "/admin/ledger/ledgercheckrun/",
        "/admin/django_celery_beat/periodictask/",
        "/admin/payments/payment/",
        "/admin/core/idempotencykey/",
    ],
)
def test_admin_lists_render(operator_client, books, page):
    assert operator_client.get(page).status_code == 200


def test_plan_page_shows_its_installments_read_only(operator_client, books):
    page = operator_client.get(f"/admin/bnpl/plan/{books.pk}/change/").content.decode()

    assert page.count('<td class="field-status">') == 4
    assert "Overdue" in page
    assert "Upcoming" in page
    assert 'name="_save"' not in page  # nothing to save: services own these rows


def test_ledger_rows_cannot_be_added_changed_or_deleted(operator_client, books):
    entry = JournalEntry.objects.first()

    assert operator_client.get("/admin/ledger/journalentry/add/").status_code == 403
    assert operator_client.post(f"/admin/ledger/journalentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert operator_client.post(f"/admin/ledger/journalentry/{entry.pk}/change/", {"memo": "x"}).status_code == 403
    assert operator_client.get("/admin/bnpl/plan/add/").status_code == 403


def test_operator_runs_the_sweep_now_from_the_admin(operator_client, make_plan):
    plan = make_plan(purchase_date=business_today() - timedelta(days=45))

    page = operator_client.get("/admin/bnpl/sweeprun/").content.decode()
    response = operator_client.post("/admin/bnpl/sweeprun/run-now/", follow=True)

    assert "Run the overdue sweep now" in page
    assert response.status_code == 200
    assert "1 installments overdue" in response.content.decode()
    assert plan.installments.get(sequence=1).status == "OVERDUE"


def test_operator_waives_fees_from_the_admin_with_a_reason(operator_client, books, operator):
    from bnpl.models import LateFee

    fee = LateFee.objects.first()
    asked = operator_client.post("/admin/bnpl/latefee/", {"action": "waive_fees", "_selected_action": [fee.pk]})
    assert "Why (recorded with your name)" in asked.content.decode()
    fee.refresh_from_db()
    assert fee.status == "DUE"

    done = operator_client.post(
        "/admin/bnpl/latefee/",
        {"action": "waive_fees", "_selected_action": [fee.pk], "reason": "Goodwill", "confirm": "Waive"},
        follow=True,
    )

    assert "waived" in done.content.decode()
    fee.refresh_from_db()
    assert (fee.status, fee.waived_by, fee.waived_reason) == ("WAIVED", operator, "Goodwill")


def test_a_fee_being_paid_is_not_waived_from_the_admin_and_the_operator_is_told(operator_client, books, settings):
    from bnpl.models import LateFee
    from payments.tests.factories import payment_pending

    fee = LateFee.objects.get()
    payment_pending(settings, books)  # everything payable, the fee included: its card is being asked

    done = operator_client.post(
        "/admin/bnpl/latefee/",
        {"action": "waive_fees", "_selected_action": [fee.pk], "reason": "Goodwill", "confirm": "Waive"},
        follow=True,
    )

    assert done.status_code == 200
    assert "A payment of this late fee is in progress" in done.content.decode()
    fee.refresh_from_db()
    assert (fee.status, fee.waived_at, fee.amount_reserved) == ("DUE", None, fee.amount)
    assert not JournalEntry.objects.filter(kind=JournalEntry.Kind.FEE_WAIVER).exists()
