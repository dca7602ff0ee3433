"""Bare reference views for bench/http_bench.py: the same rows as the API's endpoints, written or
read with no validation, no authentication, no serializers, no problem details. They give
the stack's own floor for each kind of work, measured in the same gunicorn process as the
API. The writes are plain SQL through the connection; where the API writes an
Idempotency-Key row (payments, refund requests) the reference writes it too, and where it
calls the gateway or queues a task, the reference makes the same call.

Never part of the service: they are mounted only by ``bench/reference_wsgi.py``.
"""

import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Sum
from django.http import JsonResponse
from django.urls import include, path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from accounts.fields import decrypt_str
from accounts.models import User
from accounts.pricing import merchant_fee, merchant_pricing
from bnpl.models import PLAN_CAPTURED_STATUSES, Installment, LateFee, Plan
from core.models import IdempotencyKey
from events.models import Event, Notification
from events.tasks import notifications_send_task
from ledger.accounts import (
    CUSTOMER_CREDIT,
    CUSTOMER_RECEIVABLE,
    GATEWAY_CLEARING,
    MERCHANT_FEE_INCOME,
    MERCHANT_PAYABLE,
    ledger_accounts,
)
from ledger.models import JournalEntry, Posting
from payments.gateways import get_gateway
from payments.models import Payment, PaymentAllocation
from refunds.models import Refund
from refunds.tasks import refund_status_apply_task

_accounts: dict[str, int] = {}


def _account_ids() -> dict[str, int]:
    if not _accounts:
        _accounts.update({code: account.pk for code, account in ledger_accounts().items()})
    return _accounts


# The offer and the confirmation as plain SQL through the connection (psycopg), statement by
# statement as a hand-written service would do them: the floor of POST /api/v1/plans/ and of
# POST /api/v1/plans/{id}/confirm/. Table names and states come from the models.
_USERS, _PLANS, _INSTALLMENTS = User._meta.db_table, Plan._meta.db_table, Installment._meta.db_table
_FEES, _EVENTS, _NOTIFICATIONS = LateFee._meta.db_table, Event._meta.db_table, Notification._meta.db_table
_ENTRIES, _POSTINGS = JournalEntry._meta.db_table, Posting._meta.db_table
_OPEN = [Plan.Status.PENDING, Plan.Status.AUTHORIZED]
_OWING = [Installment.Status.UPCOMING, Installment.Status.OVERDUE]

