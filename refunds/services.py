"""Refunds: request, decide (webhook or operator), apply to the plan, pay the rest back.

Lock order, as everywhere: the plan row first, then its installments, then the customer.
"""

import logging
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from accounts.pricing import merchant_fee_refunded
from bnpl.models import PLAN_CAPTURED_STATUSES, Plan
from bnpl.selectors import plan_get_for_update, plan_get_for_update_with_parties
from bnpl.services.installments import (
    customer_restore_if_clear,
    installments_cancel_by_refund,
    plan_close_if_settled,
)
from core.db import postgresql
from core.money import ZERO
from core.problems import DomainError, FieldInvalid
from events.models import Event
from events.services import event_record
from ledger.accounts import (
    CUSTOMER_CREDIT,
    CUSTOMER_RECEIVABLE,
    GATEWAY_CLEARING,
    MERCHANT_FEE_INCOME,
    MERCHANT_PAYABLE,
)
from ledger.models import JournalEntry
from ledger.services import Leg, ledger_post
from payments.gateways import get_gateway
from refunds.models import Refund, RefundEvent
from refunds.selectors import refund_request_standing

logger = logging.getLogger(__name__)

WEBHOOK_STATUSES = {
    "processing": Refund.Status.PROCESSING,
    "approved": Refund.Status.APPROVED,
    "rejected": Refund.Status.REJECTED,
    "failed": Refund.Status.REJECTED,
}
ALLOWED = {
    Refund.Status.PENDING: {Refund.Status.PROCESSING, Refund.Status.APPROVED, Refund.Status.REJECTED},
    Refund.Status.PROCESSING: {Refund.Status.APPROVED, Refund.Status.REJECTED},
}


class RefundExceedsPlan(DomainError):
    status_code = 422
    code = "refund_exceeds_plan"
    title = "Refund above the plan total"
    default_detail = "The plan total minus refunds approved or pending is smaller than this refund."


class RefundAlreadyDecided(DomainError):
    status_code = 409
    code = "refund_already_decided"
    title = "Refund already decided"
    default_detail = "This refund is already approved or rejected, and a final decision never changes."


class PlanNotRefundable(DomainError):
    status_code = 409
    code = "plan_not_refundable"
    title = "Plan cannot be refunded"
    default_detail = "Only a plan its customer agreed to and that was captured can be refunded."


# Plans that were ever owed: an offer, an authorization or a plan that ended before it was
# captured took no money, so there is nothing to refund.
REFUNDABLE_PLAN_STATUSES = PLAN_CAPTURED_STATUSES


class TransactionIdConflict(DomainError):
    status_code = 409
    code = "transaction_id_conflict"
    title = "Transaction id already used"
    default_detail = "This transaction_id names another refund (other plan or amount)."


def refund_request(
    *,
    plan_id: int,
    transaction_id: str,
    amount: Decimal,
    reason: str,
    requester: User,
    user_id: str | None = None,
    payout_method: str | None = None,
) -> tuple[Refund, bool]:
    """Ask for a refund on a plan ``requester`` may see (plan_scope); ``(refund, created)``,
    the refund's customer and merchant loaded with their public ids. The same
    ``transaction_id`` with the same plan and amount returns the existing refund (created False).

    Raises Plan.DoesNotExist (absent, or not among the requester's plans), FieldInvalid
    (user_id), TransactionIdConflict (409), PlanNotRefundable (409), RefundExceedsPlan (422).
    """
    method = payout_method or settings.BNPL_REFUND_PAYOUT_METHOD.upper()
    if postgresql():
        # The refund is inserted ON CONFLICT DO NOTHING, so a race on the transaction id needs
        # no savepoint: inside the caller's transaction (the API's, with its Idempotency-Key
        # row) the work joins it; the errors are raised before anything is written.
        if connection.in_atomic_block:
            return _refund_request(plan_id, transaction_id, amount, reason, requester, user_id, method)
        with transaction.atomic():
            return _refund_request(plan_id, transaction_id, amount, reason, requester, user_id, method)
    try:
        with transaction.atomic():
            return _refund_request(plan_id, transaction_id, amount, reason, requester, user_id, method)
    except IntegrityError:
        # Another request with this transaction_id (on another plan) won the race.
        merchant_id = Plan.objects.values_list("merchant_id", flat=True).get(pk=plan_id)
        return _existing(merchant_id, plan_id, transaction_id, amount, method), False


