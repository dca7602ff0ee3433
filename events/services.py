"""Merchant events: a transactional outbox delivered as signed webhooks.

``event_record`` stores the event in the caller's transaction, so an event exists exactly
when its cause committed. Delivery starts after commit (a task per event) and is retried
with exponential backoff until ``give_up_at``; a periodic relay re-queues any pending event
whose task was lost (broker down, worker killed), so no event is ever dropped. Each attempt
claims the row under a lock and pushes ``next_attempt_at`` forward (a lease), so two
workers never deliver the same attempt; delivery is at least once, and merchants dedupe
by the event id.
"""

import ipaddress
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from config.celery import app
from core.db import postgresql
from core.signatures import signature_header
from core.tasks import enqueue, enqueue_many
from events.models import Event, EventDelivery, generate_event_id
from events.sql import event_record_cte

logger = logging.getLogger(__name__)

USER_AGENT = "bnpl-webhooks/1"
# How long an attempt may hold the event before the relay may start another one.
LEASE_MARGIN_SECONDS = 30
RELAY_GRACE_SECONDS = 30
# How long an event the relay queued is left to the workers before it may be queued again.
RELAY_LEASE_SECONDS = 15 * 60


# event_record in one statement on PostgreSQL (the merchant's endpoint read by the insert
# itself, events.sql's), for one event or a batch's: it runs whenever a payment pays an
# installment in full, and the ORM took longer composing its two statements than the
# database took to run them. events/tests/test_events.py holds the rows equal to the ORM
# path's, which SQLite keeps.
_EVENTS_RECORD_SQL = (
    "WITH event_rows AS (SELECT r.public_id, r.merchant_id, r.type, r.data, %s::timestamptz AS created_at,"  # noqa: S608  # nosec B608
    " %s::timestamptz AS give_up_at, r.n"
    " FROM UNNEST(%s::varchar[], %s::bigint[], %s::varchar[], %s::jsonb[]) WITH ORDINALITY"
    " AS r(public_id, merchant_id, type, data, n)),"
    + event_record_cte(rows="event_rows", order="n")
    + " SELECT id, delivery_status FROM events_recorded"
)


def event_record(*, merchant_id: int, type: str, data: dict) -> None:
    """Store one event in the caller's transaction; its delivery is queued once that commits
    (a merchant without a webhook URL has nothing to deliver: the event is only kept)."""
    events_record_each(events=[(merchant_id, type, data)])


def events_record_each(*, events: list[tuple[int, str, dict]]) -> None:
    """``event_record`` for each ``(merchant_id, type, data)``, in one statement on PostgreSQL:
    each event's own delivery queued once the transaction commits (``events_record_many`` is
    the set-based jobs', which leave delivery to the relay)."""
    if not events:
        return
    now = timezone.now()
    if postgresql():
        with connection.cursor() as cursor:
            cursor.execute(
                _EVENTS_RECORD_SQL,
                [
                    now,
                    event_give_up_at(now),
                    [generate_event_id() for _ in events],
                    [merchant_id for merchant_id, _, _ in events],
                    [type for _, type, _ in events],
                    [json.dumps(data, cls=DjangoJSONEncoder) for _, _, data in events],
                ],
            )
            recorded = cursor.fetchall()
        for event_id, delivery in recorded:
            if delivery == Event.Delivery.PENDING:
                event_dispatch_after_commit(event_id)
        return
    for merchant_id, type, data in events:
        has_endpoint = User.objects.filter(pk=merchant_id).exclude(webhook_url="").exists()
        event = Event.objects.create(
            merchant_id=merchant_id,
            type=type,
            data=data,
            created_at=now,
            next_attempt_at=now,
            give_up_at=event_give_up_at(now),
            delivery_status=Event.Delivery.PENDING if has_endpoint else Event.Delivery.NO_ENDPOINT,
        )
        if has_endpoint:
            event_dispatch_after_commit(event.pk)


def event_dispatch_after_commit(event_id: int) -> None:
    """Queue the delivery of a PENDING event once the caller's transaction commits (for
    events written by SQL of their own, as event_record queues its own)."""
    transaction.on_commit(lambda: _dispatch(event_id), robust=True)


