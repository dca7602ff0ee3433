"""Paying installments: reserve under the plan's lock, charge with no lock held, apply.

1. A short transaction locks the plan, checks what is payable, and records the payment
   as PENDING with its allocations and the part its customer's credit balance covers
   (credit is spent first; the card pays the rest); pending allocations count as paid for any payment that
   comes after, so two payments can never take the same cents.
2. The gateway is called with the payment's own key, outside any transaction.
3. A short transaction locks the plan again and applies the result: FAILED changes no
   balance; SUCCEEDED pays the installments and fees, posts the ledger entry, completes the
   plan when nothing is left, and sets the customer back to NORMAL when nothing is overdue.
"""

import logging
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from bnpl.event_data import installment_event_data
from bnpl.models import Plan
from bnpl.selectors import plan_get_for_update
from bnpl.services.installments import (
    Part,
    customer_restore_if_clear,
    parts_reserve,
    payable_parts,
    plan_close_if_settled,
    reservation_release,
    reservation_settle,
)
from core.db import postgresql, row_save
from core.money import ZERO
from core.problems import DomainError
from events.models import Event, Notification
from events.notifications import notifications_queue
from events.services import event_record
from ledger.accounts import CUSTOMER_CREDIT, CUSTOMER_RECEIVABLE, GATEWAY_CLEARING
from ledger.models import JournalEntry
from ledger.selectors import credit_balances
from ledger.services import Leg, ledger_post
from payments.gateways import FAILED, SUCCEEDED, ChargeResult, get_gateway
from payments.models import Payment, PaymentAllocation
from payments.selectors import allocations_with_rows, payer_locked, payment_under_key, payment_with_customer

logger = logging.getLogger(__name__)


class PaymentDeclined(DomainError):
    status_code = 402
    code = "payment_declined"
    title = "Payment declined"
    default_detail = "The card was declined."


class Overpayment(DomainError):
    status_code = 422
    code = "overpayment"
    title = "Amount above what is owed"
    default_detail = "The amount is more than what is left to pay."


class NothingToPay(DomainError):
    status_code = 409
    code = "nothing_to_pay"
    title = "Nothing to pay"
    default_detail = "Nothing is left to pay here (paid, cancelled, or being paid by another payment)."


class PlanNotPayable(DomainError):
    status_code = 409
    code = "plan_not_payable"
    title = "Plan cannot be paid"
    default_detail = "Only an active plan can be paid."


class GatewayUnavailable(DomainError):
    status_code = 502
    code = "gateway_unavailable"
    title = "Payment gateway unavailable"
    default_detail = "The payment gateway did not answer; the payment is pending and will not be charged twice."
    replay_on_retry = True  # the payment exists: a retry with the same key must not make another


class NoPaymentMethod(DomainError):
    status_code = 422
    code = "payment_method_missing"
    title = "No card on file"
    default_detail = "The customer has no card on file to charge."


def credit_available(*, customer_id: int, currency: str) -> Decimal:
    """The customer's credit balance in ``currency`` less what PENDING payments have claimed."""
    balance = credit_balances(customer_id=customer_id).get(currency, ZERO)
    if balance <= 0:
        return ZERO  # the usual case: nothing held, nothing to subtract
    held = Payment.objects.filter(customer_id=customer_id, currency=currency, status=Payment.Status.PENDING).aggregate(
        total=Sum("credit_amount")
    )["total"]
    return balance - (held or ZERO)


@transaction.atomic
def _reserve(
    *,
    plan_id: int,
    installment_id: int | None,
    amount: Decimal | None,
    payer: User,
    gateway_key: str | None,
    source: str,
    attempt: int | None,
    gateway_key_unused: bool = False,
) -> Payment:
    plan = plan_get_for_update(pk=plan_id)
    if gateway_key and not gateway_key_unused:
        # A derived key (autopay): the payment made with it before, if any, is the answer.
        existing = payment_under_key(gateway_key=gateway_key)
        if existing is not None:
            existing.found_under_key = True
            return existing
    if plan.status != Plan.Status.ACTIVE:
        raise PlanNotPayable()
    parts = payable_parts(plan, installment_id)
    if installment_id is not None and not parts:
        raise NothingToPay("This installment is already paid or cancelled, or being paid.")
    payable = sum((part.amount for part in parts), ZERO)
    if payable <= 0:
        raise NothingToPay()
    amount = payable if amount is None else amount
    if amount > payable:
        raise Overpayment(f"At most {payable} {plan.currency} can be paid here now.", payable=str(payable))
    # Locked after the plan (the lock order): two payments on two plans of one customer
    # must not spend the same credit.
    customer = payer_locked(customer_id=plan.customer_id)
    credit = min(max(credit_available(customer_id=customer.pk, currency=plan.currency), ZERO), amount)
    if credit < amount and not customer.card_token:
        raise NoPaymentMethod()
    payment = _payment_insert(
        plan_id=plan.pk,
        customer_id=customer.pk,
        created_by_id=payer.pk,
        amount=amount,
        credit_amount=credit,
        currency=plan.currency,
        source=source,
        attempt=attempt,
        card_token=customer.card_token if credit < amount else "",
        gateway_key=gateway_key or f"pay_{uuid.uuid4().hex}",
    )
    _allocations_insert(payment.pk, parts_reserve(parts, amount))
    return payment


