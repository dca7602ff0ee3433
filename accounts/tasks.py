"""Celery tasks of accounts: thin wrappers around its services."""

from celery import shared_task
from django.db import OperationalError


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def outstanding_tokens_prune_task(self) -> int:
    """Delete the records of expired refresh tokens (beat: daily); harmless twice."""
    from accounts.services import outstanding_tokens_prune

    return outstanding_tokens_prune()