def _existing(merchant_id: int, plan_id: int, transaction_id: str, amount: Decimal, method: str) -> Refund:
    refund = Refund.objects.select_related("customer", "merchant").get(
        merchant_id=merchant_id, transaction_id=transaction_id
    )
    if refund.plan_id != plan_id or refund.amount != amount or refund.payout_method != method:
        raise TransactionIdConflict()
    return refund


# What a refund request reads of its plan: the rest of the row is neither converted nor sent.
_PLAN_READ = ("id", "customer_id", "merchant_id", "total_amount", "currency", "status")


def _refund_request(plan_id, transaction_id, amount, reason, requester, user_id, method) -> tuple[Refund, bool]:
    plan = plan_get_for_update_with_parties(viewer=requester, pk=plan_id, fields=_PLAN_READ)
    if user_id and user_id != plan.customer.user_id:
        raise FieldInvalid("user_id", "This is not the plan's customer.")
    taken, counted = refund_request_standing(
        plan_id=plan.pk, merchant_id=plan.merchant_id, transaction_id=transaction_id
    )
    if taken:
        return _existing(plan.merchant_id, plan_id, transaction_id, amount, method), False
    if plan.status not in REFUNDABLE_PLAN_STATUSES:
        raise PlanNotRefundable(f"This plan is {plan.status}; there is nothing to refund.", plan_status=plan.status)
    available = plan.total_amount - counted
    if amount > available:
        raise RefundExceedsPlan(
            f"At most {available} {plan.currency} can still be refunded on this plan.", refundable=str(available)
        )
    saved = refund_insert(
        plan=plan,
        requester=requester,
        transaction_id=transaction_id,
        amount=amount,
        reason=reason,
        payout_method=method,
    )
    if saved is None:
        # Another transaction committed a refund under this transaction id since the read.
        return _existing(plan.merchant_id, plan_id, transaction_id, amount, method), False
    return saved, True


# The PENDING refund, every column of the model, written out on PostgreSQL: the ORM's INSERT
# took longer to compose than to run. ON CONFLICT on the merchant's transaction id leaves a
# refund another transaction made under that id in place (and waits for it to commit or roll
# back), where the ORM raises IntegrityError (refunds/tests/test_hand_written_sql.py holds the
# two rows equal).
_INSERT_FIELDS = [field for field in Refund._meta.concrete_fields if not field.primary_key]
_COLUMNS = [field.attname for field in Refund._meta.concrete_fields]
_INSERT_SQL = (
    f"INSERT INTO {Refund._meta.db_table} ({', '.join(field.column for field in _INSERT_FIELDS)})"  # noqa: S608  # nosec B608
    f" VALUES ({', '.join(['%s'] * len(_INSERT_FIELDS))})"
    " ON CONFLICT (merchant_id, transaction_id) DO NOTHING RETURNING id"
)


def refund_insert(
    *, plan: Plan, requester: User, transaction_id: str, amount: Decimal, reason: str, payout_method: str
) -> Refund | None:
    """Save a new PENDING refund of ``amount`` on ``plan`` (its ``customer`` and ``merchant``
    loaded) requested by ``requester``, as ``save`` saves it, and return it with those four
    rows attached; None, with nothing saved, when the merchant's transaction id already names
    a refund. On SQLite through ``save`` (IntegrityError instead of None)."""
    given = {
        "plan_id": plan.pk,
        "merchant_id": plan.merchant_id,
        "customer_id": plan.customer_id,
        "requested_by_id": requester.pk,
        "transaction_id": transaction_id,
        "amount": amount,
        "currency": plan.currency,
        "reason": reason,
        "payout_method": payout_method,
    }
    related = {"plan": plan, "merchant": plan.merchant, "customer": plan.customer, "requested_by": requester}
    if not postgresql():
        refund = _with_rows(Refund(**given), related)
        refund.save(force_insert=True)
        return refund
    # The row's values as save() would write them (the defaults; created and updated now), and
    # the refund built once, as read back: building it first and preparing each of its fields
    # for the statement cost more than the statement.
    now = timezone.now()
    values = {field.attname: field.get_default() for field in _INSERT_FIELDS} | given
    values["created_at"] = values["updated_at"] = now
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, [values[field.attname] for field in _INSERT_FIELDS])
        row = cursor.fetchone()
    if row is None:
        return None
    values["id"] = row[0]
    return _with_rows(Refund.from_db(connection.alias, _COLUMNS, [values[name] for name in _COLUMNS]), related)


def _with_rows(refund: Refund, related: dict) -> Refund:
    """``refund`` with the rows it was made with attached (not read again when used)."""
    for name, row in related.items():
        Refund._meta.get_field(name).set_cached_value(refund, row)
    return refund


