"""Celery tasks: thin wrappers around bnpl services, queued by beat."""

from celery import shared_task
from django.db import IntegrityError, OperationalError


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def overdue_sweep_task(self) -> dict:
    """Start the overdue sweep (beat: every 5 minutes): its chunks go to the workers as a
    group, and the last one to finish closes the run. Harmless when run twice."""
    from bnpl.services.sweep import overdue_sweep

    run = overdue_sweep(fan_out=True)
    return {"sweep_run_id": run.pk, "skipped": run.skipped, "chunks": run.chunks_total}


# IntegrityError too: two runs overlapping on a plan (a stale run's chunk redelivered late)
# may both charge one fee; the unique constraint refuses the second, and its retry finds
# the fee there and charges nothing.
@shared_task(
    bind=True, acks_late=True, autoretry_for=(OperationalError, IntegrityError), retry_backoff=True, max_retries=5
)
def sweep_chunk_task(self, chunk_id: int) -> bool:
    """Sweep one chunk of plans; a chunk already done (a redelivery) is left alone."""
    from bnpl.services.sweep import sweep_chunk

    return sweep_chunk(chunk_id=chunk_id)


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def reminders_send_task(self) -> dict:
    """Send due-soon and overdue reminders (beat: daily); each at most once per installment and kind."""
    from bnpl.services.reminders import reminders_send

    return reminders_send()


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def plans_expire_task(self) -> dict:
    """Expire open offers and authorizations past their time (beat: every few minutes)."""
    from bnpl.services.checkout import plans_expire

    return {"expired": plans_expire()}
