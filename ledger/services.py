"""The only writer of journal entries and postings: ``ledger_post`` for one entry, its
set-based sibling ``ledger_post_many`` for chunked jobs (a fixed number of queries), and
``ledger.sql`` for a statement that posts from its own rows. Imports no bnpl, payments or
refunds code: the callers say which plan and party a leg belongs to.
"""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

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
    if not postgresql():
        return _post(kind=kind, entries=[(plan_id, memo, legs)])[0]
    kept = [leg for leg in legs if leg.amount != 0]
    _check_balanced(kept)
    return _write_one(kind, plan_id, memo, kept)


# One entry and its postings in one statement (PostgreSQL): every payment, refund and waiver
# posts one, and the entry's id is needed only by its postings. The balance trigger checks
# the postings at the end of the statement, as it does for the two-statement path.
_ENTRY_WITH_POSTINGS_SQL = f"""
WITH entry AS (
  INSERT INTO {JournalEntry._meta.db_table} (kind, memo, plan_id, created_at) VALUES (%s, %s, %s, %s) RETURNING id
), legs AS (
  INSERT INTO {Posting._meta.db_table} (entry_id, account_id, amount, currency, plan_id, party_id)
  SELECT entry.id, leg.account, leg.amount, leg.currency, leg.plan, leg.party
  FROM entry, UNNEST(%s::bigint[], %s::numeric[], %s::varchar[], %s::bigint[], %s::bigint[])
    WITH ORDINALITY AS leg(account, amount, currency, plan, party, n)
  ORDER BY leg.n
)
SELECT id FROM entry
"""  # noqa: S608 - table names from the models  # nosec B608


def _write_one(kind: str, plan_id: int | None, memo: str, legs: list[Leg]) -> JournalEntry:
    accounts = ledger_account_ids()
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _ENTRY_WITH_POSTINGS_SQL,
            [
                *(kind, memo, plan_id, now),
                [accounts[leg.account] for leg in legs],
                [leg.amount for leg in legs],
                [leg.currency for leg in legs],
                [leg.plan_id for leg in legs],
                [leg.party_id for leg in legs],
            ],
        )
        (entry_id,) = cursor.fetchone()
    return JournalEntry.from_db(
        connection.alias, ["id", "kind", "memo", "plan_id", "created_at"], [entry_id, kind, memo, plan_id, now]
    )


def ledger_post_many(*, kind: str, entries: list[tuple[int | None, str, list[Leg]]]) -> int:
    """Post many balanced entries ``(plan_id, memo, legs)`` in a fixed number of queries.

    For set-based jobs and batches (the sweep's late fees, autopay's payments, bulk demo
    data); one entry is posted as ``ledger_post`` posts it. Returns the entries posted.
    """
    if postgresql() and len(entries) == 1:
        ((plan_id, memo, legs),) = entries
        ledger_post(kind=kind, legs=legs, plan_id=plan_id, memo=memo)
        return 1
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
