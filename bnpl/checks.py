"""The bnpl part of the ledger invariants (DESIGN §3), registered with the ledger's runner:

2. for every plan, the customer-receivable balance equals the unpaid remainder of its
   installments plus its late fees still due;
3. no installment is paid above its amount due;
5. a late fee is PAID or WAIVED, never both (PostgreSQL also holds this for rows written
   since bnpl migration 0012; rows from before are found here);

and consent (DESIGN §6): a plan its customer has not agreed to, or that was never captured
(PENDING, AUTHORIZED, DECLINED, EXPIRED, VOIDED), has no installments and owes nothing.
"""

from collections import defaultdict
from decimal import Decimal

from django.db.models import DecimalField, F, Sum

from bnpl.models import Installment, LateFee, Plan
from core.money import to_money
from ledger.checks import MAX_LISTED, LedgerReport
from ledger.selectors import receivable_by_plan

_MONEY = DecimalField(max_digits=14, decimal_places=2)


def _expected_receivable() -> dict[int, Decimal]:
    expected: dict[int, Decimal] = defaultdict(Decimal)
    for plan_id, remaining in (
        Installment.objects.values("plan_id")
        .annotate(remaining=Sum(F("amount_due") - F("amount_paid"), output_field=_MONEY))
        .values_list("plan_id", "remaining")
    ):
        expected[plan_id] += remaining
    for plan_id, due in (
        LateFee.objects.filter(status=LateFee.Status.DUE)
        .values("plan_id")
        .annotate(due=Sum(F("amount") - F("amount_paid"), output_field=_MONEY))
        .values_list("plan_id", "due")
    ):
        expected[plan_id] += due
    return expected


def receivable_matches_plans(report: LedgerReport) -> list[str]:
    """Invariant 2; counts the plans checked."""
    booked = receivable_by_plan()
    expected = _expected_receivable()
    report.plans_checked = len(expected.keys() | booked.keys())
    mismatched = sorted(
        plan_id
        for plan_id in expected.keys() | booked.keys()
        if booked.get(plan_id, Decimal(0)) != expected.get(plan_id, Decimal(0))
    )
    breaches = [
        f"plan {plan_id}: receivable in the ledger {to_money(booked.get(plan_id, 0))} "
        f"!= unpaid installments and fees {to_money(expected.get(plan_id, 0))}"
        for plan_id in mismatched[:MAX_LISTED]
    ]
    if len(mismatched) > MAX_LISTED:
        breaches.append(f"... and {len(mismatched) - MAX_LISTED} more plans whose receivable does not match")
    return breaches


def no_overpaid_installment(report: LedgerReport) -> list[str]:
    """Invariant 3 (installments)."""
    overpaid = Installment.objects.filter(amount_paid__gt=F("amount_due")).values_list("id", flat=True)
    return [f"installment {pk} is paid above its amount due" for pk in overpaid[:MAX_LISTED]]


def fees_paid_or_waived(report: LedgerReport) -> list[str]:
    """Invariant 5 (the fee's own row): WAIVED exactly when a waiver is recorded."""
    both = LateFee.objects.exclude(status=LateFee.Status.WAIVED).filter(waived_at__isnull=False)
    unrecorded = LateFee.objects.filter(status=LateFee.Status.WAIVED, waived_at__isnull=True)
    return [f"late fee {pk} is {status} and waived" for pk, status in both.values_list("pk", "status")[:MAX_LISTED]] + [
        f"late fee {pk} is WAIVED with no waiver recorded"
        for pk in unrecorded.values_list("pk", flat=True)[:MAX_LISTED]
    ]


NEVER_OWED = (
    Plan.Status.PENDING,
    Plan.Status.AUTHORIZED,
    Plan.Status.DECLINED,
    Plan.Status.EXPIRED,
    Plan.Status.VOIDED,
)


def nothing_owed_without_consent(report: LedgerReport) -> list[str]:
    """No installment on a plan that was never ACTIVE. (A receivable on one is invariant 2's
    breach already: such a plan has no installments, so it must owe nothing.)"""
    with_installments = (
        Installment.objects.filter(plan__status__in=NEVER_OWED)
        .values_list("plan_id", "plan__status")
        .distinct()
        .order_by("plan_id")
    )
    return [f"plan {plan_id} is {status} and has installments" for plan_id, status in with_installments[:MAX_LISTED]]