# A PENDING payment and its allocations, written out on PostgreSQL: the ORM took longer
# composing these inserts than the database took to run them. The ORM path is SQLite's;
# payments/tests/test_hand_written_sql.py holds the two equal.
_PAYMENT_FIELDS = [field for field in Payment._meta.concrete_fields if not field.primary_key]
_PAYMENT_INSERT = "INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING id".format(  # noqa: S608  # nosec B608
    table=Payment._meta.db_table,
    columns=", ".join(field.column for field in _PAYMENT_FIELDS),
    values=", ".join(["%s"] * len(_PAYMENT_FIELDS)),
)
_ALLOCATIONS_INSERT = (
    f"INSERT INTO {PaymentAllocation._meta.db_table} (payment_id, installment_id, late_fee_id, amount, credited)"  # noqa: S608  # nosec B608
    " SELECT %s, target.installment, target.fee, target.amount, 0"
    " FROM UNNEST(%s::bigint[], %s::bigint[], %s::numeric[]) WITH ORDINALITY AS target(installment, fee, amount, n)"
    " ORDER BY target.n"
)


def _payment_insert(**values) -> Payment:
    """A new PENDING payment of ``values`` (its other fields at their defaults)."""
    if not postgresql():
        return Payment.objects.create(**values)
    row = {
        "excess_credited": ZERO,
        "status": Payment.Status.PENDING,
        "decline_code": "",
        "gateway_reference": "",
        "created_at": timezone.now(),
        "completed_at": None,
        **values,
    }
    with connection.cursor() as cursor:
        cursor.execute(_PAYMENT_INSERT, [row[field.attname] for field in _PAYMENT_FIELDS])
        (row["id"],) = cursor.fetchone()
    fields = Payment._meta.concrete_fields
    return Payment.from_db(connection.alias, [field.attname for field in fields], [row[f.attname] for f in fields])


def _allocations_insert(payment_id: int, parts: list[Part]) -> None:
    """The payment's allocations: what it reserved of each part, in order."""
    if not postgresql():
        PaymentAllocation.objects.bulk_create(
            PaymentAllocation(
                payment_id=payment_id, installment=part.installment, late_fee=part.fee, amount=part.amount
            )
            for part in parts
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _ALLOCATIONS_INSERT,
            [
                payment_id,
                [part.installment.pk if part.installment is not None else None for part in parts],
                [part.fee.pk if part.fee is not None else None for part in parts],
                [part.amount for part in parts],
            ],
        )


