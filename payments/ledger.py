"""The ledger kernel: post balanced entries, read balances. Imports no bnpl or refunds code.

Accounts (signed postings: debit positive, credit negative):
- ``customer_receivable`` (asset): what customers owe, per plan;
- ``merchant_payable`` (liability): what the platform owes merchants for plans sold;
- ``gateway_clearing`` (asset): money collected through the payment gateway;
- ``fee_income`` (income): late fees charged (a waiver reverses one);
- ``customer_credit`` (liability): what the platform holds for a customer (refunds taken
  as credit, overpayments), per customer (``party``); spent first by the next payment.
"""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.core.management.color import no_style
from django.db import connection, connections, router, transaction
from django.db.models import Sum

from ledger.models import JournalEntry, LedgerAccount, Posting

CUSTOMER_RECEIVABLE = "customer_receivable"
MERCHANT_PAYABLE = "merchant_payable"
GATEWAY_CLEARING = "gateway_clearing"
FEE_INCOME = "fee_income"
CUSTOMER_CREDIT = "customer_credit"

ACCOUNTS = {
    CUSTOMER_RECEIVABLE: ("Customer receivable", LedgerAccount.Kind.ASSET),
    MERCHANT_PAYABLE: ("Merchant payable", LedgerAccount.Kind.LIABILITY),
    GATEWAY_CLEARING: ("Gateway clearing", LedgerAccount.Kind.ASSET),
    FEE_INCOME: ("Late fee income", LedgerAccount.Kind.INCOME),
    CUSTOMER_CREDIT: ("Customer credit balance", LedgerAccount.Kind.LIABILITY),
}


class UnbalancedEntry(ValueError):
    """The legs of an entry do not sum to zero per currency."""


@dataclass(frozen=True)
class Leg:
    """One side of an entry: ``amount`` is signed (debit positive, credit negative)."""

    account: str
    amount: Decimal
    currency: str
    plan_id: int | None = None
    party_id: int | None = None


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
        return  # the payments app was migrated backwards
    with transaction.atomic(using=using):
        ledger_accounts(using=using)


def _check_balanced(legs: list[Leg]) -> None:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for leg in legs:
        if leg.account not in ACCOUNTS:
            raise ValueError(f"unknown ledger account {leg.account!r}")
        totals[leg.currency] += leg.amount
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced:
        raise UnbalancedEntry(f"entry does not balance: {unbalanced}")


def ledger_post(*, kind: str, legs: list[Leg], plan_id: int | None = None, memo: str = "") -> JournalEntry:
    """Post one balanced entry with its legs (zero legs dropped). Raises UnbalancedEntry.

    Call it inside the transaction of the state change it records.
    """
    return _post(kind=kind, entries=[(plan_id, memo, legs)])[0]


def ledger_post_many(*, kind: str, entries: list[tuple[int | None, str, list[Leg]]]) -> int:
    """Post many balanced entries ``(plan_id, memo, legs)`` in a fixed number of queries.

    For set-based jobs (the sweep's late fees, bulk demo data). Returns the entries posted.
    """
    return len(_post(kind=kind, entries=entries)) if entries else 0


def _post(*, kind: str, entries: list[tuple[int | None, str, list[Leg]]]) -> list[JournalEntry]:
    kept = [(plan_id, memo, [leg for leg in legs if leg.amount != 0]) for plan_id, memo, legs in entries]
    for _, _, legs in kept:
        _check_balanced(legs)  # before any write: a refused entry leaves the caller's transaction usable
    return _write(kind, kept)


# No savepoint of its own inside a caller's transaction (the entry was checked; a database
# error fails the caller's whole change anyway), and two fewer statements per posting.
@transaction.atomic(savepoint=False)
def _write(kind: str, kept: list[tuple[int | None, str, list[Leg]]]) -> list[JournalEntry]:
    accounts = ledger_account_ids()
    created = JournalEntry.objects.bulk_create(
        [JournalEntry(kind=kind, plan_id=plan_id, memo=memo) for plan_id, memo, _ in kept]
    )
    postings = [
        Posting(
            entry=entry,
            account_id=accounts[leg.account],
            amount=leg.amount,
            currency=leg.currency,
            plan_id=leg.plan_id,
            party_id=leg.party_id,
        )
        for entry, (_, _, legs) in zip(created, kept, strict=True)
        for leg in legs
    ]
    # PostgreSQL checks the balance of each INSERT statement's entries (payments migration
    # 0008), so an entry's postings go in one statement: all of them at once, which its
    # bulk insert allows whatever their number. SQLite limits a statement's parameters.
    batch_size = None if connection.vendor == "postgresql" else 5000
    Posting.objects.bulk_create(postings, batch_size=batch_size)
    return created


def unbalanced_entries(limit: int = 20) -> list[dict]:
    """Invariant 1: entries whose postings do not sum to zero in some currency."""
    rows = (
        Posting.objects.values("entry_id", "currency")
        .annotate(total=Sum("amount"))
        .exclude(total=0)
        .order_by("entry_id")[:limit]
    )
    return list(rows)


def receivable_by_plan() -> dict[int, Decimal]:
    """The customer-receivable balance of every plan that has postings."""
    rows = (
        Posting.objects.filter(account__code=CUSTOMER_RECEIVABLE, plan_id__isnull=False)
        .values("plan_id")
        .annotate(total=Sum("amount"))
    )
    return {row["plan_id"]: row["total"] for row in rows}


def credit_balances(*, customer_id: int) -> dict[str, Decimal]:
    """A customer's credit balance per currency (what the platform holds for them), from
    the ledger: the credit account is a liability, so the balance is minus its postings."""
    rows = (
        Posting.objects.filter(account__code=CUSTOMER_CREDIT, party_id=customer_id)
        .values("currency")
        .annotate(total=Sum("amount"))
        .order_by("currency")
    )
    return {row["currency"]: (-row["total"]).quantize(Decimal("0.01")) for row in rows if row["total"]}


def negative_credit_balances(limit: int = 20) -> list[dict]:
    """Customers whose credit balance is below zero in some currency (spent more than held)."""
    rows = (
        Posting.objects.filter(account__code=CUSTOMER_CREDIT)
        .values("party_id", "currency")
        .annotate(total=Sum("amount"))
        .filter(total__gt=0)
        .order_by("party_id")[:limit]
    )
    return list(rows)


def posted_total(*, kinds: list[str], account: str, plans) -> Decimal:
    """Sum of the postings to ``account`` in entries of ``kinds`` for the ``plans`` queryset."""
    total = Posting.objects.filter(entry__kind__in=kinds, account__code=account, plan__in=plans).aggregate(
        total=Sum("amount")
    )["total"]
    return (total or Decimal("0")).quantize(Decimal("0.01"))
