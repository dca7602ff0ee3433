"""The chart of accounts (signed postings: debit positive, credit negative):

- ``customer_receivable`` (asset): what customers owe, per plan;
- ``merchant_payable`` (liability): what the platform owes merchants for plans sold, less
  their fees, per merchant (``party``);
- ``gateway_clearing`` (asset): money collected through the payment gateway;
- ``fee_income`` (income): late fees charged (a waiver reverses one), and nothing else;
- ``customer_credit`` (liability): what the platform holds for a customer (refunds taken
  as credit, overpayments), per customer (``party``); spent first by the next payment;
- ``merchant_fee_income`` (income): merchants' fees, charged when a plan becomes ACTIVE
  (taken from the merchant's payable), less those refunds returned;
- ``payout_clearing`` (asset): money sent to merchants' bank accounts by payouts (the
  merchant's payable lowered when the payout gateway says it is paid).

An account's fixed id is its place here: a new account goes at the end.
"""

from django.core.management.color import no_style
from django.db import connections, router, transaction

from ledger.models import LedgerAccount

CUSTOMER_RECEIVABLE = "customer_receivable"
MERCHANT_PAYABLE = "merchant_payable"
GATEWAY_CLEARING = "gateway_clearing"
FEE_INCOME = "fee_income"
CUSTOMER_CREDIT = "customer_credit"
MERCHANT_FEE_INCOME = "merchant_fee_income"
PAYOUT_CLEARING = "payout_clearing"

ACCOUNTS = {
    CUSTOMER_RECEIVABLE: ("Customer receivable", LedgerAccount.Kind.ASSET),
    MERCHANT_PAYABLE: ("Merchant payable", LedgerAccount.Kind.LIABILITY),
    GATEWAY_CLEARING: ("Gateway clearing", LedgerAccount.Kind.ASSET),
    FEE_INCOME: ("Late fee income", LedgerAccount.Kind.INCOME),
    CUSTOMER_CREDIT: ("Customer credit balance", LedgerAccount.Kind.LIABILITY),
    MERCHANT_FEE_INCOME: ("Merchant fee income", LedgerAccount.Kind.INCOME),
    PAYOUT_CLEARING: ("Payout clearing", LedgerAccount.Kind.ASSET),
}


def ledger_accounts(*, using: str = "default") -> dict[str, LedgerAccount]:
    """The chart of accounts by code, created on first use.

    An account made here takes a fixed id (its place in ``ACCOUNTS``), so a chart made
    again (a test database emptied and refilled) has the ids it had, and a process that
    keeps them (``ledger_account_ids``) stays right. Accounts that exist keep theirs (and
    a fixed id another account already has is not taken).
    """
    accounts = LedgerAccount.objects.using(using)
    existing = {account.code: account for account in accounts.filter(code__in=ACCOUNTS)}
    missing = [code for code in ACCOUNTS if code not in existing]
    taken = {account.pk for account in existing.values()}
    for code in missing:
        name, kind = ACCOUNTS[code]
        fixed = {"id": _ACCOUNT_IDS[code]} if _ACCOUNT_IDS[code] not in taken else {}
        existing[code], _ = accounts.get_or_create(code=code, defaults={**fixed, "name": name, "kind": kind})
    if missing:
        # Ids were given: the table's sequence goes past them, for any account made without one.
        connection = connections[using]
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), [LedgerAccount]):
                cursor.execute(sql)
    return existing


_ACCOUNT_IDS = {code: number for number, code in enumerate(ACCOUNTS, start=1)}


# The accounts' ids by database alias, read once per process: every posting needs them, and
# an account never goes away (its postings protect it). Only ids that were all found, not
# just created, are kept: a creation may still be rolled back. The chart is created after
# every migrate and flush (ledger_chart_ensure), which also forgets the ids kept.
_account_ids: dict[str, dict[str, int]] = {}


def ledger_account_ids() -> dict[str, int]:
    """The chart of accounts' ids by code (created on first use), kept for the process."""
    alias = router.db_for_write(LedgerAccount)
    if alias not in _account_ids:
        found = dict(LedgerAccount.objects.using(alias).filter(code__in=ACCOUNTS).values_list("code", "pk"))
        if len(found) < len(ACCOUNTS):
            return {code: account.pk for code, account in ledger_accounts().items()}
        _account_ids[alias] = found
    return _account_ids[alias]


def ledger_chart_ensure(*, using: str = "default", **_) -> None:
    """Create the chart of accounts if missing and forget the ids kept (a ``post_migrate``
    receiver: after a migrate, and after a flush that emptied the tables)."""
    _account_ids.clear()
    if LedgerAccount._meta.db_table not in connections[using].introspection.table_names():
        return  # the ledger's tables were migrated away
    with transaction.atomic(using=using):
        ledger_accounts(using=using)