def events_record_many(*, events: list[tuple[int, str, dict]]) -> int:
    """Store many ``(merchant_id, type, data)`` events in a fixed number of queries (set-based
    jobs); the relay delivers them once the transaction commits."""
    if not events:
        return 0
    now = timezone.now()
    Event.objects.bulk_create(
        [
            Event(merchant_id=m, type=t, data=d, created_at=now, next_attempt_at=now, give_up_at=event_give_up_at(now))
            for m, t, d in events
        ],
        batch_size=5000,
    )
    events_relay_after_commit()
    return len(events)


def events_relay_after_commit() -> None:
    """Have the relay deliver, once the caller's transaction commits, events it recorded
    in bulk (set-based jobs that write events themselves call this too)."""
    transaction.on_commit(_relay_soon, robust=True)


def event_give_up_at(start: datetime) -> datetime:
    """When the delivery of an event recorded at ``start`` is given up."""
    return start + timedelta(hours=settings.BNPL_WEBHOOK_RETRY_HOURS)


def _dispatch(event_id: int, *, manual: bool = False, countdown: float | None = None) -> None:
    from events.tasks import event_deliver_task

    if enqueue(event_deliver_task, event_id, manual, countdown=countdown):
        return
    if app.conf.task_always_eager and not countdown:
        event_deliver(event_id=event_id, manual=manual)
    # Else the broker is down: the event stays PENDING and the relay sends it later.


def _relay_soon() -> None:
    from events.tasks import events_relay_task

    if not enqueue(events_relay_task, 0) and app.conf.task_always_eager:
        events_relay(grace_seconds=0)


def backoff_seconds(attempt: int) -> float:
    """The wait after failed attempt number ``attempt`` (1, 2, …): base * 2^(attempt-1), capped."""
    delay = settings.BNPL_WEBHOOK_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)
    return min(delay, settings.BNPL_WEBHOOK_BACKOFF_MAX_SECONDS)


def _claim(event_id: int, manual: bool) -> tuple[Event, str] | None:
    """Take the next attempt of a pending, due event; None if there is nothing to do."""
    now = timezone.now()
    with transaction.atomic():
        event = (
            Event.objects.select_for_update(skip_locked=True)
            .filter(pk=event_id, delivery_status=Event.Delivery.PENDING)
            .first()
        )
        if event is None or (event.next_attempt_at > now and not manual):
            return None  # delivered, given up, held by another attempt, or not due yet
        if now > event.give_up_at and not manual:
            event.delivery_status = Event.Delivery.FAILED
            event.save(update_fields=["delivery_status"])
            return None
        url = User.objects.filter(pk=event.merchant_id).values_list("webhook_url", flat=True).first()
        if not url:
            event.delivery_status = Event.Delivery.NO_ENDPOINT
            event.save(update_fields=["delivery_status"])
            return None
        event.attempts += 1
        lease = settings.BNPL_WEBHOOK_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS
        event.next_attempt_at = now + timedelta(seconds=lease)
        event.save(update_fields=["attempts", "next_attempt_at"])
    return event, url


