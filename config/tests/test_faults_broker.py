"""Publishing to a broker that is down or hung, in the web process: bounded, and not retried
by every request (the service processes in test_faults_redis.py show the same end to end)."""

import json
import socket
import time

import pytest

from config.celery import app
from config.tests.faults import inject
from conftest import broker_pools_drop
from core import tasks as publishing
from core.tasks import enqueue
from events.tasks import events_relay_task

pytestmark = pytest.mark.faults


@pytest.fixture
def publishing_for_real(monkeypatch):
    """Tasks are published (not run in-process), and no broker is taken as down yet; the
    publishing settings a test changes are put back."""
    monkeypatch.setattr(publishing, "_broker_down_until", {}, raising=False)
    saved = (app.conf.task_always_eager, app.conf.broker_write_url, dict(app.conf.broker_transport_options))
    app.conf.task_always_eager = False
    broker_pools_drop()
    yield
    app.conf.task_always_eager, app.conf.broker_write_url, app.conf.broker_transport_options = saved
    broker_pools_drop()


def test_a_hung_broker_costs_one_publish_its_timeouts_then_is_left_alone_for_a_while(
    publishing_for_real,
):
    with socket.create_server(("127.0.0.1", 0)) as hung:  # accepts connections, never answers
        inject("broker hangs (connections accepted, never answered)")
        app.conf.broker_write_url = f"redis://127.0.0.1:{hung.getsockname()[1]}/0"
        app.conf.broker_transport_options = {**app.conf.broker_transport_options, "socket_timeout": 0.5}

        started = time.monotonic()
        assert enqueue(events_relay_task, 0) is False
        first = time.monotonic() - started
        started = time.monotonic()
        assert enqueue(events_relay_task, 0) is False
        second = time.monotonic() - started

    assert 0.5 <= first < 5, "bounded by the transport's socket timeout (one quick retry)"
    assert second < 0.1, "not tried again at once: the caller falls back"


@pytest.mark.redis
def test_a_published_task_asks_for_no_result(publishing_for_real):
    """Nobody reads the result of a task the web publishes. Asking for one subscribes the
    publisher to it in the Redis result store, which with Redis down held the request for
    tens of seconds and then broke the process's result consumer for good."""
    with app.connection_for_write() as connection:
        queue = connection.default_channel.client  # the broker's Redis (this run's database)
        queue.delete(app.conf.task_default_queue)
        try:
            assert enqueue(events_relay_task, 0) is True
            [message] = queue.lrange(app.conf.task_default_queue, 0, -1)
            assert json.loads(message)["headers"]["ignore_result"] is True
        finally:
            queue.delete(app.conf.task_default_queue)
