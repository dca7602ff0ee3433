"""The Celery application, configured from Django settings (``CELERY_*``)."""

import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("bnpl")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_django_logging(**kwargs) -> None:
    """Leave logging to settings.LOGGING (JSON lines, PII masked): with a receiver here,
    Celery neither replaces the handlers nor changes the root level (LOG_LEVEL rules)."""


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
    try:
        with app.producer_or_acquire() as producer:
            for args in calls:
                task.apply_async(args, countdown=countdown, producer=producer, retry=True, retry_policy=_RETRY_POLICY)
    except (BrokerError, OSError):
        return False
    return True


_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def enqueue(task, *args, countdown: float | None = None) -> bool:
    """Publish ``task(*args)`` for a worker; False when the broker cannot be reached.

    Publishes with one quick retry, so a request never hangs on a dead broker; the caller
    decides what to do instead (run it now, or leave it to a relay). In eager mode nothing
    is published and the answer is False.
    """
    return enqueue_many(task, [args], countdown=countdown)
