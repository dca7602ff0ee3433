"""Celery tasks of the ledger: thin wrappers around its services."""

from celery import shared_task
from django.db import OperationalError


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def ledger_check_task(self) -> dict:
    """Verify the ledger invariants (beat: daily); the result is recorded for the dashboard."""
    from ledger.checks import ledger_check

    report = ledger_check()
    return {"ok": report.ok, "breaches": len(report.breaches)}