def event_deliver(*, event_id: int, manual: bool = False) -> EventDelivery | None:
    """Make one delivery attempt of a pending event, record it, and schedule the next one.

    Returns the attempt, or None when there was nothing to do (already delivered, given up,
    another attempt running, not due yet, or the merchant has no webhook URL).
    """
    claimed = _claim(event_id, manual)
    if claimed is None:
        return None
    event, url = claimed
    secret = User.objects.filter(pk=event.merchant_id).values_list("webhook_secret", flat=True).first() or ""
    body = json.dumps(event.payload(), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "BNPL-Event-Id": event.public_id,
        "BNPL-Event-Type": event.type,
        "BNPL-Signature": signature_header(secret, int(time.time()), body),
    }
    started_at, started = timezone.now(), time.perf_counter()
    if secret:
        status, error = _post(url, body, headers)
    else:  # an unsigned event could not be trusted: an operator must give the merchant a secret
        status, error = None, "The merchant has no webhook secret (an operator can rotate one)."
    duration_ms = int((time.perf_counter() - started) * 1000)
    succeeded = status is not None and 200 <= status < 300
    retry_in = None
    with transaction.atomic():
        attempt = EventDelivery.objects.create(
            event=event,
            number=event.attempts,
            url=url[:500],
            started_at=started_at,
            duration_ms=duration_ms,
            response_status=status,
            error=error[:500],
            succeeded=succeeded,
            manual=manual,
        )
        event = Event.objects.select_for_update().get(pk=event_id)
        now = timezone.now()
        if event.delivery_status != Event.Delivery.PENDING:
            pass  # another attempt (a manual one) settled it meanwhile: only this one is recorded
        elif succeeded:
            event.delivery_status, event.delivered_at = Event.Delivery.DELIVERED, now
        elif now + timedelta(seconds=backoff_seconds(event.attempts)) > event.give_up_at:
            event.delivery_status = Event.Delivery.FAILED
            logger.warning("Event %s given up after %s attempts", event.public_id, event.attempts)
        else:
            retry_in = backoff_seconds(event.attempts)
            event.next_attempt_at = now + timedelta(seconds=retry_in)
        event.save(update_fields=["delivery_status", "delivered_at", "next_attempt_at"])
    if retry_in is not None:
        _dispatch(event_id, countdown=retry_in)  # the relay is the safety net if this task is lost
    return attempt


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is an answer (a failed attempt), never a hop to another host


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def _blocked(url: str) -> str:
    """Why ``url`` may not be called ("" when it may): http(s) only, and no loopback or
    private addresses unless settings allow them (they would reach our own network)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "The webhook URL must be http or https."
    if settings.BNPL_WEBHOOK_ALLOW_PRIVATE_URLS:
        return ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except OSError as exc:
        return f"Cannot resolve the webhook host: {exc}"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            return f"The webhook host resolves to a non-public address ({ip})."
    return ""


def _post(url: str, body: bytes, headers: dict) -> tuple[int | None, str]:
    """POST and return ``(status code, "")``, or ``(None, why)`` when no answer came.

    Never raises: whatever goes wrong (a bad URL, a broken answer) is this attempt's failure.
    """
    try:
        blocked = _blocked(url)
        if blocked:
            return None, blocked
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - checked
        with _opener.open(request, timeout=settings.BNPL_WEBHOOK_TIMEOUT_SECONDS) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except urllib.error.URLError as exc:
        return None, str(exc.reason)
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def events_relay(*, grace_seconds: float = RELAY_GRACE_SECONDS, batch: int = 1000, most: int = 100_000) -> int:
    """Queue a delivery for every pending event due more than ``grace_seconds`` ago (its own
    task was lost, never published, or is late; or a set-based job recorded it); returns how
    many were queued. Events of merchants without an endpoint are settled in one UPDATE."""
    from events.tasks import event_deliver_task

    now = timezone.now()
    cutoff = now - timedelta(seconds=grace_seconds)
    due = Event.objects.filter(delivery_status=Event.Delivery.PENDING, next_attempt_at__lte=cutoff).filter(
        Q(relayed_until__isnull=True) | Q(relayed_until__lt=now)
    )
    due.filter(merchant__webhook_url="").update(delivery_status=Event.Delivery.NO_ENDPOINT)
    queued, after = 0, 0
    while queued < most:
        ids = list(due.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            break
        if enqueue_many(event_deliver_task, [(event_id, False) for event_id in ids]):
            # Queued: not again until a worker has had time to take them (a backlog is not
            # published once more every minute).
            Event.objects.filter(pk__in=ids).update(relayed_until=now + timedelta(seconds=RELAY_LEASE_SECONDS))
        elif app.conf.task_always_eager:
            for event_id in ids:
                event_deliver(event_id=event_id)
        else:
            break  # no broker: they stay pending for the next run
        queued += len(ids)
        after = ids[-1]
    return queued


@transaction.atomic
def event_redeliver(*, event_id: int) -> Event:
    """Deliver an event again now, whatever became of it (an operator's manual redeliver);
    a new retry window starts."""
    event = Event.objects.select_for_update().get(pk=event_id)
    now = timezone.now()
    event.delivery_status, event.next_attempt_at, event.give_up_at = Event.Delivery.PENDING, now, event_give_up_at(now)
    event.save(update_fields=["delivery_status", "next_attempt_at", "give_up_at"])
    transaction.on_commit(lambda: _dispatch(event_id, manual=True), robust=True)
    return event
