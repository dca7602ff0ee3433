"""Bare reference views for bench/http_bench.py: the same rows as the API's endpoints, written or
read with no validation, no authentication, no serializers, no idempotency, no problem
details. They give the stack's own floor for each kind of work, measured in the same
gunicorn process as the API.

Never part of the service: they are mounted only by ``bench/reference_wsgi.py``.
"""

import json
import uuid
from datetime import date
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Sum
from django.http import JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from accounts.models import User
from bnpl.models import Installment, Plan
from ledger.accounts import CUSTOMER_RECEIVABLE, GATEWAY_CLEARING, MERCHANT_PAYABLE, ledger_accounts
from ledger.models import JournalEntry, Posting
from payments.models import Payment, PaymentAllocation

_accounts: dict[str, int] = {}


def _account_ids() -> dict[str, int]:
    if not _accounts:
        _accounts.update({code: account.pk for code, account in ledger_accounts().items()})
    return _accounts


@csrf_exempt
def plan_insert(request):
    """A plan, its 4 installments and its origination entry: the inserts of plan creation."""
    body = json.loads(request.body)
    total = Decimal(body["total_amount"])
    part = (total / 4).quantize(Decimal("0.01"))
    accounts = _account_ids()
    with transaction.atomic():
        plan = Plan.objects.create(
            customer_id=body["customer"],
            merchant_id=body["merchant"],
            total_amount=total,
            currency="USD",
            installment_count=4,
            purchase_date=date.today(),
        )
        Installment.objects.bulk_create(
            Installment(
                plan=plan,
                customer_id=body["customer"],
                sequence=n,
                amount_due=part,
                due_date=date(2030, n, 1),
            )
            for n in range(1, 5)
        )
        entry = JournalEntry.objects.create(kind=JournalEntry.Kind.ORIGINATION, plan=plan)
        Posting.objects.bulk_create(
            [
                Posting(
                    entry=entry,
                    account_id=accounts[CUSTOMER_RECEIVABLE],
                    amount=total,
                    currency="USD",
                    plan=plan,
                    party_id=body["customer"],
                ),
                Posting(
                    entry=entry,
                    account_id=accounts[MERCHANT_PAYABLE],
                    amount=-total,
                    currency="USD",
                    plan=plan,
                    party_id=body["merchant"],
                ),
            ]
        )
    return JsonResponse({"id": plan.pk}, status=201)


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
    path("bench/plans/", plan_insert),
    path("bench/plans/<int:pk>/", plan_read),
    path("bench/debt/<str:user_id>/", debt_read),
    path("bench/installments/<int:pk>/pay/", pay_insert),
    path("", include("config.urls")),
]
