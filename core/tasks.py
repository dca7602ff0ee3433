"""Publishing tasks for workers without letting a dead or stalled broker hang a request:
``enqueue``, ``enqueue_many``, ``BrokerUnavailable`` and the per-process back-off after a
failed publish. They publish through the Celery app the task belongs to (config.celery's).
And core's own periodic job, the prune of expired Idempotency-Keys."""

import time

from celery import shared_task
from django.db import OperationalError


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def idempotency_keys_prune_task(self) -> int:
    """Delete Idempotency-Keys older than 24 hours (beat: hourly)."""
    from core.idempotency import idempotency_keys_prune

    return idempotency_keys_prune()


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

    app = task.app
    if app.conf.task_always_eager:
        return False
    # The broker's address is looked up (in Celery's layered settings, a cost on every request
    # that queues work) only while some broker is backed off.
    broker = _broker(app) if _broker_down_until else None
    if broker is not None and _broker_down_until.get(broker, 0.0) > time.monotonic():
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
        _broker_down_until[broker or _broker(app)] = time.monotonic() + BROKER_BACKOFF_SECONDS
        return False
    if broker is not None:
        _broker_down_until.pop(broker, None)
    return True


def _broker(app) -> str:
    return app.conf.broker_write_url or app.conf.broker_url


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
