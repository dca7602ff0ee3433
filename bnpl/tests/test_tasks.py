"""Beat jobs: the schedule in the database, and the sweep through a real worker on Redis."""

from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django_celery_beat.models import PeriodicTask

from accounts.models import User
from bnpl.models import Installment, SweepRun
from bnpl.schedule import business_today
from bnpl.tasks import overdue_sweep_task
from config.celery import app
from conftest import wait_until


@pytest.mark.django_db
def test_beat_schedule_is_in_the_database():
    tasks = {t.name: t for t in PeriodicTask.objects.select_related("interval", "crontab")}

    sweep = tasks["overdue-sweep"]
    assert sweep.task == "bnpl.tasks.overdue_sweep_task"
    assert (sweep.interval.every, sweep.interval.period) == (5, "minutes")
    assert sweep.enabled
    assert tasks["reminders-daily"].crontab.hour == "9"
    assert tasks["ledger-check-daily"].task == "ledger.tasks.ledger_check_task"
    assert tasks["idempotency-keys-prune"].interval.period == "hours"
    assert tasks["idempotency-keys-prune"].task == "core.tasks.idempotency_keys_prune_task"
    assert tasks["autopay-daily"].task == "payments.tasks.autopay_run_task"
    assert (tasks["autopay-daily"].crontab.hour, tasks["autopay-daily"].crontab.timezone.key) == ("6", "Asia/Tashkent")
    assert tasks["payments-reconcile"].interval.every == 10
    assert (tasks["events-relay"].task, tasks["events-relay"].interval.every) == ("events.tasks.events_relay_task", 1)
    assert tasks["notifications-send"].task == "events.tasks.notifications_send_task"


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sweep_chunks_run_side_by_side_on_real_workers_and_the_last_closes_the_run(make_plan, settings):
    assert not app.conf.task_always_eager, "needs the Redis broker, not eager mode"
    settings.BNPL_SWEEP_CHUNK_PLANS = 3
    plans = [make_plan(purchase_date=business_today() - timedelta(days=45)) for _ in range(10)]
    app.control.purge()

    # Four worker threads take the chunk tasks of one group at once.
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=10):
        started = overdue_sweep_task.apply_async(ignore_result=False).get(timeout=30)
        assert started["chunks"] == 4
        assert wait_until(lambda: SweepRun.objects.get(pk=started["sweep_run_id"]).finished_at is not None)

    run = SweepRun.objects.get(pk=started["sweep_run_id"])
    assert (run.installments_marked_overdue, run.customers_marked_debt) == (10, 10)
    assert not run.chunks.filter(done_at__isnull=True).exists()
    assert Installment.objects.filter(status=Installment.Status.OVERDUE).count() == 10
    assert {User.objects.get(pk=p.customer_id).status for p in plans} == {User.Status.DEBT_USER}