_CUSTOMER_LOCK = f"SELECT status, credit_limit FROM {_USERS} WHERE id = %s FOR NO KEY UPDATE"  # noqa: S608  # nosec B608
# Owed (installments, late fees) and reserved (open plans but this one), in one currency.
_CREDIT = f"""
SELECT
  (SELECT COALESCE(SUM(i.amount_due - i.amount_paid), 0) FROM {_INSTALLMENTS} i JOIN {_PLANS} p ON p.id = i.plan_id
   WHERE p.customer_id = %(customer)s AND p.currency = %(currency)s AND i.status = ANY(%(owing)s))
+ (SELECT COALESCE(SUM(f.amount - f.amount_paid), 0) FROM {_FEES} f JOIN {_PLANS} p ON p.id = f.plan_id
   WHERE p.customer_id = %(customer)s AND p.currency = %(currency)s AND f.status = %(fee_due)s)
+ (SELECT COALESCE(SUM(COALESCE(authorized_amount, total_amount)), 0) FROM {_PLANS}
   WHERE customer_id = %(customer)s AND currency = %(currency)s AND status = ANY(%(open)s) AND id <> %(plan)s)
"""  # noqa: S608 - table names from the models  # nosec B608
_OFFER_INSERT = f"""
INSERT INTO {_PLANS} (customer_id, merchant_id, total_amount, authorized_amount, currency, installment_count,
                      frequency, status, capture_mode, merchant_reference, purchase_date, checkout_token, expires_at,
                      created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, 4, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
"""  # noqa: S608  # nosec B608
_EVENT_INSERT = f"""
INSERT INTO {_EVENTS} (public_id, merchant_id, type, data, created_at, delivery_status, attempts, next_attempt_at,
                       give_up_at)
VALUES (%s, %s, %s, %s, %s, %s, 0, %s, %s)
"""  # noqa: S608  # nosec B608
_NOTIFICATIONS_INSERT = f"""
INSERT INTO {_NOTIFICATIONS} (customer_id, kind, channel, cause, subject, body, status, error, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, '', %s), (%s, %s, %s, %s, %s, %s, %s, '', %s)
ON CONFLICT DO NOTHING
"""  # noqa: S608  # nosec B608
# The plan locked, with its merchant's price as committed (the fee is charged at it).
_PLAN_LOCK = f"""
SELECT p.customer_id, p.merchant_id, p.total_amount, p.currency, p.status, m.fee_percent, m.fee_fixed
FROM {_PLANS} p JOIN {_USERS} m ON m.id = p.merchant_id WHERE p.id = %s FOR NO KEY UPDATE OF p
"""  # noqa: S608  # nosec B608
_PLAN_ACTIVATE = f"""
UPDATE {_PLANS} SET status = %s, purchase_date = %s, checkout_token = NULL, expires_at = NULL, confirmed_at = %s,
  activated_at = %s, merchant_fee = %s, updated_at = %s
WHERE id = %s
"""  # noqa: S608  # nosec B608
_INSTALLMENTS_INSERT = f"""
INSERT INTO {_INSTALLMENTS} (plan_id, customer_id, sequence, amount_due, amount_paid, amount_reserved, due_date,
                             status, created_at, updated_at)
VALUES {", ".join(["(%s, %s, %s, %s, 0, 0, %s, %s, %s, %s)"] * 4)}
"""  # noqa: S608  # nosec B608
_ENTRY_INSERT = f"INSERT INTO {_ENTRIES} (kind, memo, plan_id, created_at) VALUES (%s, %s, %s, %s) RETURNING id"  # noqa: S608  # nosec B608
_POSTINGS_INSERT = f"""
INSERT INTO {_POSTINGS} (entry_id, account_id, amount, currency, plan_id, party_id)
VALUES (%s, %s, %s, %s, %s, %s), (%s, %s, %s, %s, %s, %s)
"""  # noqa: S608  # nosec B608
# An origination with the merchant's fee: its two more legs in the same statement.
_POSTINGS_WITH_FEE_INSERT = _POSTINGS_INSERT.rstrip() + ", (%s, %s, %s, %s, %s, %s), (%s, %s, %s, %s, %s, %s)\n"


def _credit_check(cursor, customer: int, currency: str, amount: Decimal, plan: int = 0) -> bool:
    """Lock the customer, then read what it owes and reserves: whether ``amount`` more fits."""
    cursor.execute(_CUSTOMER_LOCK, [customer])
    status, limit = cursor.fetchone()
    cursor.execute(
        _CREDIT,
        {
            "customer": customer,
            "currency": currency,
            "owing": _OWING,
            "fee_due": LateFee.Status.DUE,
            "open": _OPEN,
            "plan": plan,
        },
    )
    return status == User.Status.NORMAL and cursor.fetchone()[0] + amount <= limit


def _event(cursor, merchant: int, kind: str, data: dict, now) -> None:
    cursor.execute(
        _EVENT_INSERT,
        [
            f"evt_{uuid.uuid4().hex}",
            merchant,
            kind,
            json.dumps(data),
            now,
            Event.Delivery.NO_ENDPOINT,
            now,
            now + timedelta(hours=72),
        ],
    )


@csrf_exempt
def offer_insert(request):
    """A merchant's offer: the key claimed, the customer locked, its credit read, the
    PENDING plan, its ``plan.pending`` event and the customer's two notifications, the answer
    stored under the key, in one transaction; the notifications' send task queued once it
    commits (the same task, through the same broker, as the API)."""
    body = json.loads(request.body)
    customer, merchant, total = body["customer"], body["merchant"], Decimal(body["total_amount"])
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        claim = _claim(cursor, request, merchant, now)
        if claim is None:
            return JsonResponse({"code": "idempotency_key_seen"}, status=409)
        if not _credit_check(cursor, customer, "USD", total):
            return _answer(cursor, claim, 422, {"code": "credit_declined"})
        cursor.execute(
            _OFFER_INSERT,
            [
                customer,
                merchant,
                total,
                total,
                "USD",
                Plan.Frequency.MONTHLY,
                Plan.Status.PENDING,
                Plan.CaptureMode.AUTOMATIC,
                body["merchant_reference"],
                now.date(),
                secrets.token_urlsafe(32),
                now + timedelta(days=1),
                now,
                now,
            ],
        )
        plan = cursor.fetchone()[0]
        data = {"plan_id": plan, "customer_id": body["user_id"], "total_amount": str(total), "status": "PENDING"}
        _event(cursor, merchant, Event.Type.PLAN_PENDING, data, now)
        text = f"An offer of {total} USD in 4 installments: https://bnpl.example/checkout/{plan}/"
        cause = f"plan:{plan}"
        cursor.execute(
            _NOTIFICATIONS_INSERT,
            [
                *(customer, Notification.Kind.OFFER, Notification.Channel.EMAIL, cause, "Your offer", text),
                *(Notification.Status.PENDING, now),
                *(customer, Notification.Kind.OFFER, Notification.Channel.SMS, cause, "Your offer", text),
                *(Notification.Status.PENDING, now),
            ],
        )
        answer = _answer(cursor, claim, 201, {"id": plan, "user_id": body["user_id"], "status": Plan.Status.PENDING})
    notifications_send_task.apply_async([[(Notification.Kind.OFFER, cause)]], ignore_result=True)
    return answer


