"""Celery tasks: thin wrappers around bnpl services, queued by beat."""

from celery import shared_task
from django.db import OperationalError


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def overdue_sweep_task(self) -> dict:
    """Run the overdue sweep once (beat: every 5 minutes); harmless when run twice."""
    from bnpl.services import overdue_sweep

    run = overdue_sweep()
    return {
        "sweep_run_id": run.pk,
        "skipped": run.skipped,
        "marked_overdue": run.installments_marked_overdue,
        "marked_debt": run.customers_marked_debt,
        "late_fees": run.late_fees_created,
    }


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def reminders_send_task(self) -> dict:
    """Send due-soon and overdue reminders (beat: daily); each at most once per installment and kind."""
    from bnpl.services import reminders_send

    return reminders_send()
