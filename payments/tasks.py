"""Celery tasks of payments: thin wrappers around services."""

from celery import shared_task
from django.db import OperationalError

from core.tasks import BrokerUnavailable


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def ledger_check_task(self) -> dict:
    """The ledger check under its old name (now ``ledger.tasks.ledger_check_task``; ledger
    migration 0002 moved the beat job): this stays for tasks queued by an earlier release."""
    from ledger.checks import ledger_check

    report = ledger_check()
    return {"ok": report.ok, "breaches": len(report.breaches)}


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def idempotency_keys_prune_task(self) -> int:
    """The prune of Idempotency-Keys under its old name (now ``core.tasks.idempotency_keys_prune_task``;
    core migration 0002 moved the beat job): this stays for tasks queued by an earlier release."""
    from core.idempotency import idempotency_keys_prune

    return idempotency_keys_prune()


@shared_task(
    bind=True, acks_late=True, autoretry_for=(OperationalError, BrokerUnavailable), retry_backoff=True, max_retries=5
)
def autopay_run_task(self) -> int:
    """Fan out the customers with something due as chunks (beat: daily); harmless twice."""
    from payments.autopay import autopay_run

    return autopay_run()


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def autopay_chunk_task(self, first: int, last: int, business_date: str) -> dict:
    """Charge the due installments of customers ``first``..``last`` for ``business_date``;
    each at most once that day, so a redelivered chunk charges nothing twice."""
    from datetime import date

    from payments.autopay import autopay_chunk

    return autopay_chunk(first=first, last=last, today=date.fromisoformat(business_date))


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def autopay_customer_task(self, customer_id: int, business_date: str) -> dict:
    """Charge one customer's due installments for ``business_date``; each at most once that day.
    (Autopay now queues chunks; this stays for tasks queued by an earlier release.)"""
    from datetime import date

    from payments.autopay import autopay_customer

    return autopay_customer(customer_id=customer_id, today=date.fromisoformat(business_date))


@shared_task(bind=True, acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def payments_reconcile_task(self) -> int:
    """Finish payments left PENDING by a crash or a gateway timeout (beat: every 10 minutes)."""
    from payments.services import payments_reconcile

    return payments_reconcile()
