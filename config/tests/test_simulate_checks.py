"""The money simulation's settlement checks (scripts/simulate.py, ``settlement_breaches``)
fire on data broken on purpose: a plan in two capture lines, a plan a finished run should
have settled, a payout posted twice or posted though it failed, and a bank that paid what
the books do not say."""

from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.tests.factories import MerchantFactory
from bnpl.models import Plan
from bnpl.schedule import business_today
from bnpl.tests.factories import plan_originated
from ledger.accounts import MERCHANT_PAYABLE, PAYOUT_CLEARING
from ledger.models import JournalEntry
from ledger.services import Leg, ledger_post
from scripts.simulate import settlement_breaches
from settlements.models import Payout, SettlementLine, SettlementRun
from settlements.tests.factories import settled

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]

D = Decimal


def yesterday_noon() -> datetime:
    day = business_today() - timedelta(days=1)
    return datetime.combine(day, time(12), tzinfo=ZoneInfo(settings.BNPL_TIME_ZONE))


def paid_out(django_capture_on_commit_callbacks, total: str = "100.00"):
    """A plan activated yesterday, settled for yesterday and paid out (the fake bank)."""
    merchant = MerchantFactory(payout=True)
    plan = plan_originated(total=total, merchant=merchant)
    Plan.objects.filter(pk=plan.pk).update(activated_at=yesterday_noon())
    with django_capture_on_commit_callbacks(execute=True):
        settled(day=business_today() - timedelta(days=1))
    payout = Payout.objects.get(merchant=merchant)
    assert payout.status == Payout.Status.PAID
    return merchant, plan, payout


def bank_of(*payouts: Payout) -> dict:
    """The bank's records that agree with the books for ``payouts``."""
    return {f"payout_{payout.pk}": payout.amount for payout in payouts}


def test_the_checks_hold_on_a_settled_and_paid_day(django_capture_on_commit_callbacks):
    _, _, payout = paid_out(django_capture_on_commit_callbacks)

    assert settlement_breaches(bank_of(payout)) == []


@pytest.mark.breaks_ledger
def test_a_plan_in_two_capture_lines_is_seen(django_capture_on_commit_callbacks):
    _, plan, payout = paid_out(django_capture_on_commit_callbacks)
    # The unique index is what keeps a plan in one line: without it (rolled back with the
    # test's transaction), a second line for the plan.
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX settled_capture_once")
    line = SettlementLine.objects.get(plan=plan)
    line.pk = None
    line.save()

    assert f"plan {plan.pk} is in 2 capture lines" in settlement_breaches(bank_of(payout))


def test_a_plan_activated_before_a_settled_days_end_and_in_no_line_is_seen(django_capture_on_commit_callbacks):
    merchant, _, payout = paid_out(django_capture_on_commit_callbacks)
    late = plan_originated(total="50.00", merchant=merchant)
    # Its activation moved back into the day settled: the run should have taken it.
    Plan.objects.filter(pk=late.pk).update(activated_at=yesterday_noon())

    found = settlement_breaches(bank_of(payout))

    assert len(found) == 1, found
    assert found[0].startswith(f"plan {late.pk} activated at ")
    assert found[0].endswith("is in no capture line")


def test_a_run_that_never_finished_is_seen():
    run = SettlementRun.objects.create(business_date=business_today(), started_at=timezone.now(), chunks_total=2)

    assert settlement_breaches({}) == [f"settlement run {run.pk} of {run.business_date} never finished (0/2)"]


@pytest.mark.breaks_ledger
def test_a_payout_posted_twice_is_seen(django_capture_on_commit_callbacks):
    merchant, _, payout = paid_out(django_capture_on_commit_callbacks)
    ledger_post(
        kind=JournalEntry.Kind.PAYOUT,
        memo=f"Payout {payout.pk} of settlement {payout.settlement_id}",
        legs=[
            Leg(MERCHANT_PAYABLE, payout.amount, "USD", party_id=merchant.pk),
            Leg(PAYOUT_CLEARING, -payout.amount, "USD", party_id=merchant.pk),
        ],
    )

    assert settlement_breaches(bank_of(payout)) == [
        f"payout {payout.pk} is PAID with (2, 1, 0) (PAYOUT entries, paid events, failed events), wanted (1, 1, 0)",
        f"merchant {merchant.pk}: payouts PAID 95.70 USD, its payout clearing postings -191.40",
    ]


@pytest.mark.breaks_ledger
def test_a_failed_payout_with_an_entry_and_a_bank_that_paid_it_are_seen(django_capture_on_commit_callbacks):
    merchant, _, payout = paid_out(django_capture_on_commit_callbacks)
    Payout.objects.filter(pk=payout.pk).update(status=Payout.Status.FAILED)

    assert settlement_breaches(bank_of(payout)) == [
        f"payout {payout.pk} is FAILED with (1, 1, 0) (PAYOUT entries, paid events, failed events), wanted (0, 0, 1)",
        f"merchant {merchant.pk}: payouts PAID 0.00 USD, its payout clearing postings -95.70",
        f"the bank paid {{'payout_{payout.pk}': Decimal('95.70')}}, the payouts booked as PAID are {{}}",
    ]


def test_a_payout_the_bank_never_paid_or_paid_another_amount_is_seen(django_capture_on_commit_callbacks):
    _, _, payout = paid_out(django_capture_on_commit_callbacks)
    booked = {f"payout_{payout.pk}": D("95.70")}

    for bank in ({}, {f"payout_{payout.pk}": D("95.69")}):
        assert settlement_breaches(bank) == [f"the bank paid {bank}, the payouts booked as PAID are {booked}"]
