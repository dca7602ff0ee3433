"""Settlements and payouts under concurrency, on PostgreSQL with real threads (each its own
connection), released together by a barrier: two runs of one day, yesterday's and today's
run, a run racing a refund approval and a plan's capture or confirmation, a payout sent
twice, and the reconcile task racing a send. Whichever wins, each source is settled once,
each payout paid and posted once, and no caller sees an IntegrityError. The books are
checked after each test (the autouse ledger check, invariant 7 included)."""

import time as pytime
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Plan
from bnpl.schedule import business_today
from bnpl.services.checkout import Offer, plan_capture, plan_confirm, plan_offer
from bnpl.tests.factories import plan_originated
from bnpl.tests.test_concurrency import run_at_once
from events.models import Event
from ledger.models import JournalEntry
from ledger.selectors import payable_balances
from refunds.models import Refund
from refunds.services import refund_decide
from refunds.tests.factories import refund_requested
from settlements.models import Payout, Settlement, SettlementLine
from settlements.services import settle
from settlements.services.payouts import payout_send, payouts_reconcile
from settlements.services.settle import settle_merchants
from settlements.tests.gateways import SlowPayoutGateway

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_tasks")]

D = Decimal
ROUNDS = 5


@pytest.fixture(autouse=True)
def slow_bank(settings):
    """The fake bank, slow enough for two sends of one payout to overlap at it."""
    settings.BNPL_PAYOUT_GATEWAY = "settlements.tests.gateways.SlowPayoutGateway"
    SlowPayoutGateway.calls.clear()
    yield SlowPayoutGateway
    SlowPayoutGateway.calls.clear()


def no_errors(results: list) -> None:
    """No caller saw an exception (an IntegrityError above all)."""
    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors


def yesterday_noon() -> datetime:
    day = business_today() - timedelta(days=1)
    return datetime.combine(day, time(12), tzinfo=ZoneInfo(django_settings.BNPL_TIME_ZONE))


def capture_lines(plan: Plan) -> list[int]:
    """The settlements whose capture lines hold ``plan``."""
    return list(SettlementLine.objects.filter(type="capture", plan=plan).values_list("settlement_id", flat=True))


def paid_once(payout: Payout) -> None:
    """PAID, with one PAYOUT entry and one ``payout.paid`` event; every call to the bank
    with the payout's own key (the bank pays a key once)."""
    payout.refresh_from_db()
    assert payout.status == Payout.Status.PAID
    memo = f"Payout {payout.pk} of settlement {payout.settlement_id}"
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYOUT, memo=memo).count() == 1
    assert Event.objects.filter(type=Event.Type.PAYOUT_PAID, data__payout_id=payout.pk).count() == 1
    assert not Event.objects.filter(type=Event.Type.PAYOUT_FAILED, data__payout_id=payout.pk).exists()
    assert set(SlowPayoutGateway.calls) <= {f"payout_{p}" for p in Payout.objects.values_list("pk", flat=True)}


@pytest.fixture
def tomorrow(monkeypatch):
    """``tomorrow()``: run the settlement of the next business day (its clock moved on a day)."""

    def run():
        day = business_today() + timedelta(days=1)
        monkeypatch.setattr(settle, "business_today", lambda: day)
        return settle_merchants(day=day)

    return run


@pytest.mark.parametrize("chunk", [None, 1])
def test_two_runs_of_one_day_at_once_make_one_settlement_and_one_payout_per_merchant(chunk):
    today = business_today()
    for _ in range(ROUNDS):
        merchants = [MerchantFactory(payout=True) for _ in range(3)]
        plans = [plan_originated(total="100.00", merchant=merchant) for merchant in merchants for _ in range(2)]

        runs = run_at_once(2, lambda i: settle_merchants(day=today, chunk_merchants=chunk))

        no_errors(runs)
        assert sum(run.settlements_created for run in runs) == 3
        assert sum(run.payouts_created for run in runs) == 3
        for merchant in merchants:
            settlement = Settlement.objects.get(merchant=merchant, business_date=today)
            assert (settlement.line_count, settlement.net) == (2, D("191.40"))
            paid_once(Payout.objects.get(settlement=settlement))
            assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): D("0.00")}
        assert all(len(capture_lines(plan)) == 1 for plan in plans)


def test_yesterdays_and_todays_runs_at_once_settle_each_plan_once():
    today = business_today()
    yesterday = today - timedelta(days=1)
    days = set()
    for _ in range(ROUNDS * 2):
        merchant = MerchantFactory(payout=True)
        earlier = plan_originated(total="100.00", merchant=merchant)
        Plan.objects.filter(pk=earlier.pk).update(activated_at=yesterday_noon())
        later = plan_originated(total="200.00", merchant=merchant)

        no_errors(run_at_once(2, lambda i: settle_merchants(day=(yesterday, today)[i])))

        # Today's plan only today (yesterday's cutoff is before it); yesterday's in whichever
        # run locked the merchant first.
        [today_settlement] = capture_lines(later)
        assert Settlement.objects.get(pk=today_settlement).business_date == today
        [earlier_settlement] = capture_lines(earlier)
        days.add(Settlement.objects.get(pk=earlier_settlement).business_date)
        payouts = Payout.objects.filter(merchant=merchant)
        for payout in payouts:
            paid_once(payout)
        assert sum(payout.amount for payout in payouts) == D("95.70") + D("191.70")
        assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): D("0.00")}
    assert days <= {yesterday, today}


