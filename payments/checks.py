"""The payments part of the ledger invariants, registered with the ledger's runner: no
customer's credit balance (what the platform holds for them) is below zero."""

from core.money import to_money
from ledger.checks import MAX_LISTED, LedgerReport
from ledger.selectors import negative_credit_balances


def no_negative_credit_balance(report: LedgerReport) -> list[str]:
    return [
        f"customer {row['party_id']}: credit balance below zero in {row['currency']} ({to_money(-row['total'])})"
        for row in negative_credit_balances(limit=MAX_LISTED)
    ]
