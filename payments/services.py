"""Paying installments: reserve under the plan's lock, charge with no lock held, apply.

1. A short transaction locks the plan, checks what is payable, and records the payment
   as PENDING with its allocations and the part its customer's credit balance covers
   (credit is spent first; the card pays the rest); pending allocations count as paid for any payment that
   comes after, so two payments can never take the same cents.
2. The gateway is called with the payment's own key, outside any transaction.
3. A short transaction locks the plan again and applies the result: FAILED changes no
   balance; SUCCEEDED pays the installments and fees, posts the ledger entry, completes the
   plan when nothing is left, and sets the customer back to NORMAL when nothing is overdue.

A payment is a batch of one: ``payments_attempt_many`` makes many (autopay's chunks) with
the same two transactions per slice of ``BATCH_SIZE`` charges, each under the locks of all
the slice's plans (in id order, then their customers'), so a slice sends a fixed number of
statements whatever its size. In a slice the payments are reserved and settled one after the
other in memory, each from what the ones before it left, and their rows are written
together at the end of each transaction.
"""

import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from bnpl.event_data import installment_event_data
from bnpl.models import Plan
from bnpl.selectors import plans_get_for_update
from bnpl.services.installments import (
    Part,
    Payables,
    customers_restore_if_clear,
    parts_reserve,
    plans_close_if_settled,
    reservation_release,
    reservation_settle,
)
from core.db import RowSaves, postgresql
from core.money import ZERO
from core.problems import DomainError
from events.models import Event, Notification
from events.notifications import notifications_queue
from events.services import events_record_each
from ledger.accounts import CUSTOMER_CREDIT, CUSTOMER_RECEIVABLE, GATEWAY_CLEARING
from ledger.models import JournalEntry
from ledger.selectors import credit_balances_of
from ledger.services import Leg, ledger_post_many
from payments.gateways import FAILED, SUCCEEDED, ChargeResult, get_gateway
from payments.models import Payment, PaymentAllocation
from payments.selectors import allocations_with_rows_of, payers_locked, payments_under_keys, payments_with_customers

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


@dataclass(frozen=True)
class Charge:
    """One payment asked of ``payments_attempt_many``: ``payment_attempt``'s arguments, with
    the payer by id."""

    plan_id: int
    payer_id: int
    amount: Decimal | None = None
    installment_id: int | None = None
    gateway_key: str | None = None
    source: str = Payment.Source.MANUAL
    attempt: int | None = None
    gateway_key_unused: bool = False


def _credit_available(customer_ids) -> dict[tuple[int, str], Decimal]:
    """Each customer's credit balance per currency less what PENDING payments have claimed
    (only the balances above zero: a customer or currency not in it has none to spend)."""
    available = {
        (customer_id, currency): balance
        for customer_id, balances in credit_balances_of(customer_ids=customer_ids).items()
        for currency, balance in balances.items()
        if balance > 0
    }
    if available:  # the usual case is none held, and nothing to subtract
        held = (
            Payment.objects.filter(customer_id__in={key[0] for key in available}, status=Payment.Status.PENDING)
            .values_list("customer_id", "currency")
            .annotate(total=Sum("credit_amount"))
            .order_by()
        )
        for customer_id, currency, total in held:
            if (customer_id, currency) in available:
                available[customer_id, currency] -= total or ZERO
    return available