@csrf_exempt
def offer_confirm(request, pk: int):
    """The customer's confirmation: the plan locked, the key claimed (the customer's), the
    customer locked, its credit read, the plan ACTIVE with its merchant fee, its 4
    installments, its origination entry and postings (the fee's two legs too) and its
    ``plan.confirmed`` event, the answer stored under the key, in one transaction."""
    accounts = _account_ids()
    now = timezone.now()
    today = now.date()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_PLAN_LOCK, [pk])
        customer, merchant, total, currency, status, fee_percent, fee_fixed = cursor.fetchone()
        claim = _claim(cursor, request, customer, now)
        if claim is None:
            return JsonResponse({"code": "idempotency_key_seen"}, status=409)
        if status != Plan.Status.PENDING:
            return _answer(cursor, claim, 409, {"code": "plan_not_pending"})
        if not _credit_check(cursor, customer, currency, total, plan=pk):
            return _answer(cursor, claim, 422, {"code": "credit_declined"})
        fee = merchant_fee(total=total, pricing=merchant_pricing(fee_percent=fee_percent, fee_fixed=fee_fixed))
        cursor.execute(_PLAN_ACTIVATE, [Plan.Status.ACTIVE, today, now, now, fee, now, pk])
        cents, extra = divmod(int(total * 100), 4)
        rows = []
        for n in range(1, 5):
            amount = Decimal(cents + (1 if n <= extra else 0)) / 100
            rows += [pk, customer, n, amount, today + timedelta(days=30 * n), Installment.Status.UPCOMING, now, now]
        cursor.execute(_INSTALLMENTS_INSERT, rows)
        cursor.execute(_ENTRY_INSERT, [JournalEntry.Kind.ORIGINATION, f"Plan {pk} originated", pk, now])
        entry = cursor.fetchone()[0]
        legs = [
            *(entry, accounts[CUSTOMER_RECEIVABLE], total, currency, pk, customer),
            *(entry, accounts[MERCHANT_PAYABLE], -total, currency, pk, merchant),
        ]
        if fee:
            legs += [
                *(entry, accounts[MERCHANT_PAYABLE], fee, currency, pk, merchant),
                *(entry, accounts[MERCHANT_FEE_INCOME], -fee, currency, pk, merchant),
            ]
        cursor.execute(_POSTINGS_WITH_FEE_INSERT if fee else _POSTINGS_INSERT, legs)
        data = {"plan_id": pk, "total_amount": str(total), "currency": currency, "status": "ACTIVE"}
        _event(cursor, merchant, Event.Type.PLAN_CONFIRMED, data, now)
        return _answer(cursor, claim, 200, {"id": pk, "status": Plan.Status.ACTIVE})


def plan_read(request, pk: int):
    """A plan and its installments, as plain rows."""
    plan = Plan.objects.filter(pk=pk).values().first()
    plan["installments"] = list(Installment.objects.filter(plan_id=pk).order_by("sequence").values())
    return JsonResponse(plan, safe=False)


def debt_read(request, user_id: str):
    """A customer's status, overdue installments and what they owe, as plain rows."""
    user = User.objects.filter(user_id=user_id).values("pk", "status").get()
    owed = Installment.objects.filter(plan__customer_id=user["pk"], status__in=("UPCOMING", "OVERDUE"))
    total = owed.aggregate(total=Sum(F("amount_due") - F("amount_paid")))["total"]
    overdue = list(owed.filter(status="OVERDUE").values("id", "plan_id", "amount_due", "due_date"))
    return JsonResponse({"status": user["status"], "total": total, "overdue": overdue}, safe=False)


