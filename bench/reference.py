"""Bare reference views for bench/http_bench.py: the same rows as the API's endpoints, written or
read with no validation, no authentication, no serializers, no idempotency, no problem
details. They give the stack's own floor for each kind of work, measured in the same
gunicorn process as the API.

Never part of the service: they are mounted only by ``bench/reference_wsgi.py``.
"""

import json
import secrets
import uuid
from datetime import timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, Sum
from django.http import JsonResponse
from django.urls import include, path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from accounts.models import User
from accounts.pricing import merchant_fee, merchant_pricing
from bnpl.models import Installment, LateFee, Plan
from events.models import Event, Notification
from ledger.accounts import (
    CUSTOMER_RECEIVABLE,
    GATEWAY_CLEARING,
    MERCHANT_FEE_INCOME,
    MERCHANT_PAYABLE,
    ledger_accounts,
)
from ledger.models import JournalEntry, Posting
from payments.models import Payment, PaymentAllocation

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
    """A merchant's offer: the customer locked, its credit read, the PENDING plan, its
    ``plan.pending`` event and the customer's two notifications, in one transaction."""
    body = json.loads(request.body)
    customer, merchant, total = body["customer"], body["merchant"], Decimal(body["total_amount"])
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        if not _credit_check(cursor, customer, "USD", total):
            return JsonResponse({"code": "credit_declined"}, status=422)
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
    return JsonResponse({"id": plan, "user_id": body["user_id"], "status": Plan.Status.PENDING}, status=201)


@csrf_exempt
def offer_confirm(request, pk: int):
    """The customer's confirmation: the plan locked, the customer locked, its credit read,
    the plan ACTIVE with its merchant fee, its 4 installments, its origination entry and
    postings (the fee's two legs too) and its ``plan.confirmed`` event, in one transaction."""
    accounts = _account_ids()
    now = timezone.now()
    today = now.date()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_PLAN_LOCK, [pk])
        customer, merchant, total, currency, status, fee_percent, fee_fixed = cursor.fetchone()
        if status != Plan.Status.PENDING:
            return JsonResponse({"code": "plan_not_pending"}, status=409)
        if not _credit_check(cursor, customer, currency, total, plan=pk):
            return JsonResponse({"code": "credit_declined"}, status=422)
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
    return JsonResponse({"id": pk, "status": Plan.Status.ACTIVE})


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


@csrf_exempt
def pay_insert(request, pk: int):
    """A payment of 0.01 toward an installment: the rows a payment writes, in one transaction."""
    accounts = _account_ids()
    amount = Decimal("0.01")
    with transaction.atomic():
        installment = Installment.objects.select_for_update().get(pk=pk)
        payment = Payment.objects.create(
            plan_id=installment.plan_id,
            customer_id=installment.customer_id,
            created_by_id=installment.customer_id,
            amount=amount,
            currency="USD",
            status=Payment.Status.SUCCEEDED,
            gateway_key=f"ref_{uuid.uuid4().hex}",
        )
        PaymentAllocation.objects.create(payment=payment, installment=installment, amount=amount)
        Installment.objects.filter(pk=pk).update(amount_paid=F("amount_paid") + amount)
        entry = JournalEntry.objects.create(kind=JournalEntry.Kind.PAYMENT, plan_id=installment.plan_id)
        Posting.objects.bulk_create(
            [
                Posting(
                    entry=entry,
                    account_id=accounts[GATEWAY_CLEARING],
                    amount=amount,
                    currency="USD",
                    plan_id=installment.plan_id,
                    party_id=installment.customer_id,
                ),
                Posting(
                    entry=entry,
                    account_id=accounts[CUSTOMER_RECEIVABLE],
                    amount=-amount,
                    currency="USD",
                    plan_id=installment.plan_id,
                    party_id=installment.customer_id,
                ),
            ]
        )
    return JsonResponse({"id": payment.pk}, status=201)


urlpatterns = [
    path("bench/offers/", offer_insert),
    path("bench/offers/<int:pk>/confirm/", offer_confirm),
    path("bench/plans/<int:pk>/", plan_read),
    path("bench/debt/<str:user_id>/", debt_read),
    path("bench/installments/<int:pk>/pay/", pay_insert),
    path("", include("config.urls")),
]
