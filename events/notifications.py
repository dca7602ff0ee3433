"""Customer notifications (payment receipts, failed autopay, due-soon and overdue notices)
by email and SMS, each at most once per kind, channel and cause.

The callers render the text in the transaction of the cause and record it here; sending
happens after commit. A row is claimed (SENDING) before its message leaves, so a crash or
a second run never sends it twice: at most once, never at least once.
"""

import logging

from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.utils import timezone

from accounts.masking import mask_text
from accounts.models import User
from core.db import postgresql
from core.tasks import enqueue
from events.models import Notification
from events.sms import SmsMessage, get_sms_backend

logger = logging.getLogger(__name__)

CHANNELS = (Notification.Channel.EMAIL, Notification.Channel.SMS)


def notifications_queue(*, items: list[tuple[int, str, str, str, str]], send: bool = True) -> None:
    """Record ``(customer_id, kind, cause, subject, body)`` messages on every channel, in the
    caller's transaction; a cause already recorded is left alone. A channel the customer has
    no address for is recorded as SKIPPED. Sent once committed (unless ``send`` is False:
    the caller sends them itself)."""
    if not items:
        return
    if postgresql():
        from events.sql import notifications_queue_sql  # it builds on this module's channels

        with connection.cursor() as cursor:
            pending = notifications_queue_sql(cursor, items, timezone.now())
        if send and pending:
            notifications_send_after_commit(causes=[(kind, cause) for _, kind, cause, _, _ in items])
        return
    addresses = {
        pk: {Notification.Channel.EMAIL: email, Notification.Channel.SMS: phone}
        for pk, email, phone in User.objects.filter(pk__in={item[0] for item in items}).values_list(
            "pk", "email", "phone_number"
        )
    }
    rows = [
        Notification(
            customer_id=customer_id,
            kind=kind,
            channel=channel,
            cause=cause,
            subject=subject,
            body=body,
            status=Notification.Status.PENDING if addresses[customer_id][channel] else Notification.Status.SKIPPED,
        )
        for customer_id, kind, cause, subject, body in items
        for channel in CHANNELS
    ]
    Notification.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)
    if send and any(row.status == Notification.Status.PENDING for row in rows):
        notifications_send_after_commit(causes=[(kind, cause) for _, kind, cause, _, _ in items])


def notifications_send_after_commit(*, causes: list[tuple[str, str]]) -> None:
    """Send the PENDING notifications of ``causes`` once the caller's transaction commits (for
    notifications recorded by SQL of their own, as notifications_queue sends its own)."""
    causes = sorted(set(causes))
    # robust: the change has committed; a failure to send is logged, never the request's 500.
    transaction.on_commit(lambda: _send_soon(causes), robust=True)


def _send_soon(causes: list[tuple[str, str]]) -> None:
    from events.tasks import notifications_send_task

    if not enqueue(notifications_send_task, causes):
        # Eager mode, or no broker: send from here rather than not at all.
        notifications_send(causes=causes)


def notifications_send(*, causes: list[tuple[str, str]] | None = None) -> dict:
    """Send the PENDING notifications of ``causes`` (``[(kind, cause), ...]``; all when None).

    Returns how many were ``sent``, ``failed`` and ``skipped`` (no address), and the
    ``failed_causes`` and ``sent_causes``.
    """
    pending = Notification.objects.filter(status=Notification.Status.PENDING)
    if causes is not None:
        pending = pending.filter(kind__in={k for k, _ in causes}, cause__in={c for _, c in causes})
        wanted = {tuple(c) for c in causes}
    rows = [n for n in pending.select_related("customer") if causes is None or (n.kind, n.cause) in wanted]
    counts = {"sent": 0, "failed": 0, "skipped": 0}
    failed_causes, sent_causes = set(), set()
    mail = get_connection(fail_silently=False)
    sms = get_sms_backend()
    for row in rows:
        # The claim: whoever moves it out of PENDING sends it; anyone else skips it.
        if not Notification.objects.filter(pk=row.pk, status=Notification.Status.PENDING).update(
            status=Notification.Status.SENDING
        ):
            continue
        status, error = _send_one(row, mail, sms)
        Notification.objects.filter(pk=row.pk).update(
            status=status, error=error[:500], sent_at=timezone.now() if status == Notification.Status.SENT else None
        )
        counts[{"SENT": "sent", "FAILED": "failed", "SKIPPED": "skipped"}[status]] += 1
        if status == Notification.Status.FAILED:
            failed_causes.add((row.kind, row.cause))
        elif status == Notification.Status.SENT:
            sent_causes.add((row.kind, row.cause))
    return counts | {"failed_causes": failed_causes, "sent_causes": sent_causes}


def _send_one(row: Notification, mail, sms) -> tuple[str, str]:
    customer: User = row.customer
    address = customer.email if row.channel == Notification.Channel.EMAIL else customer.phone_number
    if not address:
        return Notification.Status.SKIPPED, ""
    try:
        if row.channel == Notification.Channel.EMAIL:
            mail.send_messages([EmailMessage(subject=row.subject, body=row.body, to=[address])])
        else:
            sms.send_messages([SmsMessage(to=address, body=row.subject)])  # a text is short: the subject
    except Exception as exc:  # any provider failure is this message's, recorded, never retried
        logger.warning("Notification %s (%s) could not be sent: %s", row.pk, row.channel, type(exc).__name__)
        return Notification.Status.FAILED, mask_text(f"{type(exc).__name__}: {exc}")
    return Notification.Status.SENT, ""