def refund_status_can_apply(*, current: str, requested: str) -> bool:
    """Whether a refund in ``current`` would move to ``requested`` (both Refund.Status):
    False for a repeat and for anything asked of a final (APPROVED, REJECTED) refund."""
    return requested in ALLOWED.get(current, set())


def refund_status_apply(*, refund_id: int, status: str, source: str, actor: User | None = None) -> Refund:
    """Move a refund to ``status`` (a Refund.Status); APPROVED applies it to the plan.

    Idempotent: a terminal refund never changes; a repeated or out-of-order status is
    recorded and ignored. Raises RefundExceedsPlan when approving would refund more than
    the plan's total (the refund is left as it was).
    """
    refund, _ = refund_status_change(refund_id=refund_id, status=status, source=source, actor=actor)
    return refund


def refund_status_change(*, refund_id: int, status: str, source: str, actor: User | None = None) -> tuple[Refund, bool]:
    """``refund_status_apply`` that also says whether the status was applied: ``(refund, applied)``,
    the refund as it is after the call. ``applied`` is False when the call was a repeat or
    asked something of a final refund (recorded as an event, nothing else changed).

    Raises RefundExceedsPlan, as ``refund_status_apply``.
    """
    refund, applied = _status_apply(refund_id=refund_id, status=status, source=source, actor=actor)
    if refund.payout_status == Refund.PayoutStatus.PENDING:
        # Also for a repeat: a payout an earlier call left unfinished (the gateway failed to
        # answer) is tried again, under the same gateway key, so never paid twice.
        refund = refund_payout(refund_id=refund.pk)
    return refund, applied


def refund_decide(*, refund_id: int, status: str, actor: User) -> Refund:
    """An operator approves or rejects a refund (``status`` APPROVED or REJECTED).

    Unlike a merchant's webhook, deciding a refund that is already decided is refused, even
    the same decision again: the operator must learn that theirs changed nothing. The state
    is checked under the plan's lock, so of two operators deciding at once the second sees
    the first one's decision. The refused call is recorded as an event like any other.

    Raises RefundAlreadyDecided (409), RefundExceedsPlan (422).
    """
    refund, applied = refund_status_change(refund_id=refund_id, status=status, source="operator", actor=actor)
    if not applied and refund.is_terminal:
        # Decided under the lock in _status_apply; raised once its event is committed.
        raise RefundAlreadyDecided(
            f"Refund {refund.transaction_id} is already {refund.status}; a final decision never changes.",
            refund_status=refund.status,
        )
    return refund


@transaction.atomic
def _status_apply(*, refund_id: int, status: str, source: str, actor: User | None) -> tuple[Refund, bool]:
    plan = plan_get_for_update(refunds__id=refund_id)
    refund = Refund.objects.get(pk=refund_id)  # re-read under the plan's lock
    if refund.status == status:
        RefundEvent.objects.create(refund=refund, requested_status=status, source=source, outcome="duplicate")
        return refund, False
    if not refund_status_can_apply(current=refund.status, requested=status):
        logger.warning("Refund %s: %s -> %s ignored", refund.pk, refund.status, status)
        RefundEvent.objects.create(
            refund=refund, requested_status=status, source=source, outcome=f"ignored: from {refund.status}"
        )
        return refund, False
    if status == Refund.Status.APPROVED:
        _apply_to_plan(refund, plan)
    refund.status = status
    if refund.is_terminal:
        refund.decided_at, refund.decided_by = timezone.now(), actor
        event_type = Event.Type.REFUND_APPROVED if status == Refund.Status.APPROVED else Event.Type.REFUND_REJECTED
        event_record(merchant_id=refund.merchant_id, type=event_type, data=_refund_event_data(refund))
    refund.save()
    RefundEvent.objects.create(refund=refund, requested_status=status, source=source, outcome="applied")
    return refund, True


def _refund_event_data(refund: Refund) -> dict:
    return {
        "refund_id": refund.transaction_id,
        "plan_id": refund.plan_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "status": refund.status,
        "applied_amount": refund.applied_amount,
        "payout_amount": refund.payout_amount,
        "payout_method": refund.payout_method,
        "merchant_reference": refund.merchant_reference,
    }


