"""The payments part of the ledger invariants, registered with the ledger's runner: no
customer's credit balance (what the platform holds for them) is below zero; what
installments and fees hold as reserved is what PENDING payments allocated to them; what
they hold as paid is what succeeded payments applied to them (so a waived fee keeps no
settled payment: invariant 5 of DESIGN §3)."""

from decimal import Decimal

from django.db.models import F, Sum

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


_TARGETS = ((Installment, "installment_id", "installment"), (LateFee, "late_fee_id", "late fee"))


def _compare(*, status: str, counted, column: str, what: str, whose: str) -> list[str]:
    """Each installment's and fee's ``column`` against the sum of ``counted`` over the
    allocations of payments in ``status``: one line per row where they differ."""
    allocations = PaymentAllocation.objects.filter(payment__status=status)
    breaches = []
    for model, target, name in _TARGETS:
        allocated = dict(
            allocations.filter(**{f"{target}__isnull": False})
            .values(target)
            .annotate(total=Sum(counted))
            .values_list(target, "total")
        )
        kept = dict(model.objects.filter(**{f"{column}__gt": 0}).values_list("pk", column))
        for pk in sorted(allocated.keys() | kept.keys()):
            expected, found = allocated.get(pk, Decimal(0)), kept.get(pk, Decimal(0))
            if expected != found:
                breaches.append(f"{name} {pk}: {what} {to_money(found)} != {whose} {to_money(expected)}")
    return breaches[:MAX_LISTED]


def reservations_match_pending_payments(report: LedgerReport) -> list[str]:
    """Each installment's and fee's ``amount_reserved`` is the sum of its allocations from
    PENDING payments: nothing reserved by a payment that ended, nothing pending unreserved."""
    return _compare(
        status=Payment.Status.PENDING,
        counted="amount",
        column="amount_reserved",
        what="reserved",
        whose="pending payments'",
    )


def paid_amounts_match_payments(report: LedgerReport) -> list[str]:
    """Each installment's and fee's ``amount_paid`` is what SUCCEEDED payments applied to it
    (their allocations less what went to credit): nothing paid that no payment brought in,
    and a waived fee keeps no payment that settled after its waiver."""
    return _compare(
        status=Payment.Status.SUCCEEDED,
        counted=F("amount") - F("credited"),
        column="amount_paid",
        what="paid",
        whose="succeeded payments applied",
    )
