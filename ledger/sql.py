"""The ledger's hand-written SQL: the only SQL that writes journal entries and postings.

A hot path that writes its own rows in one PostgreSQL statement (plan origination, the
sweep's late fees) posts to the ledger in that same statement: it names two relations of
its statement (common table expressions) with the entries and their legs, and puts
``ledger_post_ctes()`` in its ``WITH`` list. The ledger writes the rows from them; the
balance guard (the statement trigger on postings) refuses the whole statement if an entry
does not sum to zero per currency. Tests hold each path equal to ``ledger_post`` /
``ledger_post_many`` (bnpl/tests: origination, late fees).

The entries relation has the columns
    ``entry_key`` (any value unique in the statement), ``kind`` (a ``JournalEntry.Kind``),
    ``memo``, ``plan_id`` (or NULL), ``created_at``;
the legs relation
    ``entry_key``, ``account_id`` (from ``ledger_account_ids()``), ``amount`` (signed:
    debit positive, credit negative; never zero), ``currency``, ``plan_id``, ``party_id``,
    ``leg_order`` (postings of an entry are written, and numbered, in this order).
"""

from ledger.models import JournalEntry, Posting

_ENTRIES = JournalEntry._meta.db_table
_POSTINGS = Posting._meta.db_table


def ledger_post_ctes(*, entries: str, legs: str) -> str:
    """``WITH`` items (to follow a comma) that post the entries of relation ``entries``
    with the legs of relation ``legs``: one journal entry per row of ``entries``, its id
    drawn from the entries' own sequence, so entry and postings are written from the same
    rows with no join back. Adds the relations ``ledger_entries`` (``entry_key``,
    ``entry_id``) and ``ledger_postings`` (the postings written: ``entry_id``,
    ``account_id``) to the statement."""
    if not (entries.isidentifier() and legs.isidentifier()):
        raise ValueError("entries and legs name relations of the statement")
    # Table names from the models, relation names checked above.
    return f"""
ledger_entries AS MATERIALIZED (
  SELECT e.entry_key, e.kind, e.memo, e.plan_id, e.created_at,
         nextval(pg_get_serial_sequence('{_ENTRIES}', 'id')) AS entry_id
  FROM {entries} e
), ledger_entries_written AS (
  INSERT INTO {_ENTRIES} (id, kind, memo, plan_id, created_at)
  SELECT entry_id, kind, memo, plan_id, created_at FROM ledger_entries ORDER BY entry_id
), ledger_postings AS (
  INSERT INTO {_POSTINGS} (entry_id, account_id, amount, currency, plan_id, party_id)
  SELECT e.entry_id, l.account_id, l.amount, l.currency, l.plan_id, l.party_id
  FROM {legs} l JOIN ledger_entries e ON e.entry_key = l.entry_key
  ORDER BY e.entry_id, l.leg_order
  RETURNING entry_id, account_id
)"""  # noqa: S608 - table names from the models, relation names checked  # nosec B608