class _Reservations:
    """A batch's reservations, made one after the other under the locks of all its plans and
    customers, and written together: what each payment reserves is taken from what the ones
    before it left (rows and credit balances are shared in memory)."""

    def __init__(self, charges: list[Charge]) -> None:
        self.plans = plans_get_for_update(ids=[charge.plan_id for charge in charges])
        keys = {charge.gateway_key for charge in charges if charge.gateway_key and not charge.gateway_key_unused}
        self.keyed = payments_under_keys(gateway_keys=keys)
        active = {pk: plan for pk, plan in self.plans.items() if plan.status == Plan.Status.ACTIVE}
        whole = {charge.plan_id for charge in charges if charge.installment_id is None} & active.keys()
        self.payables = Payables(sorted(active), fees_of=sorted(whole))
        # Locked after the plans (the lock order): two payments on two plans of one customer
        # must not spend the same credit.
        customer_ids = {plan.customer_id for plan in active.values()}
        self.customers = payers_locked(customer_ids=customer_ids) if customer_ids else {}
        self.credit = _credit_available(self.customers) if self.customers else {}
        self.saves = RowSaves()
        self.rows: list[dict] = []  # the payments to insert, each with its "parts" taken
        self.made: set[str] = set()  # the keys of the payments made

    def reserve(self, charge: Charge) -> dict | Payment:
        """The payment ``charge`` makes (its row, written by ``write``), or the payment made
        with its key before. Raises what ``payment_attempt`` raises before any charge."""
        plan = self.plans.get(charge.plan_id)
        if plan is None:
            raise Plan.DoesNotExist(f"No plan {charge.plan_id}.")
        key = charge.gateway_key
        if key and not charge.gateway_key_unused:
            # A derived key (autopay): the payment made with it before, if any, is the answer.
            if key in self.keyed:
                existing = self.keyed[key]
                existing.found_under_key = True
                return existing
            if key in self.made:
                raise ValueError(f"The gateway key {key!r} is asked twice in one batch.")  # a caller's mistake
        if plan.status != Plan.Status.ACTIVE:
            raise PlanNotPayable()
        parts = self.payables.parts(plan, charge.installment_id)
        if charge.installment_id is not None and not parts:
            raise NothingToPay("This installment is already paid or cancelled, or being paid.")
        payable = sum((part.amount for part in parts), ZERO)
        if payable <= 0:
            raise NothingToPay()
        amount = payable if charge.amount is None else charge.amount
        if amount > payable:
            raise Overpayment(f"At most {payable} {plan.currency} can be paid here now.", payable=str(payable))
        customer = self.customers.get(plan.customer_id)
        if customer is None:
            raise User.DoesNotExist(f"No user {plan.customer_id}.")
        held = (customer.pk, plan.currency)
        credit = min(max(self.credit.get(held, ZERO), ZERO), amount)
        if credit < amount and not customer.card_token:
            raise NoPaymentMethod()
        if credit:
            self.credit[held] -= credit
        row = {
            "plan_id": plan.pk,
            "customer_id": customer.pk,
            "created_by_id": charge.payer_id,
            "amount": amount,
            "credit_amount": credit,
            "currency": plan.currency,
            "source": charge.source,
            "attempt": charge.attempt,
            "card_token": customer.card_token if credit < amount else "",
            "gateway_key": key or f"pay_{uuid.uuid4().hex}",
            "parts": parts_reserve(parts, amount, saves=self.saves),
        }
        self.rows.append(row)
        self.made.add(row["gateway_key"])
        return row

    def write(self) -> dict[str, Payment]:
        """Write the payments reserved, their allocations and the rows they reserved; the
        new payments by key."""
        payments = _payments_insert([{k: v for k, v in row.items() if k != "parts"} for row in self.rows])
        _allocations_insert([(payments[row["gateway_key"]].pk, part) for row in self.rows for part in row["parts"]])
        self.saves.save()
        return payments


@transaction.atomic
def _reserve_many(charges: list[Charge]) -> list[Payment | Exception]:
    """Reserve every charge in one transaction, under the locks of all their plans (then of
    their customers): each its PENDING payment, the payment made with its key before, or the
    error that refused it (nothing written for that one)."""
    reservations = _Reservations(charges)
    outcomes: list = []
    for charge in charges:
        try:
            outcomes.append(reservations.reserve(charge))
        except (DomainError, Plan.DoesNotExist, User.DoesNotExist) as exc:
            outcomes.append(exc)
    made = reservations.write()
    return [made[outcome["gateway_key"]] if isinstance(outcome, dict) else outcome for outcome in outcomes]


