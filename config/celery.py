"""The Celery application, configured from Django settings (``CELERY_*``)."""

import os
import time

from celery import Celery
from celery.signals import setup_logging
from django.core import checks

from config import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before any connection: redis:// brokers use kombu's Redis transport with the fixes a worker
# needs to live through a Redis that stalls or goes away (config/broker.py).
broker.register()

app = Celery("bnpl")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_django_logging(**kwargs) -> None:
    """Leave logging to settings.LOGGING (JSON lines, PII masked): with a receiver here,
    Celery neither replaces the handlers nor changes the root level (LOG_LEVEL rules)."""


READINESS_QUEUE = "bnpl.readiness"


def broker_publish_check(*, timeout: float = 1.0) -> None:
    """Publish one message to the broker the app publishes its tasks to (its URL, transport,
    options and serializer), then purge it; raises whatever stops the app from publishing: a
    transport that cannot be loaded, a broker that is down, stalled or refuses the write.

    A connection of its own with ``timeout``-second socket timeouts and no retry, so that a
    probe answers within its deadline (a Kubernetes probe gives 3 s) even when the broker
    hangs. Nothing is left in any queue a worker reads.
    """
    from kombu import Queue

    # One connection attempt: kombu would otherwise retry connecting for the whole of
    # broker_connection_timeout (4 s) before giving up.
    options = {
        **app.conf.broker_transport_options,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "max_retries": 0,
    }
    probe = Queue(READINESS_QUEUE, routing_key=READINESS_QUEUE, durable=False)
    with app.connection_for_write(transport_options=options, connect_timeout=timeout) as connection:
        producer = connection.Producer(serializer=app.conf.task_serializer)
        producer.publish({"probe": "readiness"}, exchange="", routing_key=READINESS_QUEUE, declare=[probe])
        probe(connection.default_channel).purge()


@checks.register(checks.Tags.compatibility)
def check_broker_transport(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """``manage.py check`` fails when the configured broker's transport cannot be loaded (its
    library, or an extra it needs, is not installed): the worker could not start and every
    publish would fail. No network: only the transport is loaded."""
    try:
        with app.connection_for_write() as connection:
            connection.transport  # noqa: B018 - loading the transport class is the check
    except Exception as exc:  # any failure to load it is the finding
        return [
            checks.Error(
                f"The Celery broker transport for {app.conf.broker_url.split(':', 1)[0]}:// cannot be loaded: "
                f"{exc.__class__.__name__}: {exc}",
                hint="Install the runtime lock (requirements.txt), which pins celery[redis] and what it needs.",
                id="bnpl.E001",
            )
        ]
    return []


class BrokerUnavailable(RuntimeError):
    """The broker could not take what had to be published."""


def enqueue_many(task, calls: list[tuple], *, countdown: float | None = None) -> bool:
    """Publish ``task(*args)`` for every ``args`` in ``calls`` over one connection: a group of
    independent tasks that idle workers take one by one (a fan-out). False when the broker
    cannot be reached (or in eager mode), as ``enqueue``.

    The connection is the process's pooled one (``broker_pool_limit``): opening a new one
    per publish cost several times the publish itself, on every request that queues work.

    Not through ``celery.group``: applying a group subscribes to each member's result in the
    Redis backend, subscriptions a worker (where the sweep and autopay publish) never reads
    and never drops. Nothing here waits for the members' results.
    """
    from kombu.exceptions import OperationalError as BrokerError

    if app.conf.task_always_eager:
        return False
    broker = app.conf.broker_write_url or app.conf.broker_url
    if _broker_down_until.get(broker, 0.0) > time.monotonic():
        return False
    try:
        with app.producer_or_acquire() as producer:
            for args in calls:
                task.apply_async(
                    args,
                    countdown=countdown,
                    producer=producer,
                    retry=True,
                    retry_policy=_RETRY_POLICY,
                    ignore_result=True,
                )
    except (BrokerError, OSError):
        _broker_down_until[broker] = time.monotonic() + BROKER_BACKOFF_SECONDS
        return False
    _broker_down_until.pop(broker, None)
    return True


_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}

# After a failed publish, this process publishes nothing to that broker for a few seconds:
# a broker that does not answer costs one request its timeouts (the transport's
# socket_timeout), not every request; callers fall back meanwhile (run the work at once, or
# leave it to a relay).
BROKER_BACKOFF_SECONDS = 5.0
_broker_down_until: dict[str, float] = {}


def enqueue(task, *args, countdown: float | None = None) -> bool:
    """Publish ``task(*args)`` for a worker; False when the broker cannot be reached.

    Publishes with one quick retry and the transport's timeouts, so a request never hangs
    on a dead or stalled broker, and after a failure not at all for
    ``BROKER_BACKOFF_SECONDS``; the caller decides what to do instead (run it now, or leave
    it to a relay). In eager mode nothing is published and the answer is False.

    Fire and forget: nobody waits for the result, so none is kept. Publishing a task whose
    result is kept subscribes the publisher to it in the Redis result store, a subscription
    that is never read or dropped; with Redis down, that subscription retried for tens of
    seconds inside the request and then broke the process's result consumer for good.
    """
    return enqueue_many(task, [args], countdown=countdown)
