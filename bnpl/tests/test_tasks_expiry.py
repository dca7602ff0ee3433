"""The expiry job: in the beat schedule after migrate, and run as a Celery task, eagerly and
by a real worker on Redis."""

from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django_celery_beat.models import PeriodicTask

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Plan
from bnpl.services.checkout import Offer, plan_confirm, plan_offer
from bnpl.tasks import plans_expire_task
from config.celery import app
from events.models import Event


def _open_plans(settings, count: int) -> list[Plan]:
    """One authorization and ``count`` offers, every one already past its time."""
    customer, merchant = UserFactory(), MerchantFactory()

    def offer(mode):
        terms = Offer(total_amount=Decimal("100.00"), installment_count=2, capture_mode=mode)
        return plan_offer(customer=customer, merchant=merchant, offer=terms)[0]

    settings.BNPL_AUTHORIZATION_DAYS = 0  # lapses the moment it is confirmed
    authorized = plan_confirm(plan_id=offer(Plan.CaptureMode.MANUAL).pk, customer=customer)
    settings.BNPL_CHECKOUT_TTL_MINUTES = 0  # lapse the moment they are made
    return [authorized, *(offer(Plan.CaptureMode.AUTOMATIC) for _ in range(count))]


@pytest.mark.django_db
def test_the_expiry_job_is_in_the_beat_schedule(settings):
    job = PeriodicTask.objects.select_related("interval").get(name="plans-expire")

    assert job.task == "bnpl.tasks.plans_expire_task" == plans_expire_task.name
    assert job.task in app.tasks
    assert (job.interval.every, job.interval.period) == (settings.BNPL_PLAN_EXPIRY_MINUTES, "minutes")
    assert job.enabled


@pytest.mark.django_db
def test_the_expiry_task_expires_what_is_past_its_time_eagerly(settings, eager_tasks):
    plans = _open_plans(settings, 3)
    assert {p.status for p in plans} == {Plan.Status.PENDING, Plan.Status.AUTHORIZED}

    assert plans_expire_task.delay().get() == {"expired": 4}
    assert plans_expire_task.delay().get() == {"expired": 0}  # harmless run again

    assert set(Plan.objects.values_list("status", flat=True)) == {Plan.Status.EXPIRED}
    assert Event.objects.filter(type=Event.Type.PLAN_EXPIRED).count() == 4


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_expiry_task_runs_on_a_real_worker(settings):
    assert not app.conf.task_always_eager, "needs the Redis broker, not eager mode"
    plans = _open_plans(settings, 2)
    app.control.purge()

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10):
        assert plans_expire_task.apply_async(ignore_result=False).get(timeout=30) == {"expired": 3}

    assert set(Plan.objects.filter(pk__in=[p.pk for p in plans]).values_list("status", flat=True)) == {
        Plan.Status.EXPIRED
    }
