"""A Celery worker dies in the middle of a task (``celery -A config worker`` processes on a
Redis of the test's own, paused mid-transaction on a row the test holds): the task comes
back (acks_late) and its work is done once."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
import redis

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Installment
from bnpl.schedule import business_today
from config.tests.faults import RowLock, publish, service_env, wait_for
from ledger.models import JournalEntry
from payments.models import Payment
from payments.services import payments_reconcile
from payments.tasks import autopay_chunk_task
from payments.tests.gateways import CardNetwork
from refunds.models import Refund, RefundEvent
from refunds.services import refund_request
from refunds.tasks import refund_status_apply_task

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_a_worker_killed_mid_refund_approval_has_the_task_redelivered_and_the_refund_applied_once(
    private_redis, launch, make_plan
):
    merchant = MerchantFactory()
    plan = make_plan(merchant=merchant, total="400.00", count=4)
    refund, _ = refund_request(
        plan_id=plan.pk, transaction_id="rf-kill", amount=Decimal("150.00"), reason="", requester=merchant
    )
    # A short visibility timeout: the lost worker's task is handed out again after 3 s (1 h by default).
    env = service_env(redis_url=private_redis.url(0), CELERY_BROKER_VISIBILITY_TIMEOUT="3")
    worker = launch.worker(env)

    with RowLock("refunds_refund", refund.pk) as lock:
        publish(private_redis.url(0), refund_status_apply_task, refund.pk, Refund.Status.APPROVED)
        # The worker has lowered the installments and posted the entry (not committed) and
        # now waits on the refund's row: the middle of the task.
        orphan = lock.wait_blocked()
        assert lock.has_written(orphan)
        worker.kill()
        lock.release()
        # Its connection gone, the server rolls the half-done transaction back.
        wait_for(lambda: lock.backend_gone(orphan), 30, "the dead worker's transaction to end")

    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    assert list(plan.installments.order_by("sequence").values_list("amount_due", flat=True)) == [Decimal("100.00")] * 4
    assert not JournalEntry.objects.filter(kind=JournalEntry.Kind.REFUND_APPLIED).exists()

    # Unacknowledged, the task waits in the broker's unacked set; once it is older than the
    # visibility timeout, a worker starting up puts it back in the queue and takes it.
    broker = redis.Redis.from_url(private_redis.url(0))
    wait_for(lambda: broker.zcount("unacked_index", 0, time.time() - 3.5) == 1, 30, "the visibility timeout")
    launch.worker(env)
    wait_for(lambda: Refund.objects.get(pk=refund.pk).status == Refund.Status.APPROVED, 60, "the redelivered task")

    refund.refresh_from_db()
    assert refund.applied_amount == Decimal("150.00")
    assert list(plan.installments.order_by("sequence").values_list("amount_due", "status")) == [
        (Decimal("100.00"), Installment.Status.UPCOMING),
        (Decimal("100.00"), Installment.Status.UPCOMING),
        (Decimal("50.00"), Installment.Status.UPCOMING),
        (Decimal("0.00"), Installment.Status.CANCELLED),
    ]
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.REFUND_APPLIED).count() == 1
    assert RefundEvent.objects.filter(refund=refund, requested_status="APPROVED", outcome="applied").count() == 1


def test_a_pool_process_killed_after_the_charge_has_the_task_redelivered_and_the_card_charged_once(
    private_redis, launch, make_plan, settings, monkeypatch
):
    today = business_today()
    customer = UserFactory()
    plan = make_plan(customer=customer, frequency="WEEKLY", purchase_date=today - timedelta(days=7), total="400.00")
    first = plan.installments.get(sequence=1)
    assert first.due_date == today

    with CardNetwork() as network:
        env = service_env(
            redis_url=private_redis.url(0),
            BNPL_PAYMENT_GATEWAY="payments.tests.gateways.NetworkGateway",
            BNPL_TEST_CARD_NETWORK_URL=network.url,
        )
        worker = launch.worker(env, pool="prefork", concurrency=1)

        network.script = ["held after capture"]
        task_id = publish(private_redis.url(0), autopay_chunk_task, customer.pk, customer.pk, today.isoformat())
        wait_for(network.holding.is_set, 60, "the card to be charged")
        with RowLock("bnpl_installment", first.pk) as lock:
            # The payment is reserved (committed) and the card charged; answered now, the
            # worker books it and waits on the installment's row.
            network.hold.set()
            orphan = lock.wait_blocked()
            payment = Payment.objects.get()
            assert (payment.status, list(network.captures)) == (Payment.Status.PENDING, [payment.gateway_key])
            worker.kill_child()
            lock.release()
            wait_for(lambda: lock.backend_gone(orphan), 30, "the dead process's transaction to end")

        # The worker hands the task back to the queue and its new pool process runs it again:
        # it finds the payment under today's key, in another's hands, and charges nothing.
        ran_again = f"autopay_chunk_task[{task_id}] succeeded"
        wait_for(lambda: worker.log_lines(ran_again), 60, "the task to run again")
        assert "'pending': 1" in worker.log_lines(ran_again)[0]
        assert Payment.objects.get().status == Payment.Status.PENDING

        # Reconciliation finishes it with the same key: the network does not charge again.
        settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.NetworkGateway"
        monkeypatch.setenv("BNPL_TEST_CARD_NETWORK_URL", network.url)
        assert payments_reconcile(older_than_minutes=0) == 1

    payment.refresh_from_db()
    first.refresh_from_db()
    assert (payment.status, first.status) == (Payment.Status.SUCCEEDED, Installment.Status.PAID)
    assert network.requests == [payment.gateway_key, payment.gateway_key]
    assert network.captures == {payment.gateway_key: Decimal("100.00")}
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYMENT).count() == 1
