"""Celery tasks of events: thin wrappers around services."""

from celery import shared_task
from django.db import OperationalError


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def event_deliver_task(self, event_id: int, manual: bool = False) -> str:
    """One delivery attempt of a merchant event; a duplicate or early task does nothing."""
    from events.services import event_deliver

    attempt = event_deliver(event_id=event_id, manual=manual)
    return "nothing to do" if attempt is None else f"attempt {attempt.number}: {attempt.response_status}"


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def events_relay_task(self, grace_seconds: float | None = None) -> int:
    """Queue deliveries of pending events whose task was lost (beat: every minute)."""
    from events.services import RELAY_GRACE_SECONDS, events_relay

    return events_relay(grace_seconds=RELAY_GRACE_SECONDS if grace_seconds is None else grace_seconds)


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def notifications_send_task(self, causes: list | None = None) -> dict:
    """Send pending notifications (of ``causes``, or all); each at most once."""
    from events.notifications import notifications_send

    counts = notifications_send(causes=None if causes is None else [tuple(c) for c in causes])
    return {key: value for key, value in counts.items() if not key.endswith("_causes")}
