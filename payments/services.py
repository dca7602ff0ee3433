"""Paying installments: reserve under the plan's lock, charge with no lock held, apply.

1. A short transaction locks the plan, checks what is payable, and records the payment
   as PENDING with its allocations; pending allocations count as paid for any payment that
   comes after, so two payments can never take the same cents.
2. The gateway is called with the payment's own key, outside any transaction.
3. A short transaction locks the plan again and applies the result: FAILED changes no
   balance; SUCCEEDED pays the installments and fees, posts the ledger entry, completes the
   plan when nothing is left, and sets the customer back to NORMAL when nothing is overdue.
"""

import logging
import uuid
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import User
from bnpl.models import Installment, LateFee, Plan
from bnpl.selectors import plan_get_for_update
from bnpl.services import customer_restore_if_clear, plan_close_if_settled
from config.money import ZERO
from config.problems import DomainError
from payments.gateways import get_gateway
from payments.ledger import CUSTOMER_RECEIVABLE, GATEWAY_CLEARING, Leg, ledger_post
from payments.models import JournalEntry, Payment, PaymentAllocation

logger = logging.getLogger(__name__)

OPEN = (Installment.Status.UPCOMING, Installment.Status.OVERDUE)


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


class NoPaymentMethod(DomainError):
    status_code = 422
    code = "payment_method_missing"
    title = "No card on file"
    default_detail = "The customer has no card on file to charge."


def payment_reservations(*, installment_ids=(), fee_ids=()) -> tuple[dict[int, Decimal], dict[int, Decimal]]:
    """Amounts that PENDING payments have already claimed, per installment and per fee."""
    pending = PaymentAllocation.objects.filter(payment__status=Payment.Status.PENDING).filter(
        Q(installment_id__in=list(installment_ids)) | Q(late_fee_id__in=list(fee_ids))
    )
    by_installment: dict[int, Decimal] = {}
    by_fee: dict[int, Decimal] = {}
    for row in pending.values("installment_id", "late_fee_id").annotate(total=Sum("amount")):
        if row["installment_id"]:
            by_installment[row["installment_id"]] = row["total"]
        else:
            by_fee[row["late_fee_id"]] = row["total"]
    return by_installment, by_fee


def _payable_targets(plan: Plan, installment_id: int | None) -> list[tuple[str, object, Decimal]]:
    """``[(kind, row, still payable), ...]`` in allocation order: overdue installments oldest
    first, then late fees due, then upcoming installments (one installment when named)."""
    installments = list(plan.installments.filter(status__in=OPEN).order_by("due_date", "sequence"))
    if installment_id is not None:
        installments = [i for i in installments if i.pk == installment_id]
        fees = []
    else:
        fees = list(plan.late_fees.filter(status=LateFee.Status.DUE).order_by("id"))
    held_i, held_f = payment_reservations(installment_ids=[i.pk for i in installments], fee_ids=[f.pk for f in fees])
    overdue = [i for i in installments if i.status == Installment.Status.OVERDUE]
    upcoming = [i for i in installments if i.status == Installment.Status.UPCOMING]
    targets = [("installment", i, i.amount_remaining - held_i.get(i.pk, ZERO)) for i in overdue]
    targets += [("fee", f, f.amount_remaining - held_f.get(f.pk, ZERO)) for f in fees]
    targets += [("installment", i, i.amount_remaining - held_i.get(i.pk, ZERO)) for i in upcoming]
    return [t for t in targets if t[2] > 0]


