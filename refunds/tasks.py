"""Celery tasks of refunds: thin wrappers around services."""

from celery import shared_task
from django.db import OperationalError


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def refund_status_apply_task(self, refund_id: int, status: str) -> str:
    """Apply a webhook's status to a refund; running it twice is harmless (re-checked under the lock)."""
    from refunds.services import RefundExceedsPlan, refund_status_apply

    try:
        return refund_status_apply(refund_id=refund_id, status=status, source="webhook").status
    except RefundExceedsPlan:
        return "refused: exceeds plan"