# Paying, as plain SQL: the rows POST /api/v1/installments/{id}/pay/ and POST
# /api/v1/plans/{id}/pay/ write, in the same two transactions around the same gateway call
# (payments.gateways.get_gateway(), the fake card network the API is configured with), and
# the same Idempotency-Key row: claimed IN_FLIGHT first, completed with the answer last.
_KEYS, _PAYMENTS, _ALLOCATIONS = IdempotencyKey._meta.db_table, Payment._meta.db_table, PaymentAllocation._meta.db_table
_KEY_CLAIM = f"""
INSERT INTO {_KEYS} (principal_id, key, method, path, fingerprint, status, response_status, response_body, created_at,
                     expires_at)
VALUES (%s, %s, %s, %s, %s, %s, NULL, '', %s, %s) ON CONFLICT (principal_id, key) DO NOTHING RETURNING id
"""  # noqa: S608  # nosec B608
_KEY_ANSWER = f"UPDATE {_KEYS} SET status = %s, response_status = %s, response_body = %s WHERE id = %s"  # noqa: S608  # nosec B608
_INSTALLMENT_PLAN = f"SELECT plan_id FROM {_INSTALLMENTS} WHERE id = %s"  # noqa: S608  # nosec B608
_PAY_PLAN_LOCK = f"SELECT customer_id, currency, status FROM {_PLANS} WHERE id = %s FOR NO KEY UPDATE"  # noqa: S608  # nosec B608
# What is still free to take: owed less what PENDING payments reserved.
_OPEN_INSTALLMENTS = f"""
SELECT id, status, amount_due - amount_paid - amount_reserved FROM {_INSTALLMENTS}
WHERE plan_id = %s AND status = ANY(%s) ORDER BY due_date, sequence
"""  # noqa: S608  # nosec B608
_DUE_FEES = (
    f"SELECT id, amount - amount_paid - amount_reserved FROM {_FEES} WHERE plan_id = %s AND status = %s ORDER BY id"  # noqa: S608  # nosec B608
)
_PAYER_LOCK = f"SELECT card_token FROM {_USERS} WHERE id = %s FOR NO KEY UPDATE"  # noqa: S608  # nosec B608
_CREDIT_BALANCE = f"""
SELECT COALESCE(SUM(amount), 0) FROM {_POSTINGS} WHERE account_id = %s AND party_id = %s AND currency = %s
"""  # noqa: S608  # nosec B608
_PAYMENT_INSERT = f"""
INSERT INTO {_PAYMENTS} (plan_id, customer_id, created_by_id, amount, currency, credit_amount, excess_credited, source,
                         attempt, card_token, status, decline_code, gateway_reference, gateway_key, created_at,
                         completed_at)
VALUES (%s, %s, %s, %s, %s, 0, 0, %s, NULL, %s, %s, '', '', %s, %s, NULL) RETURNING id
"""  # noqa: S608  # nosec B608
_RESERVE = f"UPDATE {_INSTALLMENTS} SET amount_reserved = amount_reserved + %s WHERE id = %s"  # noqa: S608  # nosec B608
_ALLOCATION_INSERT = f"""
INSERT INTO {_ALLOCATIONS} (payment_id, installment_id, late_fee_id, amount, credited) VALUES (%s, %s, NULL, %s, 0)
"""  # noqa: S608  # nosec B608
_SETTLE_PLAN_LOCK = f"SELECT id FROM {_PLANS} WHERE id = %s FOR NO KEY UPDATE"  # noqa: S608  # nosec B608
# Applied once: only a payment still PENDING under the plan's lock.
_PAYMENT_END = f"""
UPDATE {_PAYMENTS} SET status = %s, decline_code = %s, gateway_reference = %s, completed_at = %s
WHERE id = %s AND status = %s
"""  # noqa: S608  # nosec B608
# Paid and the reservation cleared; an installment this would pay off is left alone (see pay()).
_SETTLE = f"""
UPDATE {_INSTALLMENTS} SET amount_paid = amount_paid + %(amount)s, amount_reserved = amount_reserved - %(amount)s,
  updated_at = %(now)s
WHERE id = %(id)s AND status = ANY(%(owing)s) AND amount_paid + %(amount)s < amount_due
"""  # noqa: S608  # nosec B608
_RELEASE = f"UPDATE {_INSTALLMENTS} SET amount_reserved = amount_reserved - %s WHERE id = %s"  # noqa: S608  # nosec B608
# One receipt per channel, SKIPPED where the customer has no address for it (as the API's).
_RECEIPTS_INSERT = f"""
INSERT INTO {_NOTIFICATIONS} (customer_id, kind, channel, cause, subject, body, status, error, created_at)
SELECT u.id, %(kind)s, c.channel, %(cause)s, %(subject)s, %(body)s,
       CASE WHEN c.address <> '' THEN %(pending)s ELSE %(skipped)s END, '', %(now)s
FROM {_USERS} u CROSS JOIN LATERAL (VALUES (%(email)s, u.email), (%(sms)s, u.phone_number)) AS c (channel, address)
WHERE u.id = %(customer)s
ON CONFLICT DO NOTHING
RETURNING status
"""  # noqa: S608  # nosec B608


