"""Celery tasks of settlements: thin wrappers around its services, queued by beat."""

from celery import shared_task
from django.db import IntegrityError, OperationalError

from core.tasks import BrokerUnavailable


@shared_task(
    bind=True, acks_late=True, autoretry_for=(OperationalError, BrokerUnavailable), retry_backoff=True, max_retries=5
)
def settle_merchants_task(self) -> dict:
    """Settle yesterday's business day (beat: daily, after midnight in the business time
    zone): its chunks go to the workers. Harmless twice."""
    from settlements.services.settle import settle_merchants

    run = settle_merchants(fan_out=True)
    return {"settlement_run_id": run.pk, "chunks": run.chunks_total}


@shared_task(
    bind=True, acks_late=True, autoretry_for=(OperationalError, IntegrityError), retry_backoff=True, max_retries=5
)
def settlement_chunk_task(self, chunk_id: int) -> bool:
    """Settle one chunk of merchants; a chunk already done (a redelivery) is left alone."""
    from settlements.services.settle import settlement_chunk

    return settlement_chunk(chunk_id=chunk_id)


# No retry on the gateway's errors: the payout stays PENDING and the reconcile task asks again.
@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def payouts_send_task(self, payout_ids: list[int]) -> int:
    """Send a settlement chunk's payouts through the payout gateway and apply each answer, once."""
    from settlements.services.payouts import payouts_send_each

    return payouts_send_each(payout_ids)


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def payouts_reconcile_task(self) -> int:
    """Settle payouts left PENDING (beat: every few minutes)."""
    from settlements.services.payouts import payouts_reconcile

    return payouts_reconcile()
