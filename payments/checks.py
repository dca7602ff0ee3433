"""The payments part of the ledger invariants, registered with the ledger's runner: no
customer's credit balance (what the platform holds for them) is below zero, and what
installments and fees hold as reserved is what PENDING payments allocated to them."""

from decimal import Decimal

from django.db.models import Sum

from bnpl.models import Installment, LateFee
from core.money import to_money
from ledger.checks import MAX_LISTED, LedgerReport
from ledger.selectors import negative_credit_balances
from payments.models import Payment, PaymentAllocation


def no_negative_credit_balance(report: LedgerReport) -> list[str]:
    return [
        f"customer {row['party_id']}: credit balance below zero in {row['currency']} ({to_money(-row['total'])})"
        for row in negative_credit_balances(limit=MAX_LISTED)
    ]


def reservations_match_pending_payments(report: LedgerReport) -> list[str]:
    """Each installment's and fee's ``amount_reserved`` is the sum of its allocations from
    PENDING payments: nothing reserved by a payment that ended, nothing pending unreserved."""
    pending = PaymentAllocation.objects.filter(payment__status=Payment.Status.PENDING)
    breaches = []
    for model, column, name in ((Installment, "installment_id", "installment"), (LateFee, "late_fee_id", "late fee")):
        allocated = dict(
            pending.filter(**{f"{column}__isnull": False})
            .values(column)
            .annotate(total=Sum("amount"))
            .values_list(column, "total")
        )
        reserved = dict(model.objects.filter(amount_reserved__gt=0).values_list("pk", "amount_reserved"))
        for pk in sorted(allocated.keys() | reserved.keys()):
            held, kept = allocated.get(pk, Decimal(0)), reserved.get(pk, Decimal(0))
            if held != kept:
                breaches.append(f"{name} {pk}: reserved {to_money(kept)} != pending payments' {to_money(held)}")
    return breaches[:MAX_LISTED]
