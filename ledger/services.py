"""The only writer of journal entries and postings: ``ledger_post`` for one entry, its
set-based sibling ``ledger_post_many`` for chunked jobs (a fixed number of queries), and
``ledger.sql`` for a statement that posts from its own rows. Imports no bnpl, payments or
refunds code: the callers say which plan and party a leg belongs to.
"""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from core.db import postgresql
from ledger.accounts import ACCOUNTS, ledger_account_ids
from ledger.models import JournalEntry, Posting


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
    batch_size = None if postgresql() else 5000
    Posting.objects.bulk_create(postings, batch_size=batch_size)
    return created