# Pending payments and their allocations, written out on PostgreSQL: the ORM took longer
# composing these inserts than the database took to run them. The ORM path is SQLite's;
# payments/tests/test_hand_written_sql.py holds the two equal.
_PAYMENT_FIELDS = [field for field in Payment._meta.concrete_fields if not field.primary_key]
_PAYMENTS_INSERT = (
    "INSERT INTO {table} ({columns}) SELECT {columns} FROM UNNEST({arrays}) WITH ORDINALITY AS r({columns}, n)"  # nosec B608
    " ORDER BY r.n RETURNING id, gateway_key"
)
_ALLOCATIONS_INSERT = (
    f"INSERT INTO {PaymentAllocation._meta.db_table} (payment_id, installment_id, late_fee_id, amount, credited)"  # noqa: S608  # nosec B608
    " SELECT target.payment, target.installment, target.fee, target.amount, 0"
    " FROM UNNEST(%s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[]) WITH ORDINALITY"
    " AS target(payment, installment, fee, amount, n) ORDER BY target.n"
)


_PAYMENT_INSERT = "INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING id, gateway_key".format(  # noqa: S608  # nosec B608
    table=Payment._meta.db_table,
    columns=", ".join(field.column for field in _PAYMENT_FIELDS),
    values=", ".join(["%s"] * len(_PAYMENT_FIELDS)),
)


@functools.cache
def _payments_insert_sql() -> str:
    """_PAYMENTS_INSERT for the payments' table: every column but the id, from arrays cast to its type."""
    return _PAYMENTS_INSERT.format(
        table=Payment._meta.db_table,
        columns=", ".join(field.column for field in _PAYMENT_FIELDS),
        arrays=", ".join(f"%s::{field.db_type(connection)}[]" for field in _PAYMENT_FIELDS),
    )


def _payments_insert(rows: list[dict]) -> dict[str, Payment]:
    """New PENDING payments of ``rows`` (their other fields at their defaults), by gateway key."""
    if not rows:
        return {}
    if not postgresql():
        return {row["gateway_key"]: Payment.objects.create(**row) for row in rows}
    now = timezone.now()
    rows = [
        {
            "excess_credited": ZERO,
            "status": Payment.Status.PENDING,
            "decline_code": "",
            "gateway_reference": "",
            "created_at": now,
            "completed_at": None,
            **row,
        }
        for row in rows
    ]
    with connection.cursor() as cursor:
        if len(rows) == 1:  # a manual payment: PostgreSQL runs this faster than arrays of one
            cursor.execute(_PAYMENT_INSERT, [rows[0][field.attname] for field in _PAYMENT_FIELDS])
        else:
            cursor.execute(_payments_insert_sql(), [[row[f.attname] for row in rows] for f in _PAYMENT_FIELDS])
        ids = {key: pk for pk, key in cursor.fetchall()}
    fields = Payment._meta.concrete_fields
    names = [field.attname for field in fields]
    payments = {}
    for row in rows:
        row["id"] = ids[row["gateway_key"]]
        payments[row["gateway_key"]] = Payment.from_db(connection.alias, names, [row[name] for name in names])
    return payments


def _allocations_insert(allocations: list[tuple[int, Part]]) -> None:
    """The payments' allocations ``(payment id, part)``: what each reserved of each part, in order."""
    if not allocations:
        return
    if not postgresql():
        PaymentAllocation.objects.bulk_create(
            PaymentAllocation(
                payment_id=payment_id, installment=part.installment, late_fee=part.fee, amount=part.amount
            )
            for payment_id, part in allocations
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _ALLOCATIONS_INSERT,
            [
                [payment_id for payment_id, _ in allocations],
                [part.installment.pk if part.installment is not None else None for _, part in allocations],
                [part.fee.pk if part.fee is not None else None for _, part in allocations],
                [part.amount for _, part in allocations],
            ],
        )