@transaction.atomic
def _settle(*, payment_id: int, plan_id: int, result: ChargeResult) -> Payment:
    plan = plan_get_for_update(pk=plan_id)
    # Read under the plan's lock, with what the answer shows (the customer's public id).
    payment = payment_with_customer(payment_id=payment_id)
    if payment.credit_amount:
        # Spending credit: the customer's row, as in _reserve, so that no reservation reads
        # the balance and the claims halfway through this change.
        User.objects.select_for_update(no_key=True).filter(pk=payment.customer_id).values_list("pk").get()
    if payment.status != Payment.Status.PENDING:
        return payment
    now = timezone.now()
    payment.gateway_reference = result.reference
    payment.completed_at = now
    if result.succeeded and result.captured is not None and result.captured < payment.card_amount:
        # Less than asked cannot pay what was allocated: refused, and loud (the gateway holds
        # money this payment does not book; an operator must refund or re-book it).
        logger.error("Payment %s: the gateway captured %s of %s", payment.pk, result.captured, payment.card_amount)
        result = ChargeResult(FAILED, "partial_capture", result.reference)
    allocations = allocations_with_rows(payment_id=payment.pk)
    payment.settled_allocations = allocations  # the answer lists them without reading them again
    parts = [Part(allocation.installment, allocation.late_fee, allocation.amount) for allocation in allocations]
    if not result.succeeded:
        reservation_release(parts=parts)
        payment.status = Payment.Status.FAILED
        payment.decline_code = result.decline_code or "declined"
        row_save(payment, ["status", "decline_code", "gateway_reference", "completed_at"])
        _tell_failed(payment, plan)
        return payment

    settled = reservation_settle(parts=parts, now=now)
    for allocation, applied in zip(allocations, settled.applied, strict=True):
        if applied < allocation.amount:  # a refund or a waiver lowered it meanwhile
            allocation.credited = allocation.amount - applied
            row_save(allocation, ["credited"])
    surplus = settled.surplus(parts)
    captured = payment.card_amount if result.captured is None else result.captured
    payment.excess_credited = max(captured - payment.card_amount, ZERO)
    payment.status = Payment.Status.SUCCEEDED
    row_save(payment, ["status", "gateway_reference", "completed_at", "excess_credited"])
    customer_id, currency = payment.customer_id, payment.currency
    ledger_post(
        kind=JournalEntry.Kind.PAYMENT,
        plan_id=plan.pk,
        memo=f"Payment {payment.pk}",
        legs=[
            Leg(GATEWAY_CLEARING, payment.card_amount + payment.excess_credited, currency, plan.pk, customer_id),
            Leg(CUSTOMER_CREDIT, payment.credit_amount, currency, plan.pk, customer_id),  # credit spent
            Leg(CUSTOMER_RECEIVABLE, -settled.applied_total, currency, plan.pk, customer_id),
            # Kept for the customer: captured beyond the card part, and what was no longer owed.
            Leg(CUSTOMER_CREDIT, -(payment.excess_credited + surplus), currency, plan.pk, customer_id),
        ],
    )
    for installment in settled.paid_installments:
        event_record(
            merchant_id=plan.merchant_id,
            type=Event.Type.INSTALLMENT_PAID,
            data=installment_event_data(installment, plan) | {"payment_id": payment.pk},
        )
    # Only a row paid in full can close the plan, and only an installment paid in full can
    # end the customer's debt (whatever status was read: the sweep marks without the plan's
    # lock, so an installment read UPCOMING may be OVERDUE by now). Else both stand as they are.
    if settled.paid_any:
        plan_close_if_settled(plan)
    if settled.paid_installments:
        customer_restore_if_clear(customer_id=customer_id)
    notifications_queue(
        items=[
            (
                customer_id,
                Notification.Kind.PAYMENT_RECEIPT,
                f"payment:{payment.pk}",
                f"Payment received: {payment.amount} {currency} for plan #{plan.pk}",
                f"Thank you. We received {payment.amount} {currency} for plan #{plan.pk}"
                + (f", {payment.credit_amount} of it from your credit balance" if payment.credit_amount else "")
                + (
                    f"; {payment.excess_credited + surplus} was added to your credit balance"
                    if payment.excess_credited + surplus
                    else ""
                )
                + ".",
            )
        ]
    )
    return payment


def _tell_failed(payment: Payment, plan: Plan) -> None:
    """A failed payment: the merchant's event, and the customer's notice when autopay failed."""
    event_record(
        merchant_id=plan.merchant_id,
        type=Event.Type.PAYMENT_FAILED,
        data={
            "payment_id": payment.pk,
            "plan_id": plan.pk,
            "amount": payment.amount,
            "currency": payment.currency,
            "decline_code": payment.decline_code,
            "source": payment.source,
        },
    )
    if payment.source == Payment.Source.AUTOPAY:
        notifications_queue(
            items=[
                (
                    payment.customer_id,
                    Notification.Kind.AUTOPAY_FAILED,
                    f"payment:{payment.pk}",
                    f"We could not charge {payment.amount} {payment.currency} for plan #{plan.pk}",
                    f"Your card was declined ({payment.decline_code}). "
                    + (
                        "We will try again; you can also pay in the app now"
                        if (payment.attempt or 0) <= len(settings.BNPL_AUTOPAY_RETRY_DAYS)
                        else "This was the last automatic attempt: please pay in the app"
                    )
                    + " to keep your account in good standing.",
                )
            ]
        )