class _NotBare(Exception):
    """A case the benchmark never sends and the reference does not do (answered 409: an error)."""


def _claim(cursor, request, payer: int, now) -> int | None:
    """The request's Idempotency-Key row, IN_FLIGHT; None when the key was seen before."""
    fingerprint = hashlib.sha256(f"{request.method}\n{request.path}\n".encode() + request.body).hexdigest()
    key = request.headers["Idempotency-Key"]
    expires = now + timedelta(hours=settings.BNPL_IDEMPOTENCY_TTL_HOURS)
    cursor.execute(_KEY_CLAIM, [payer, key, request.method, request.path, fingerprint, "IN_FLIGHT", now, expires])
    row = cursor.fetchone()
    return row[0] if row else None


def _answer(cursor, claim: int, status: int, answer: dict) -> JsonResponse:
    body = json.dumps(answer)
    cursor.execute(_KEY_ANSWER, ["COMPLETED", status, body, claim])
    return JsonResponse(answer, status=status)


def _payable(cursor, plan: int, installment: int | None) -> list[tuple[int, Decimal]]:
    """``(installment id, free amount)`` in the order a payment takes them: overdue first,
    then upcoming (only ``installment`` when given). Late fees are read as the API reads them
    for a plan, and refused: the benchmark's plans have none."""
    cursor.execute(_OPEN_INSTALLMENTS, [plan, _OWING])
    rows = [row for row in cursor.fetchall() if installment is None or row[0] == installment]
    if installment is None:
        cursor.execute(_DUE_FEES, [plan, LateFee.Status.DUE])
        if any(free > 0 for _, free in cursor.fetchall()):
            raise _NotBare("late fees due")
    ordered = [row for row in rows if row[1] == Installment.Status.OVERDUE]
    ordered += [row for row in rows if row[1] != Installment.Status.OVERDUE]
    return [(pk, free) for pk, _, free in ordered if free > 0]


def _reserve(cursor, plan: int, installment: int | None, amount: Decimal, payer: int, key: str, now):
    """Transaction 1: the plan locked, what is payable read, the customer locked, its credit
    balance read, the PENDING payment, the reservations and the allocations."""
    cursor.execute(_PAY_PLAN_LOCK, [plan])
    customer, currency, status = cursor.fetchone()
    if status != Plan.Status.ACTIVE:
        raise _NotBare("plan not active")
    parts, left = [], amount
    for pk, free in _payable(cursor, plan, installment):
        cut = min(left, free)
        parts.append((pk, cut))
        left -= cut
        if not left:
            break
    if left:
        raise _NotBare("more than is payable")
    cursor.execute(_PAYER_LOCK, [customer])
    (card_token,) = cursor.fetchone()
    cursor.execute(_CREDIT_BALANCE, [_account_ids()[CUSTOMER_CREDIT], customer, currency])
    if cursor.fetchone()[0] > 0:
        raise _NotBare("a credit balance to spend")
    cursor.execute(
        _PAYMENT_INSERT,
        [plan, customer, payer, amount, currency, Payment.Source.MANUAL, card_token, "PENDING", key, now],
    )
    payment = cursor.fetchone()[0]
    for pk, cut in parts:
        cursor.execute(_RESERVE, [cut, pk])
        cursor.execute(_ALLOCATION_INSERT, [payment, pk, cut])
    return payment, customer, currency, card_token, parts


