"""Reminders: due-soon and overdue messages, each sent at most once per installment and kind."""

from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F

from bnpl.models import Installment, Reminder
from bnpl.schedule import business_today
from bnpl.selectors import reminders_lock_try
from events.models import Notification
from events.notifications import notifications_queue, notifications_send


def reminders_send(*, today: date | None = None) -> dict[str, int]:
    """Send due-soon and overdue reminders by email and SMS, each at most once per
    installment and kind.

    The reminder rows and their notifications are committed before any message leaves, so
    a crash or a second run never sends one twice (a failed send is recorded, not retried).
    ``failed`` counts the reminders one of whose messages could not be sent.
    """
    today = today or business_today()
    open_installments = Installment.objects.filter(amount_paid__lt=F("amount_due")).select_related("plan__customer")
    with transaction.atomic():
        if not reminders_lock_try():
            return {"due_soon": 0, "overdue": 0, "failed": 0}
        due_soon = list(
            open_installments.filter(
                status=Installment.Status.UPCOMING,
                due_date__gt=today,
                due_date__lte=today + timedelta(days=settings.BNPL_DUE_SOON_DAYS),
            ).exclude(reminders__kind=Reminder.Kind.DUE_SOON)
        )
        overdue = list(
            open_installments.filter(status=Installment.Status.OVERDUE).exclude(reminders__kind=Reminder.Kind.OVERDUE)
        )
        records = [Reminder(installment=i, kind=Reminder.Kind.DUE_SOON) for i in due_soon]
        records += [Reminder(installment=i, kind=Reminder.Kind.OVERDUE) for i in overdue]
        Reminder.objects.bulk_create(records)
        # Sent below, by this task, rather than queued once more.
        notifications_queue(items=[_reminder_message(r) for r in records], send=False)
    causes = [(_notification_kind(r), _reminder_cause(r)) for r in records]
    outcome = notifications_send(causes=causes) if records else {}
    # FAILED when a message could not be sent, or none could be (no email, no phone).
    failed = [
        r.pk
        for r, cause in zip(records, causes, strict=True)
        if cause in outcome.get("failed_causes", set()) or cause not in outcome.get("sent_causes", set())
    ]
    if failed:
        Reminder.objects.filter(pk__in=failed).update(outcome=Reminder.Outcome.FAILED)
    return {"due_soon": len(due_soon), "overdue": len(overdue), "failed": len(failed)}


def _reminder_cause(reminder: Reminder) -> str:
    return f"installment:{reminder.installment_id}"


def _reminder_message(reminder: Reminder) -> tuple[int, str, str, str, str]:
    installment = reminder.installment
    customer = installment.plan.customer
    amount = f"{installment.amount_remaining} {installment.plan.currency}"
    name = customer.full_name or customer.username
    if reminder.kind == Reminder.Kind.DUE_SOON:
        subject = f"Installment {installment.sequence} of plan #{installment.plan_id} is due on {installment.due_date}"
        body = f"Hello {name},\n\n{amount} is due on {installment.due_date}."
    else:
        subject = f"Installment {installment.sequence} of plan #{installment.plan_id} is overdue"
        body = (
            f"Hello {name},\n\n{amount} was due on {installment.due_date} "
            "and is now overdue. Please pay it to keep your account in good standing."
        )
    return customer.pk, _notification_kind(reminder), _reminder_cause(reminder), subject, body


def _notification_kind(reminder: Reminder) -> str:
    return Notification.Kind.DUE_SOON if reminder.kind == Reminder.Kind.DUE_SOON else Notification.Kind.OVERDUE
