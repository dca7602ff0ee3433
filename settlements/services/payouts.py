"""Payouts through the payout gateway, with the discipline of card payments: the payout is
PENDING in the database before the gateway is called, the call holds no lock, and its
answer is applied once, under the payout's lock. A call that raised (a timeout) leaves the
payout PENDING; ``payouts_reconcile`` asks again with the same idempotency key, so the
bank pays at most once and the books post it once.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from events.models import Event
from events.services import event_record
from ledger.accounts import MERCHANT_PAYABLE, PAYOUT_CLEARING
from ledger.models import JournalEntry
from ledger.services import Leg, ledger_post
from settlements.gateways import PayoutResult, get_payout_gateway
from settlements.models import Payout
from settlements.selectors import payout_lock

logger = logging.getLogger(__name__)


def payout_send(*, payout_id: int) -> Payout:
    """Send a PENDING payout to the merchant's bank account and apply the answer, once; a
    payout already PAID or FAILED is returned as it is. A gateway that raises (a timeout)
    leaves it PENDING for ``payouts_reconcile``, and the error goes up to the caller."""
    payout = Payout.objects.get(pk=payout_id)
    if payout.status != Payout.Status.PENDING:
        return payout
    Payout.objects.filter(pk=payout.pk).update(attempts=F("attempts") + 1, updated_at=timezone.now())
    if not payout.account:
        # Made before payouts kept their account (none is made without one now): nothing to send to.
        result = PayoutResult("failed", "no_payout_account")
    else:
        # The account the payout was made for, whatever the merchant has on file now: a retry
        # after a timeout must ask the bank about the payout it may already have made.
        result = get_payout_gateway().payout(
            amount=payout.amount,
            currency=payout.currency,
            account=payout.account,
            account_name=payout.account_name,
            idempotency_key=f"payout_{payout.pk}",
        )
    return payout_apply(payout_id=payout.pk, result=result)


def payout_apply(*, payout_id: int, result: PayoutResult) -> Payout:
    """Apply the gateway's answer to a PENDING payout, once: PAID posts merchant payable →
    payout clearing and records ``payout.paid``; FAILED posts nothing and records
    ``payout.failed`` (the money goes with the next settlement)."""
    with transaction.atomic():
        payout = payout_lock(payout_id)
        if payout.status != Payout.Status.PENDING:
            return payout
        now = timezone.now()
        payout.reference, payout.finished_at = result.reference, now
        if result.paid:
            payout.status = Payout.Status.PAID
            ledger_post(
                kind=JournalEntry.Kind.PAYOUT,
                memo=f"Payout {payout.pk} of settlement {payout.settlement_id}",
                legs=[
                    Leg(MERCHANT_PAYABLE, payout.amount, payout.currency, party_id=payout.merchant_id),
                    Leg(PAYOUT_CLEARING, -payout.amount, payout.currency, party_id=payout.merchant_id),
                ],
            )
        else:
            payout.status, payout.failure_code = Payout.Status.FAILED, result.failure_code
            logger.warning("Payout %s failed: %s", payout.pk, result.failure_code)
        payout.save(update_fields=["status", "failure_code", "reference", "finished_at", "updated_at"])
        event_record(
            merchant_id=payout.merchant_id,
            type=Event.Type.PAYOUT_PAID if result.paid else Event.Type.PAYOUT_FAILED,
            data=payout_event_data(payout),
        )
    return payout


def payouts_send_each(payout_ids: list[int]) -> int:
    """Send each payout, one after the other; a gateway that raises for one (a timeout)
    leaves it PENDING for ``payouts_reconcile`` and goes on with the next. Returns how many
    were settled (PAID or FAILED)."""
    settled = 0
    for payout_id in payout_ids:
        try:
            payout = payout_send(payout_id=payout_id)
        except Exception:
            logger.exception("Payout %s not settled; the reconcile task will ask again", payout_id)
            continue
        settled += payout.status != Payout.Status.PENDING
    return settled


def payouts_reconcile(*, older_than_minutes: int | None = None, limit: int = 500) -> int:
    """Send again the payouts PENDING for longer than ``older_than_minutes`` (a lost task, a
    gateway that timed out): the same key, so each is paid at most once. Returns how many
    were settled (PAID or FAILED)."""
    minutes = settings.BNPL_PAYOUT_RECONCILE_MINUTES if older_than_minutes is None else older_than_minutes
    since = timezone.now() - timedelta(minutes=minutes)
    stuck = Payout.objects.filter(status=Payout.Status.PENDING, created_at__lte=since).order_by("created_at")
    return payouts_send_each(list(stuck.values_list("pk", flat=True)[:limit]))


def payout_event_data(payout: Payout) -> dict:
    """The ``payout.paid`` / ``payout.failed`` event's data."""
    return {
        "payout_id": payout.pk,
        "settlement_id": payout.settlement_id,
        "amount": str(payout.amount),
        "currency": payout.currency,
        "status": payout.status,
        "failure_code": payout.failure_code,
        "account": payout.account_masked,
    }