def _settle(cursor, plan: int, payment: int, customer: int, currency: str, amount: Decimal, parts, result, now):
    """Transaction 2: the plan locked; declined, the reservations released; paid, the
    installments paid and their reservations cleared, the payment SUCCEEDED, the PAYMENT
    entry and its postings, the customer's receipts. Returns the causes to send."""
    cursor.execute(_SETTLE_PLAN_LOCK, [plan])
    status = Payment.Status.SUCCEEDED if result.succeeded else Payment.Status.FAILED
    cursor.execute(_PAYMENT_END, [status, result.decline_code, result.reference, now, payment, "PENDING"])
    if cursor.rowcount != 1:
        raise _NotBare("payment no longer pending")
    if not result.succeeded:
        for pk, cut in parts:
            cursor.execute(_RELEASE, [cut, pk])
        return []
    for pk, cut in parts:
        cursor.execute(_SETTLE, {"amount": cut, "now": now, "id": pk, "owing": _OWING})
        if cursor.rowcount != 1:
            # Paying an installment off also records its event, may complete the plan and
            # restore the customer: the benchmark's 0.01 never does.
            raise _NotBare("this would pay an installment off")
    accounts = _account_ids()
    cursor.execute(_ENTRY_INSERT, [JournalEntry.Kind.PAYMENT, f"Payment {payment}", plan, now])
    entry = cursor.fetchone()[0]
    cursor.execute(
        _POSTINGS_INSERT,
        [
            *(entry, accounts[GATEWAY_CLEARING], amount, currency, plan, customer),
            *(entry, accounts[CUSTOMER_RECEIVABLE], -amount, currency, plan, customer),
        ],
    )
    cause, kind = f"payment:{payment}", Notification.Kind.PAYMENT_RECEIPT
    cursor.execute(
        _RECEIPTS_INSERT,
        {
            "kind": kind,
            "cause": cause,
            "subject": f"Payment received: {amount} {currency} for plan #{plan}",
            "body": f"Thank you. We received {amount} {currency} for plan #{plan}.",
            "pending": Notification.Status.PENDING,
            "skipped": Notification.Status.SKIPPED,
            "now": now,
            "email": Notification.Channel.EMAIL,
            "sms": Notification.Channel.SMS,
            "customer": customer,
        },
    )
    return [(kind, cause)] if any(row[0] == Notification.Status.PENDING for row in cursor.fetchall()) else []


def pay(request, plan: int, installment: int | None):
    """A payment of the body's ``amount`` by the body's ``payer`` (whose Idempotency-Key row
    it is): the key claimed, transaction 1, the card charged through the configured gateway
    with no transaction open, transaction 2, the receipts queued for sending once it commits
    (the same task, through the same broker), the answer stored under the key."""
    body = json.loads(request.body)
    amount, payer = Decimal(body["amount"]), body["payer"]
    now = timezone.now()
    with connection.cursor() as cursor:
        claim = _claim(cursor, request, payer, now)
        if claim is None:
            return JsonResponse({"code": "idempotency_key_seen"}, status=409)
        # The gateway key the API derives from the claim; a claim just made has no payment
        # under it yet, so none is looked for (the API looks, for a claim taken over).
        key = f"idem_{claim}"
        try:
            with transaction.atomic():
                payment, customer, currency, card_token, parts = _reserve(
                    cursor, plan, installment, amount, payer, key, now
                )
            result = get_gateway().charge(amount=amount, currency=currency, card_token=card_token, idempotency_key=key)
            done = timezone.now()
            with transaction.atomic():
                causes = _settle(cursor, plan, payment, customer, currency, amount, parts, result, done)
        except _NotBare as exc:
            return _answer(cursor, claim, 409, {"code": "not_in_the_reference", "detail": str(exc)})
        if causes:
            notifications_send_task.apply_async([causes], ignore_result=True)
        answer = {
            "id": payment,
            "plan_id": plan,
            "amount": str(amount),
            "currency": currency,
            "status": Payment.Status.SUCCEEDED if result.succeeded else Payment.Status.FAILED,
            "decline_code": result.decline_code,
            "created_at": now.isoformat(),
            "completed_at": done.isoformat(),
            "allocations": [{"installment_id": pk, "late_fee_id": None, "amount": str(cut)} for pk, cut in parts],
        }
        return _answer(cursor, claim, 201 if result.succeeded else 402, answer)