@transaction.atomic
def _reserve(*, plan_id: int, installment_id: int | None, amount: Decimal | None, payer: User) -> Payment:
    plan = plan_get_for_update(pk=plan_id)
    if plan.status != Plan.Status.ACTIVE:
        raise PlanNotPayable()
    if installment_id is not None:
        status = Installment.objects.filter(pk=installment_id, plan=plan).values_list("status", flat=True).first()
        if status not in OPEN:
            raise NothingToPay("This installment is already paid or cancelled.")
    targets = _payable_targets(plan, installment_id)
    payable = sum((left for _, _, left in targets), ZERO)
    if payable <= 0:
        raise NothingToPay()
    amount = payable if amount is None else amount
    if amount > payable:
        raise Overpayment(f"At most {payable} {plan.currency} can be paid here now.", payable=str(payable))
    customer = User.objects.get(pk=plan.customer_id)
    if not customer.card_token:
        raise NoPaymentMethod()
    payment = Payment.objects.create(
        plan=plan,
        customer=customer,
        created_by=payer,
        amount=amount,
        currency=plan.currency,
        gateway_key=f"pay_{uuid.uuid4().hex}",
    )
    allocations, left = [], amount
    for kind, row, payable_here in targets:
        if left <= 0:
            break
        part = min(left, payable_here)
        left -= part
        allocations.append(
            PaymentAllocation(
                payment=payment,
                installment=row if kind == "installment" else None,
                late_fee=row if kind == "fee" else None,
                amount=part,
            )
        )
    PaymentAllocation.objects.bulk_create(allocations)
    return payment


@transaction.atomic
def _settle(*, payment_id: int, succeeded: bool, decline_code: str, reference: str) -> Payment:
    payment = Payment.objects.get(pk=payment_id)
    plan = plan_get_for_update(pk=payment.plan_id)
    payment.refresh_from_db()  # re-read under the lock
    if payment.status != Payment.Status.PENDING:
        return payment
    now = timezone.now()
    payment.gateway_reference = reference
    payment.completed_at = now
    if not succeeded:
        payment.status = Payment.Status.FAILED
        payment.decline_code = decline_code or "declined"
        payment.save(update_fields=["status", "decline_code", "gateway_reference", "completed_at"])
        return payment

    for allocation in payment.allocations.select_related("installment", "late_fee"):
        target = allocation.installment or allocation.late_fee
        target.amount_paid += allocation.amount
        if allocation.installment and target.amount_paid == target.amount_due:
            target.status, target.paid_at = Installment.Status.PAID, now
        if allocation.late_fee and target.amount_paid == target.amount:
            target.status = LateFee.Status.PAID
        target.save()
    payment.status = Payment.Status.SUCCEEDED
    payment.save(update_fields=["status", "gateway_reference", "completed_at"])
    ledger_post(
        kind=JournalEntry.Kind.PAYMENT,
        plan_id=plan.pk,
        memo=f"Payment {payment.pk}",
        legs=[
            Leg(GATEWAY_CLEARING, payment.amount, payment.currency, plan.pk, payment.customer_id),
            Leg(CUSTOMER_RECEIVABLE, -payment.amount, payment.currency, plan.pk, payment.customer_id),
        ],
    )
    plan_close_if_settled(plan)
    customer_restore_if_clear(customer_id=payment.customer_id)
    return payment


def payment_collect(*, plan_id: int, payer: User, amount: Decimal | None = None, installment_id: int | None = None):
    """Charge the customer's card for ``amount`` (everything payable when None) of a plan,
    or of one installment; returns the SUCCEEDED payment.

    Raises PlanNotPayable, NothingToPay (409), Overpayment, NoPaymentMethod (422),
    PaymentDeclined (402, the payment is recorded as FAILED and no balance changes).
    """
    payment = _reserve(plan_id=plan_id, installment_id=installment_id, amount=amount, payer=payer)
    customer = User.objects.get(pk=payment.customer_id)
    try:
        result = get_gateway().charge(
            amount=payment.amount,
            currency=payment.currency,
            card_token=customer.card_token,
            idempotency_key=payment.gateway_key,
        )
    except Exception as exc:
        # The gateway's answer is unknown: the payment stays PENDING (its reservation too) for
        # reconciliation with the gateway by its key, rather than risk charging twice.
        logger.exception("Gateway call failed for payment %s", payment.pk)
        raise GatewayUnavailable(payment_id=payment.pk) from exc
    payment = _settle(
        payment_id=payment.pk, succeeded=result.succeeded, decline_code=result.decline_code, reference=result.reference
    )
    if payment.status == Payment.Status.FAILED:
        raise PaymentDeclined(
            f"The card was declined ({payment.decline_code}).", decline_code=payment.decline_code, payment_id=payment.pk
        )
    return payment
