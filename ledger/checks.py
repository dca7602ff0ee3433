"""The ledger's invariant checks (DESIGN §3) and the runner that goes through them all.

The ledger checks what it alone knows: every journal entry sums to zero per currency. Each
app that keeps money state checks its own rules against the books and registers the check
from its ``AppConfig.ready()`` with ``register``: bnpl (receivable = unpaid installments and
fees, no installment paid above its amount due), payments (no credit balance below zero),
refunds (no plan refunded above its total). ``ledger_check`` runs them in the order they
were registered; ``check_ledger`` and the periodic ledger-check task go through it.

A check takes the report and returns its breaches: at most ``MAX_LISTED`` of them (and a
line saying how many more, if it likes); it may also fill in what it counted
(``report.plans_checked``).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.money import to_money
from ledger.models import LedgerCheckRun
from ledger.selectors import unbalanced_entries

MAX_LISTED = 20


@dataclass
class LedgerReport:
    breaches: list[str] = field(default_factory=list)
    plans_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.breaches


Check = Callable[[LedgerReport], list[str] | None]

_checks: dict[str, Check] = {}


def register(check: Check, *, name: str | None = None) -> Check:
    """Add ``check`` to the runner (again under the same name: replaced, not doubled)."""
    _checks[name or f"{check.__module__}.{check.__qualname__}"] = check
    return check


def registered() -> list[str]:
    """The names of the checks the runner goes through, in order."""
    return list(_checks)


def balanced_entries(report: LedgerReport) -> list[str]:
    """Invariant 1: every entry sums to zero per currency."""
    return [
        f"entry {row['entry_id']} does not balance in {row['currency']}: off by {to_money(row['total'])}"
        for row in unbalanced_entries(limit=MAX_LISTED)
    ]


register(balanced_entries, name="ledger.balanced_entries")


def ledger_check(*, record: bool = True) -> LedgerReport:
    """Run every registered check; returns the breaches found (and records the run when ``record``)."""
    started = time.perf_counter()
    report = LedgerReport()
    for check in list(_checks.values()):
        report.breaches.extend(check(report) or [])
    if record:
        LedgerCheckRun.objects.create(
            ok=report.ok,
            breach_count=len(report.breaches),
            breaches=report.breaches,
            duration_ms=int((time.perf_counter() - started) * 1000),
        )
    return report
