"""The ledger's invariants (DESIGN §3), checked against the books and the plans.

1. every journal entry sums to zero per currency;
2. for every plan, the customer-receivable balance equals the unpaid remainder of its
   installments plus its late fees still due;
3. no installment is paid above its amount due, and no plan is refunded above its total
   (apps that come later add their checks with ``register_check``: refunds does).
"""

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import DecimalField, F, Sum

from bnpl.models import Installment, LateFee
from core.money import to_money
from payments.ledger import negative_credit_balances, receivable_by_plan, unbalanced_entries
from payments.models import LedgerCheckRun

MAX_LISTED = 20
_MONEY = DecimalField(max_digits=14, decimal_places=2)


# Checks added by apps this one may not import (refunds): each returns its breaches.
EXTRA_CHECKS: list[Callable[[], list[str]]] = []


def register_check(check: Callable[[], list[str]]) -> None:
    if check not in EXTRA_CHECKS:
        EXTRA_CHECKS.append(check)


@dataclass
class LedgerReport:
    breaches: list[str] = field(default_factory=list)
    plans_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.breaches


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


def ledger_check(*, record: bool = True) -> LedgerReport:
    """Check every invariant; returns the breaches found (and records the run when ``record``)."""
    started = time.perf_counter()
    report = LedgerReport()
    for row in unbalanced_entries(limit=MAX_LISTED):
        report.breaches.append(
            f"entry {row['entry_id']} does not balance in {row['currency']}: off by {to_money(row['total'])}"
        )

    booked = receivable_by_plan()
    expected = _expected_receivable()
    report.plans_checked = len(expected.keys() | booked.keys())
    mismatched = sorted(
        plan_id
        for plan_id in expected.keys() | booked.keys()
        if booked.get(plan_id, Decimal(0)) != expected.get(plan_id, Decimal(0))
    )
    for plan_id in mismatched[:MAX_LISTED]:
        report.breaches.append(
            f"plan {plan_id}: receivable in the ledger {to_money(booked.get(plan_id, 0))} "
            f"!= unpaid installments and fees {to_money(expected.get(plan_id, 0))}"
        )
    if len(mismatched) > MAX_LISTED:
        report.breaches.append(f"... and {len(mismatched) - MAX_LISTED} more plans whose receivable does not match")

    for row in negative_credit_balances(limit=MAX_LISTED):
        report.breaches.append(
            f"customer {row['party_id']}: credit balance below zero in {row['currency']} ({to_money(-row['total'])})"
        )
    overpaid = Installment.objects.filter(amount_paid__gt=F("amount_due")).values_list("id", flat=True)
    report.breaches.extend(f"installment {pk} is paid above its amount due" for pk in overpaid[:MAX_LISTED])
    for check in EXTRA_CHECKS:
        report.breaches.extend(check()[:MAX_LISTED])

    if record:
        LedgerCheckRun.objects.create(
            ok=report.ok,
            breach_count=len(report.breaches),
            breaches=report.breaches,
            duration_ms=int((time.perf_counter() - started) * 1000),
        )
    return report