def _apply_to_plan(refund: Refund, plan: Plan) -> None:
    """Lower unpaid installments from the last one backwards; what is left is paid back. With
    ``BNPL_REFUND_RETURNS_FEE`` the refund's share of the merchant's fee goes back to it too."""
    # Against what is already approved: a pending one may still be rejected.
    approved = Refund.objects.filter(plan=plan, status=Refund.Status.APPROVED).exclude(pk=refund.pk)
    before = approved.aggregate(amount=Sum("amount"), fee=Sum("merchant_fee_returned"))
    if refund.amount > plan.total_amount - (before["amount"] or ZERO):
        raise RefundExceedsPlan()
    refund.applied_amount = installments_cancel_by_refund(plan=plan, amount=refund.amount)
    left = refund.amount - refund.applied_amount
    refund.payout_amount = left
    refund.payout_status = Refund.PayoutStatus.PENDING if left > 0 else Refund.PayoutStatus.NONE
    fee_back = ZERO
    if settings.BNPL_REFUND_RETURNS_FEE and plan.merchant_fee:
        # A plan made before fees were (merchant_fee empty) was charged none: nothing to return.
        fee_back = merchant_fee_refunded(
            fee=plan.merchant_fee,
            returned=before["fee"] or ZERO,
            total=plan.total_amount,
            amount=refund.amount,
            refunded=(before["amount"] or ZERO) + refund.amount,
        )
    refund.merchant_fee_returned = fee_back
    ledger_post(
        kind=JournalEntry.Kind.REFUND_APPLIED,
        plan_id=plan.pk,
        memo=f"Refund {refund.transaction_id} applied to unpaid installments",
        legs=[
            Leg(MERCHANT_PAYABLE, refund.applied_amount, plan.currency, plan.pk, plan.merchant_id),
            Leg(CUSTOMER_RECEIVABLE, -refund.applied_amount, plan.currency, plan.pk, plan.customer_id),
            # The fee's share back to the merchant: fee income lowered, the payable raised.
            Leg(MERCHANT_FEE_INCOME, fee_back, plan.currency, plan.pk, plan.merchant_id),
            Leg(MERCHANT_PAYABLE, -fee_back, plan.currency, plan.pk, plan.merchant_id),
        ],
    )
    if left > 0 and refund.payout_method == Refund.PayoutMethod.CREDIT:
        # Kept for the customer instead of going back to the card: no gateway call at all.
        refund.payout_status = Refund.PayoutStatus.CREDITED
        ledger_post(
            kind=JournalEntry.Kind.REFUND_CREDIT,
            plan_id=plan.pk,
            memo=f"Refund {refund.transaction_id} credited to the customer's balance",
            legs=[
                Leg(MERCHANT_PAYABLE, left, plan.currency, plan.pk, plan.merchant_id),
                Leg(CUSTOMER_CREDIT, -left, plan.currency, plan.pk, plan.customer_id),
            ],
        )
    plan_close_if_settled(plan)
    customer_restore_if_clear(customer_id=plan.customer_id)


def refund_payout(*, refund_id: int) -> Refund:
    """Pay an approved refund's remainder back to the customer's card, once.

    The gateway is called with no lock held and a key made from the refund, so a repeated
    call never pays twice; the ledger entry is posted when the gateway says it is paid.
    """
    refund = Refund.objects.select_related("customer").get(pk=refund_id)
    if refund.payout_status != Refund.PayoutStatus.PENDING:
        return refund
    result = get_gateway().refund(
        amount=refund.payout_amount,
        currency=refund.currency,
        card_token=refund.customer.card_token,
        idempotency_key=f"refund_payout_{refund.pk}",
    )
    with transaction.atomic():
        plan = plan_get_for_update(pk=refund.plan_id)
        refund = Refund.objects.get(pk=refund_id)
        if refund.payout_status != Refund.PayoutStatus.PENDING:
            return refund
        refund.payout_reference = result.reference
        if not result.succeeded:
            refund.payout_status = Refund.PayoutStatus.FAILED
            refund.save(update_fields=["payout_status", "payout_reference", "updated_at"])
            logger.error("Refund %s payout failed: %s", refund.pk, result.decline_code)
            return refund
        refund.payout_status = Refund.PayoutStatus.PAID
        refund.save(update_fields=["payout_status", "payout_reference", "updated_at"])
        ledger_post(
            kind=JournalEntry.Kind.REFUND_PAYOUT,
            plan_id=plan.pk,
            memo=f"Refund {refund.transaction_id} paid back to the customer",
            legs=[
                Leg(MERCHANT_PAYABLE, refund.payout_amount, plan.currency, plan.pk, plan.merchant_id),
                Leg(GATEWAY_CLEARING, -refund.payout_amount, plan.currency, plan.pk, plan.customer_id),
            ],
        )
    return refund
