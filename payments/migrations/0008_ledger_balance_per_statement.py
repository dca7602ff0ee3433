"""The ledger's balance guard on PostgreSQL checks each INSERT statement's entries once,
instead of every posting at commit.

The deferred row trigger of 0002 summed a posting's entry once per posting: an entry of n
postings cost n sums of n rows, so an entry that gathers a sweep chunk's late fees (one
line per fee) cost millions of row visits. This trigger runs once per statement, with the
statement's new rows as a transition table, and refuses the statement if any entry it
touched does not sum to zero per currency. The rule is the same and stricter in time: an
entry's postings must be written by one statement (the ledger writes them so), and
nothing, raw SQL included, can leave an entry unbalanced even until commit.
"""

from django.db import migrations

FORWARD = """
DROP TRIGGER IF EXISTS posting_entry_balanced ON payments_posting;
DROP FUNCTION IF EXISTS ledger_entry_must_balance();

CREATE FUNCTION ledger_entries_must_balance() RETURNS trigger AS $$
DECLARE
    unbalanced bigint;
BEGIN
    -- Each entry's postings through the entry index (LATERAL): the planner knows nothing
    -- of the transition table's size and would otherwise read every posting there is.
    SELECT n.entry_id INTO unbalanced
    FROM (SELECT DISTINCT entry_id FROM new_postings) AS n
    CROSS JOIN LATERAL (
        SELECT SUM(p.amount) AS total FROM payments_posting p WHERE p.entry_id = n.entry_id GROUP BY p.currency
    ) AS sums
    WHERE sums.total <> 0
    ORDER BY n.entry_id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry % does not balance', unbalanced
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER posting_entries_balanced
    AFTER INSERT ON payments_posting
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_must_balance();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS posting_entries_balanced ON payments_posting;
DROP FUNCTION IF EXISTS ledger_entries_must_balance();

CREATE FUNCTION ledger_entry_must_balance() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM payments_posting
        WHERE entry_id = NEW.entry_id
        GROUP BY currency
        HAVING SUM(amount) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger entry % does not balance', NEW.entry_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER posting_entry_balanced
    AFTER INSERT ON payments_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_must_balance();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)  # the SQL has its own % placeholders


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("payments", "0007_autopay_jobs")]

    operations = [migrations.RunPython(forward, backward)]