@csrf_exempt
def pay_installment(request, pk: int):
    """``POST /api/v1/installments/{id}/pay/``'s rows: the installment's plan found, then ``pay``."""
    with connection.cursor() as cursor:
        cursor.execute(_INSTALLMENT_PLAN, [pk])
        (plan,) = cursor.fetchone()
    return pay(request, plan, pk)


@csrf_exempt
def pay_plan(request, pk: int):
    """``POST /api/v1/plans/{id}/pay/``'s rows: ``pay`` toward the plan (overdue first)."""
    return pay(request, pk, None)


# A merchant's refund request as plain SQL, in one transaction with its Idempotency-Key row
# (the API's is atomic: the key, the refund and the stored answer commit together).
_REFUNDS = Refund._meta.db_table
_REFUND_PLAN_LOCK = f"""
SELECT p.customer_id, p.merchant_id, p.total_amount, p.currency, p.status, c.user_id, m.user_id
FROM {_PLANS} p JOIN {_USERS} c ON c.id = p.customer_id JOIN {_USERS} m ON m.id = p.merchant_id
WHERE p.id = %s FOR NO KEY UPDATE OF p
"""  # noqa: S608  # nosec B608
_REFUNDED = f"SELECT COALESCE(SUM(amount), 0) FROM {_REFUNDS} WHERE plan_id = %s AND status = ANY(%s)"  # noqa: S608  # nosec B608
# A transaction id seen before is the merchant's retry, answered by the API with the refund
# made then; the benchmark sends each once.
_REFUND_INSERT = f"""
INSERT INTO {_REFUNDS} (plan_id, merchant_id, customer_id, requested_by_id, transaction_id, amount, currency, reason,
                        status, applied_amount, payout_amount, merchant_fee_returned, payout_status, payout_method,
                        payout_reference, merchant_reference, decided_by_id, decided_at, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 0, 0, %s, %s, '', '', NULL, NULL, %s, %s)
ON CONFLICT (merchant_id, transaction_id) DO NOTHING RETURNING id
"""  # noqa: S608  # nosec B608
_REFUND_COUNTED = [Refund.Status.PENDING, Refund.Status.PROCESSING, Refund.Status.APPROVED]


@csrf_exempt
def refund_insert(request):
    """A merchant's refund request (the body's ``merchant``, ``plan_id``, ``transaction_id``,
    ``amount``): the key claimed, the plan locked with its parties, what it has left to
    refund read, the PENDING refund, the answer stored under the key, in one transaction."""
    body = json.loads(request.body)
    plan, merchant, amount = body["plan_id"], body["merchant"], Decimal(body["amount"])
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        claim = _claim(cursor, request, merchant, now)
        if claim is None:
            return JsonResponse({"code": "idempotency_key_seen"}, status=409)
        cursor.execute(_REFUND_PLAN_LOCK, [plan])
        customer, owner, total, currency, status, user_id, merchant_id = cursor.fetchone()
        if owner != merchant:
            transaction.set_rollback(True)
            return JsonResponse({"code": "not_found"}, status=404)
        if status not in PLAN_CAPTURED_STATUSES:
            return _answer(cursor, claim, 409, {"code": "plan_not_refundable"})
        cursor.execute(_REFUNDED, [plan, _REFUND_COUNTED])
        if amount > total - cursor.fetchone()[0]:
            return _answer(cursor, claim, 422, {"code": "refund_exceeds_plan"})
        cursor.execute(
            _REFUND_INSERT,
            [
                *(plan, merchant, customer, merchant, body["transaction_id"], amount, currency, body.get("reason", "")),
                *(
                    Refund.Status.PENDING,
                    Refund.PayoutStatus.NONE,
                    settings.BNPL_REFUND_PAYOUT_METHOD.upper(),
                    now,
                    now,
                ),
            ],
        )
        row = cursor.fetchone()
        if row is None:
            return _answer(cursor, claim, 409, {"code": "not_in_the_reference", "detail": "transaction id seen"})
        answer = {
            "id": row[0],
            "plan_id": plan,
            "transaction_id": body["transaction_id"],
            "user_id": user_id,
            "merchant_id": merchant_id,
            "amount": str(amount),
            "currency": currency,
            "status": Refund.Status.PENDING,
            "created_at": now.isoformat(),
        }
        return _answer(cursor, claim, 201, answer)


