"""Beat jobs: the schedule in the database, and the sweep through a real worker on Redis."""

from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django_celery_beat.models import PeriodicTask

from accounts.models import User
from bnpl.models import Installment
from bnpl.schedule import business_today
from bnpl.tasks import overdue_sweep_task
from config.celery import app


@pytest.mark.django_db
def test_beat_schedule_is_in_the_database():
    tasks = {t.name: t for t in PeriodicTask.objects.select_related("interval", "crontab")}

    sweep = tasks["overdue-sweep"]
    assert sweep.task == "bnpl.tasks.overdue_sweep_task"
    assert (sweep.interval.every, sweep.interval.period) == (5, "minutes")
    assert sweep.enabled
    assert tasks["reminders-daily"].crontab.hour == "9"
    assert tasks["ledger-check-daily"].task == "payments.tasks.ledger_check_task"
    assert tasks["idempotency-keys-prune"].interval.period == "hours"
    assert tasks["autopay-daily"].task == "payments.tasks.autopay_run_task"
    assert (tasks["autopay-daily"].crontab.hour, tasks["autopay-daily"].crontab.timezone.key) == ("6", "Asia/Tashkent")
    assert tasks["payments-reconcile"].interval.every == 10
    assert (tasks["events-relay"].task, tasks["events-relay"].interval.every) == ("events.tasks.events_relay_task", 1)
    assert tasks["notifications-send"].task == "events.tasks.notifications_send_task"


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sweep_runs_through_a_real_worker_on_the_redis_broker(make_plan, settings):
    assert not app.conf.task_always_eager, "needs the Redis broker, not eager mode"
    plan = make_plan(purchase_date=business_today() - timedelta(days=45))
    app.control.purge()

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        result = overdue_sweep_task.delay().get(timeout=30)

    assert result["marked_overdue"] == 1
    assert plan.installments.get(sequence=1).status == Installment.Status.OVERDUE
    assert User.objects.get(pk=plan.customer_id).status == User.Status.DEBT_USER
