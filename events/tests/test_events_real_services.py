"""Event delivery through real Celery workers on the Redis broker and PostgreSQL: retries
on schedule, and no event lost when a worker dies or the broker is away."""

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection
from django.utils import timezone

from accounts.tests.factories import MerchantFactory
from config.celery import app
from config.tests.faults import inject
from conftest import broker_unreachable, wait_until
from events.models import Event
from events.tasks import events_relay_task

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def merchant(settings, receiver):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_URLS = True
    return MerchantFactory(webhook_secret="whsec_real_events", webhook_url=receiver.url)


def delivered(event_id: int) -> bool:
    return Event.objects.get(pk=event_id).delivery_status == Event.Delivery.DELIVERED


def test_a_worker_retries_two_500s_with_backoff_and_the_third_delivery_succeeds(
    make_plan, merchant, receiver, settings
):
    assert not app.conf.task_always_eager
    settings.BNPL_WEBHOOK_BACKOFF_BASE_SECONDS = 0.3
    receiver.statuses = [500, 500]
    app.control.purge()

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        make_plan(merchant=merchant)  # commits; the delivery task is published after commit
        event = Event.objects.get()
        assert wait_until(lambda: delivered(event.pk)), list(event.deliveries.values())

    attempts = list(event.deliveries.order_by("number").values_list("response_status", "started_at"))
    assert [status for status, _ in attempts] == [500, 500, 200]
    gaps = [(b - a).total_seconds() for (_, a), (_, b) in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.3, f"backoff: {gaps}"
    assert gaps[1] >= 0.6, f"backoff doubles: {gaps}"
    assert receiver.verified("whsec_real_events") == [True, True, True]


@pytest.mark.faults
def test_an_event_survives_a_worker_killed_mid_delivery_and_is_delivered_after_restart(make_plan, merchant, receiver):
    app.control.purge()
    receiver.hold.clear()  # the first delivery hangs at the merchant: the worker is busy with it
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "BNPL_WEBHOOK_ALLOW_PRIVATE_URLS": "true",
    }
    worker = subprocess.Popen(  # our own worker with fixed arguments  # nosec B603
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        make_plan(merchant=merchant)
        event = Event.objects.get()
        assert receiver.arrived.wait(60), "the worker never started the delivery"
        inject("celery worker killed (SIGKILL, whole node)")
        worker.send_signal(signal.SIGKILL)  # dies between commit and a recorded delivery
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()

    event.refresh_from_db()
    assert (event.delivery_status, event.attempts, event.deliveries.count()) == (Event.Delivery.PENDING, 1, 0)

    receiver.hold.set()
    receiver.received.clear()
    # Time passes: the dead worker's lease on the event runs out.
    Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert (
            events_relay_task.apply_async((0,), ignore_result=False).get(timeout=30) == 1
        )  # beat's relay, every minute
        assert wait_until(lambda: delivered(event.pk))

    event.refresh_from_db()
    assert event.attempts == 2
    assert list(event.deliveries.values_list("number", "response_status")) == [(2, 200)]
    assert len(receiver.received) == 1


@pytest.mark.faults
def test_an_event_committed_while_the_broker_is_down_is_delivered_by_the_relay(make_plan, merchant, receiver):
    app.control.purge()
    with broker_unreachable():  # the publish after commit fails
        plan = make_plan(merchant=merchant)  # the request itself is not hurt
    event = Event.objects.get()
    assert (event.delivery_status, event.attempts, event.data["plan_id"]) == (Event.Delivery.PENDING, 0, plan.pk)

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert events_relay_task.apply_async((0,), ignore_result=False).get(timeout=30) == 1
        assert wait_until(lambda: delivered(event.pk))
    assert len(receiver.received) == 1


def test_the_relay_does_not_queue_a_backlog_again_every_minute(make_plan, merchant):
    from events.services import events_relay

    app.control.purge()
    for _ in range(3):
        make_plan(merchant=merchant)
    client = app.connection_for_write().channel().client  # the broker's Redis
    client.delete(app.conf.task_default_queue)

    assert events_relay(grace_seconds=0) == 3  # no worker runs: they wait in the queue
    assert events_relay(grace_seconds=0) == 0, "queued already: not again while the workers catch up"
    assert client.llen(app.conf.task_default_queue) == 3
    app.control.purge()