# The refund-status webhook: the merchant found, the signature checked over the raw body, the
# refund found, and the change queued for a worker (the same task, through the same broker).
_WEBHOOK_MERCHANT = f"SELECT id, webhook_secret FROM {_USERS} WHERE user_id = %s AND role = %s AND is_active"  # noqa: S608  # nosec B608
_WEBHOOK_REFUND = (
    f"SELECT id, status, merchant_reference FROM {_REFUNDS} WHERE merchant_id = %s AND transaction_id = %s"  # noqa: S608  # nosec B608
)
_WEBHOOK_REFERENCE = f"UPDATE {_REFUNDS} SET merchant_reference = %s WHERE id = %s AND merchant_reference = ''"  # noqa: S608  # nosec B608
_WEBHOOK_STATUSES = {
    "processing": Refund.Status.PROCESSING,
    "approved": Refund.Status.APPROVED,
    "rejected": Refund.Status.REJECTED,
    "failed": Refund.Status.REJECTED,
}
_WEBHOOK_MOVES = {
    Refund.Status.PENDING: {Refund.Status.PROCESSING, Refund.Status.APPROVED, Refund.Status.REJECTED},
    Refund.Status.PROCESSING: {Refund.Status.APPROVED, Refund.Status.REJECTED},
}


def _signed(secret: str, header: str, body: bytes) -> bool:
    """Whether ``header`` (``t=<unix seconds>,v1=<hex>[,v1=…]``) signs ``body`` within 300 s."""
    fields = [part.strip().partition("=") for part in header.split(",")]
    stamps = [value for name, _, value in fields if name == "t" and value.isascii() and value.isdigit()]
    if not stamps or abs(time.time() - int(stamps[0])) > 300:
        return False
    expected = hmac.new(secret.encode(), f"{stamps[0]}.".encode() + body, hashlib.sha256).hexdigest()
    return any(name == "v1" and value.isascii() and hmac.compare_digest(expected, value) for name, _, value in fields)


@csrf_exempt
def refund_status_webhook(request):
    """``POST /webhook/refund-status/``'s work in the request: the merchant and its secret
    read, the signature checked, the body parsed, the refund read (its merchant reference
    kept when it has none), and a status it can still take queued for a worker. A status
    it cannot take is handled at once by the API; the benchmark sends none (answered 409)."""
    body = request.body
    with connection.cursor() as cursor:
        cursor.execute(_WEBHOOK_MERCHANT, [request.headers.get("BNPL-Merchant", ""), User.Role.MERCHANT])
        merchant = cursor.fetchone()
        secret = decrypt_str(merchant[1]) if merchant and merchant[1] else ""
        if not secret or not _signed(secret, request.headers.get("BNPL-Signature", ""), body):
            return JsonResponse({"code": "invalid_signature"}, status=401)
        payload = json.loads(body)
        cursor.execute(_WEBHOOK_REFUND, [merchant[0], payload["refund_id"]])
        refund = cursor.fetchone()
        if refund is None:
            return JsonResponse({"code": "not_found"}, status=404)
        pk, current, reference = refund
        if payload.get("merchant_reference") and not reference:
            cursor.execute(_WEBHOOK_REFERENCE, [payload["merchant_reference"], pk])
    status = _WEBHOOK_STATUSES[payload["status"]]
    if status not in _WEBHOOK_MOVES.get(current, set()):
        return JsonResponse({"code": "not_in_the_reference", "detail": "a status the refund cannot take"}, status=409)
    refund_status_apply_task.apply_async([pk, status], ignore_result=True)
    answer = {"refund_id": payload["refund_id"], "status": current.lower(), "applied": True, "processing_mode": "async"}
    return JsonResponse(answer | {"processed_at": timezone.now().isoformat()})


urlpatterns = [
    path("bench/offers/", offer_insert),
    path("bench/offers/<int:pk>/confirm/", offer_confirm),
    path("bench/plans/<int:pk>/", plan_read),
    path("bench/debt/<str:user_id>/", debt_read),
    path("bench/installments/<int:pk>/pay/", pay_installment),
    path("bench/plans/<int:pk>/pay/", pay_plan),
    path("bench/refunds/", refund_insert),
    path("bench/webhook/refund-status/", refund_status_webhook),
    path("", include("config.urls")),
]