def test_a_run_racing_a_refund_approval_settles_the_refund_in_exactly_one_settlement(tomorrow, operator):
    today = business_today()
    outcomes = set()
    for n in range(ROUNDS * 2):
        merchant = MerchantFactory(payout=True)
        plan = plan_originated(total="100.00", merchant=merchant)
        Plan.objects.filter(pk=plan.pk).update(activated_at=yesterday_noon())
        settle_merchants(day=today - timedelta(days=1))
        refund = refund_requested(plan, "30.00", transaction_id=f"rf-settle-{n}")

        # The run starts 0 to 45 ms after the approval: released together, the run reads the
        # refunds first every time; so both orders are seen.
        results = run_at_once(
            2,
            lambda i, refund=refund, n=n: (
                (pytime.sleep(n % 4 * 0.015), settle_merchants(day=today))[1]
                if i == 0
                else refund_decide(refund_id=refund.pk, status=Refund.Status.APPROVED, actor=operator)
            ),
        )

        no_errors(results)
        lines = list(SettlementLine.objects.filter(type="refund", refund=refund))
        if lines:
            outcomes.add("now")
        else:
            # Approved after the run read the refunds: the next day's run takes it.
            outcomes.add("next")
            tomorrow()
            lines = list(SettlementLine.objects.filter(type="refund", refund=refund))
        assert [(line.gross, line.net) for line in lines] == [(D("-30.00"), D("-30.00"))]
        # The refund after the payout: a negative net, carried and never paid.
        settlement = lines[0].settlement
        assert settlement.net == D("-30.00")
        assert not Payout.objects.filter(settlement=settlement).exists()
        assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): D("-30.00")}
    assert outcomes


@pytest.mark.parametrize("activate", ["capture", "confirm"])
def test_a_run_racing_a_plans_capture_or_confirmation_settles_the_plan_once(tomorrow, activate):
    today = business_today()
    mode = Plan.CaptureMode.MANUAL if activate == "capture" else Plan.CaptureMode.AUTOMATIC
    for n in range(ROUNDS * 2):
        merchant, customer = MerchantFactory(payout=True), UserFactory()
        offer = Offer(total_amount=D("100.00"), installment_count=4, merchant_reference=f"o-{n}", capture_mode=mode)
        plan, _ = plan_offer(customer=customer, merchant=merchant, offer=offer)
        if activate == "capture":
            plan_confirm(plan_id=plan.pk, customer=customer)
        # Something else of the merchant's to settle today, so its run has a settlement to make.
        plan_originated(total="50.00", merchant=merchant)

        results = run_at_once(
            2,
            lambda i, plan=plan, customer=customer: (
                settle_merchants(day=today)
                if i == 0
                else plan_capture(plan_id=plan.pk)
                if activate == "capture"
                else plan_confirm(plan_id=plan.pk, customer=customer)
            ),
        )

        no_errors(results)
        plan.refresh_from_db()
        assert plan.status == Plan.Status.ACTIVE
        if not capture_lines(plan):
            # Activated after the run read the plans: the next day's run takes it.
            tomorrow()
        assert len(capture_lines(plan)) == 1
        assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): D("0.00")}


def pending_payout(settings) -> Payout:
    """A merchant's settlement whose payout the bank timed out on: PENDING. The bank then
    answers again (slowly)."""
    settings.BNPL_PAYOUT_GATEWAY = "settlements.tests.gateways.TimingOutPayoutGateway"
    merchant = MerchantFactory(payout=True)
    plan_originated(total="100.00", merchant=merchant)
    settle_merchants(day=business_today())
    settings.BNPL_PAYOUT_GATEWAY = "settlements.tests.gateways.SlowPayoutGateway"
    payout = Payout.objects.get(merchant=merchant)
    assert payout.status == Payout.Status.PENDING
    return payout


def test_two_sends_of_one_payout_at_once_pay_and_post_it_once(settings):
    for _ in range(ROUNDS):
        payout = pending_payout(settings)
        SlowPayoutGateway.calls.clear()

        results = run_at_once(2, lambda i, payout=payout: payout_send(payout_id=payout.pk))

        no_errors(results)
        assert [result.status for result in results] == [Payout.Status.PAID] * 2
        # Each send may ask the bank (both read it PENDING); only with the payout's own key.
        assert set(SlowPayoutGateway.calls) == {f"payout_{payout.pk}"}
        paid_once(payout)


def test_the_reconcile_task_racing_a_send_pays_and_posts_the_payout_once(settings):
    for _ in range(ROUNDS):
        payout = pending_payout(settings)

        results = run_at_once(
            2,
            lambda i, payout=payout: (
                payout_send(payout_id=payout.pk) if i == 0 else payouts_reconcile(older_than_minutes=0)
            ),
        )

        no_errors(results)
        assert results[0].status == Payout.Status.PAID
        paid_once(payout)
