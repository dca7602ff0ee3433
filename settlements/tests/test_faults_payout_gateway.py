"""The payout gateway (the merchants' bank) does not answer in time, under real Celery
workers on a Redis of the test's own: the settlement commits, the payout stays PENDING with
nothing posted, and the reconcile task, once the bank answers again, pays it once with the
payout's own key; run again, it changes nothing."""

import re
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from accounts.tests.factories import MerchantFactory
from bnpl.models import Plan
from bnpl.schedule import business_today
from bnpl.tests.factories import plan_originated
from config.tests.faults import inject, publish, service_env, wait_for
from events.models import Event
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.selectors import payable_balances
from settlements.models import Payout, Settlement
from settlements.tasks import payouts_reconcile_task, settle_merchants_task

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def succeeded(worker, task_id: str) -> str | None:
    """What the worker logged the task returned, once it has."""
    lines = worker.log_lines(f"[{task_id}] succeeded")
    found = re.search(r"succeeded in [0-9.]+s: (\w+)", lines[0]) if lines else None
    return found.group(1) if found else None


def test_a_payout_gateway_timeout_leaves_the_payout_pending_and_the_reconcile_task_pays_it_once(private_redis, launch):
    merchant = MerchantFactory(payout=True)
    plan = plan_originated(total="100.00", merchant=merchant)
    # Captured yesterday: the beat's run (yesterday's business day) settles it.
    yesterday = business_today() - timedelta(days=1)
    noon = datetime.combine(yesterday, time(12), tzinfo=ZoneInfo(settings.BNPL_TIME_ZONE))
    Plan.objects.filter(pk=plan.pk).update(activated_at=noon)
    broker = private_redis.url(0)
    env = service_env(redis_url=broker, BNPL_PAYOUT_RECONCILE_MINUTES="0")

    # 1. The bank never answers: the run fans its chunk out, the chunk commits the settlement
    # and queues the payout's send, and the send times out.
    worker = launch.worker(env | {"BNPL_PAYOUT_GATEWAY": "settlements.tests.gateways.TimingOutPayoutGateway"})
    publish(broker, settle_merchants_task)
    wait_for(lambda: worker.log_lines("TimeoutError: payout gateway timed out"), 60, "the payout's send to time out")
    inject("payout gateway timeout (no answer)")  # made in the worker's process; counted here

    settlement = Settlement.objects.get(merchant=merchant, business_date=yesterday)
    assert (settlement.net, settlement.line_count) == (Decimal("95.70"), 1)
    payout = Payout.objects.get(settlement=settlement)
    assert (payout.status, payout.amount, payout.attempts) == (Payout.Status.PENDING, Decimal("95.70"), 1)
    assert not JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYOUT).exists()
    assert not Event.objects.filter(type__in=(Event.Type.PAYOUT_PAID, Event.Type.PAYOUT_FAILED)).exists()
    assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): Decimal("95.70")}
    worker.stop()

    # 2. The bank answers again (the fake one): the reconcile task on a worker asks it with
    # the payout's own key, and the payout is paid and posted once.
    worker = launch.worker(env | {"BNPL_PAYOUT_GATEWAY": "settlements.gateways.FakePayoutGateway"})
    first = publish(broker, payouts_reconcile_task)
    wait_for(lambda: succeeded(worker, first), 60, "the reconcile task")
    assert succeeded(worker, first) == "1"
    payout.refresh_from_db()
    assert (payout.status, payout.attempts) == (Payout.Status.PAID, 2)
    assert payout.reference.startswith("fake_payout_")

    # 3. Again: nothing left PENDING, nothing changes.
    second = publish(broker, payouts_reconcile_task)
    wait_for(lambda: succeeded(worker, second), 60, "the second reconcile task")
    assert succeeded(worker, second) == "0"

    payout.refresh_from_db()
    assert (payout.status, payout.attempts) == (Payout.Status.PAID, 2)
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYOUT).count() == 1
    assert Event.objects.filter(type=Event.Type.PAYOUT_PAID, data__payout_id=payout.pk).count() == 1
    assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): Decimal("0.00")}
    assert ledger_check(record=False).ok