class _News:
    """What a batch's settled payments tell, written together once the rows are: ledger
    entries, merchants' events, customers' notifications, plans that may close, customers who
    may be clear of debt."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, str, list[Leg]]] = []
        self.events: list[tuple[int, str, dict]] = []
        self.notifications: list[tuple[int, str, str, str, str]] = []
        self.closing: dict[int, Plan] = {}
        self.clear: set[int] = set()

    def write(self) -> None:
        ledger_post_many(kind=JournalEntry.Kind.PAYMENT, entries=self.entries)
        events_record_each(events=self.events)
        # Only a row paid in full can close the plan, and only an installment paid in full can
        # end the customer's debt (whatever status was read: the sweep marks without the plan's
        # lock, so an installment read UPCOMING may be OVERDUE by now). Else both stand as they are.
        plans_close_if_settled(list(self.closing.values()))
        customers_restore_if_clear(customer_ids=self.clear)
        notifications_queue(items=self.notifications)


@transaction.atomic
def _settle_many(charged: list[tuple[Payment, ChargeResult]]) -> list[Payment]:
    """Apply the gateway's answers to PENDING payments in one transaction, under the locks of
    their plans (then of the customers whose credit they spend); each payment as it ends
    (one no longer PENDING is returned as it is)."""
    plans = plans_get_for_update(ids=[payment.plan_id for payment, _ in charged])
    # Read under the plans' locks, with what the answer shows (the customer's public id).
    payments = payments_with_customers(ids=[payment.pk for payment, _ in charged])
    spending = {payment.customer_id for payment in payments.values() if payment.credit_amount}
    if spending:
        # Spending credit: the customers' rows, as in _reserve_many, so that no reservation
        # reads the balance and the claims halfway through this change.
        payers_locked(customer_ids=spending)
    pending = [pk for pk, payment in payments.items() if payment.status == Payment.Status.PENDING]
    allocations = allocations_with_rows_of(payment_ids=pending) if pending else {}
    saves, news, now = RowSaves(), _News(), timezone.now()
    settled = []
    for given, result in charged:
        payment = payments[given.pk]
        if payment.status == Payment.Status.PENDING:
            _apply(payment, plans[payment.plan_id], allocations.get(payment.pk, []), result, now, saves, news)
        settled.append(payment)
    saves.save()
    news.write()
    return settled


def _apply(payment, plan, allocations, result: ChargeResult, now, saves: RowSaves, news: _News) -> None:
    """Apply ``result`` to the PENDING ``payment``: its rows into ``saves``, what it tells into ``news``."""
    payment.gateway_reference = result.reference
    payment.completed_at = now
    if result.succeeded and result.captured is not None and result.captured < payment.card_amount:
        # Less than asked cannot pay what was allocated: refused, and loud (the gateway holds
        # money this payment does not book; an operator must refund or re-book it).
        logger.error("Payment %s: the gateway captured %s of %s", payment.pk, result.captured, payment.card_amount)
        result = ChargeResult(FAILED, "partial_capture", result.reference)
    payment.settled_allocations = allocations  # the answer lists them without reading them again
    parts = [Part(allocation.installment, allocation.late_fee, allocation.amount) for allocation in allocations]
    if not result.succeeded:
        reservation_release(parts=parts, saves=saves)
        payment.status = Payment.Status.FAILED
        payment.decline_code = result.decline_code or "declined"
        saves.add(payment, ["status", "decline_code", "gateway_reference", "completed_at"])
        _tell_failed(payment, plan, news)
        return

    settled = reservation_settle(parts=parts, now=now, saves=saves)
    for allocation, applied in zip(allocations, settled.applied, strict=True):
        if applied < allocation.amount:  # a refund or a waiver lowered it meanwhile
            allocation.credited = allocation.amount - applied
            saves.add(allocation, ["credited"])
    surplus = settled.surplus(parts)
    captured = payment.card_amount if result.captured is None else result.captured
    payment.excess_credited = max(captured - payment.card_amount, ZERO)
    payment.status = Payment.Status.SUCCEEDED
    saves.add(payment, ["status", "gateway_reference", "completed_at", "excess_credited"])
    customer_id, currency = payment.customer_id, payment.currency
    legs = [
        Leg(GATEWAY_CLEARING, payment.card_amount + payment.excess_credited, currency, plan.pk, customer_id),
        Leg(CUSTOMER_CREDIT, payment.credit_amount, currency, plan.pk, customer_id),  # credit spent
        Leg(CUSTOMER_RECEIVABLE, -settled.applied_total, currency, plan.pk, customer_id),
        # Kept for the customer: captured beyond the card part, and what was no longer owed.
        Leg(CUSTOMER_CREDIT, -(payment.excess_credited + surplus), currency, plan.pk, customer_id),
    ]
    news.entries.append((plan.pk, f"Payment {payment.pk}", legs))
    for installment in settled.paid_installments:
        news.events.append(
            (
                plan.merchant_id,
                Event.Type.INSTALLMENT_PAID,
                installment_event_data(installment, plan) | {"payment_id": payment.pk},
            )
        )
    if settled.paid_any:
        news.closing[plan.pk] = plan
    if settled.paid_installments:
        news.clear.add(customer_id)
    news.notifications.append(
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
    )


def _tell_failed(payment: Payment, plan: Plan, news: _News) -> None:
    """A failed payment: the merchant's event, and the customer's notice when autopay failed."""
    news.events.append(
        (
            plan.merchant_id,
            Event.Type.PAYMENT_FAILED,
            {
                "payment_id": payment.pk,
                "plan_id": plan.pk,
                "amount": payment.amount,
                "currency": payment.currency,
                "decline_code": payment.decline_code,
                "source": payment.source,
            },
        )
    )
    if payment.source == Payment.Source.AUTOPAY:
        news.notifications.append(
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
        )


def payments_attempt_many(charges: list[Charge]) -> list[Payment | Exception]:
    """Make each charge as ``payment_attempt`` makes one, in a fixed number of statements per
    slice of ``BATCH_SIZE`` charges: a slice reserved together in one transaction, charged
    one by one with no lock held, applied together in one transaction, then the next one.
    Returns, in the order of ``charges``, each one's payment (SUCCEEDED, FAILED, or as found
    under its key) or the error that refused it (what ``payment_attempt`` raises); the
    others go on."""
    outcomes: list[Payment | Exception] = []
    for start in range(0, len(charges), BATCH_SIZE):
        outcomes += _attempt_slice(charges[start : start + BATCH_SIZE])
    return outcomes


# A batch is made in slices: a slow card network keeps a slice's installments reserved (and
# its payments PENDING) no longer than this many of its calls, a transaction locks no more
# than this many plans, and a crash leaves no more than this many charged payments to
# reconciliation.
BATCH_SIZE = 50


def _attempt_slice(charges: list[Charge]) -> list[Payment | Exception]:
    outcomes = _reserve_many(charges)
    charged = []
    for n, outcome in enumerate(outcomes):
        if not isinstance(outcome, Payment) or getattr(outcome, "found_under_key", False):
            # Refused, or still in the hands of whoever made it: a second gateway call with
            # the same key while the first is in flight is not ours to make (reconciliation
            # finishes one that was abandoned).
            continue
        if outcome.status != Payment.Status.PENDING:
            continue
        try:
            charged.append((n, outcome, _gateway_result(outcome)))
        except GatewayUnavailable as exc:
            outcomes[n] = exc
    if charged:
        settled = _settle_many([(payment, result) for _, payment, result in charged])
        for (n, _, _), payment in zip(charged, settled, strict=True):
            outcomes[n] = payment
    return outcomes


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
    charge = Charge(
        plan_id=plan_id,
        payer_id=payer.pk,
        amount=amount,
        installment_id=installment_id,
        gateway_key=gateway_key,
        source=source,
        attempt=attempt,
        gateway_key_unused=gateway_key_unused,
    )
    (outcome,) = payments_attempt_many([charge])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def payment_resume(*, payment_id: int) -> Payment:
    """Charge a PENDING payment's card part with its own key and apply the answer.

    Safe to repeat, and safe while another process does the same: the gateway charges a
    key once, and the answer is applied once (re-checked under the plan's lock).
    """
    payment = Payment.objects.get(pk=payment_id)
    if payment.status != Payment.Status.PENDING:
        return payment
    (payment,) = _settle_many([(payment, _gateway_result(payment))])
    return payment


def _gateway_result(payment: Payment) -> ChargeResult:
    """The gateway's answer to charging a PENDING payment's card part (none to ask when
    credit pays it all). Raises GatewayUnavailable: the answer is unknown."""
    if payment.card_amount == 0:
        return ChargeResult(SUCCEEDED, "", "credit_balance")
    try:
        return get_gateway().charge(
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