def payment_attempt(
    *,
    plan_id: int,
    payer: User,
    amount: Decimal | None = None,
    installment_id: int | None = None,
    gateway_key: str | None = None,
    source: str = Payment.Source.MANUAL,
    attempt: int | None = None,
    gateway_key_unused: bool = False,
) -> Payment:
    """Collect ``amount`` (everything payable when None) of a plan, or of one installment:
    credit balance first, then the card. Returns the payment, SUCCEEDED or FAILED.

    With a ``gateway_key`` (derived by the caller, e.g. from installment and day) the same
    key never makes a second payment: the first one is returned as it is (a PENDING one is
    left to the caller that made it, or to ``payments_reconcile``); ``gateway_key_unused``
    says no payment can have it yet, so none is looked for. Raises PlanNotPayable,
    NothingToPay (409), Overpayment, NoPaymentMethod (422), GatewayUnavailable (502, the
    payment stays PENDING).
    """
    payment = _reserve(
        plan_id=plan_id,
        installment_id=installment_id,
        amount=amount,
        payer=payer,
        gateway_key=gateway_key,
        source=source,
        attempt=attempt,
        gateway_key_unused=gateway_key_unused,
    )
    if payment.status != Payment.Status.PENDING or getattr(payment, "found_under_key", False):
        # Finished, or still in the hands of whoever made it: a second gateway call with the
        # same key while the first is in flight is not ours to make (reconciliation finishes
        # one that was abandoned).
        return payment
    return _charge(payment)


def payment_resume(*, payment_id: int) -> Payment:
    """Charge a PENDING payment's card part with its own key and apply the answer.

    Safe to repeat, and safe while another process does the same: the gateway charges a
    key once, and the answer is applied once (re-checked under the plan's lock).
    """
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != Payment.Status.PENDING:
        return payment
    return _charge(payment)


def _charge(payment: Payment) -> Payment:
    """Charge a PENDING payment (as read or just reserved) and apply the answer."""
    if payment.card_amount == 0:
        result = ChargeResult(SUCCEEDED, "", "credit_balance")
    else:
        try:
            result = get_gateway().charge(
                amount=payment.card_amount,
                currency=payment.currency,
                card_token=payment.card_token,  # the card this payment was made with, not today's
                idempotency_key=payment.gateway_key,
            )
        except Exception as exc:
            # The gateway's answer is unknown: the payment stays PENDING (its reservation too)
            # until it is resumed with the same key, rather than risk charging twice.
            logger.exception("Gateway call failed for payment %s", payment.pk)
            raise GatewayUnavailable(payment_id=payment.pk) from exc
    return _settle(payment_id=payment.pk, plan_id=payment.plan_id, result=result)


def payment_collect(
    *,
    plan_id: int,
    payer: User,
    amount: Decimal | None = None,
    installment_id: int | None = None,
    gateway_key: str | None = None,
    gateway_key_unused: bool = False,
):
    """Charge the customer for ``amount`` (everything payable when None) of a plan, or of
    one installment; returns the SUCCEEDED payment. With a ``gateway_key`` (a request's
    Idempotency-Key claim) the payment already made under it is the answer, and one an
    earlier run left PENDING is finished (charged with its key, so at most once);
    ``gateway_key_unused`` (a claim this request made) says there is none to look for.

    Raises what ``payment_attempt`` raises, and PaymentDeclined (402, the payment is
    recorded as FAILED and no balance changes).
    """
    payment = payment_attempt(
        plan_id=plan_id,
        payer=payer,
        amount=amount,
        installment_id=installment_id,
        gateway_key=gateway_key,
        gateway_key_unused=gateway_key_unused,
    )
    if payment.status == Payment.Status.PENDING:
        payment = payment_resume(payment_id=payment.pk)
    if payment.status == Payment.Status.FAILED:
        raise PaymentDeclined(
            f"The card was declined ({payment.decline_code}).", decline_code=payment.decline_code, payment_id=payment.pk
        )
    return payment


def payments_reconcile(*, older_than_minutes: int = 5, limit: int = 500) -> int:
    """Resume PENDING payments left by a crash or a gateway timeout (same key, so never
    charged twice); returns how many were finished."""
    cutoff = timezone.now() - timedelta(minutes=older_than_minutes)
    finished = 0
    for payment_id in Payment.objects.filter(status=Payment.Status.PENDING, created_at__lt=cutoff).values_list(
        "id", flat=True
    )[:limit]:
        try:
            payment_resume(payment_id=payment_id)
            finished += 1
        except Exception:  # one payment's trouble must not stop the others
            logger.exception("Payment %s is still pending after reconciliation", payment_id)
    return finished
