"""PostgreSQL guards for the ledger, so that not even raw SQL can break the books.

- A deferred constraint trigger checks, at commit, that every entry touched by the
  transaction sums to zero per currency.
- Row triggers refuse UPDATE and DELETE on entries and postings (append-only).

Other databases rely on the model layer (payments.models.AppendOnlyModel) and check_ledger.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION ledger_entry_must_balance() RETURNS trigger AS $$
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

CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only: post a correcting entry', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER posting_append_only BEFORE UPDATE OR DELETE ON payments_posting
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER journalentry_append_only BEFORE UPDATE OR DELETE ON payments_journalentry
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS journalentry_append_only ON payments_journalentry;
DROP TRIGGER IF EXISTS posting_append_only ON payments_posting;
DROP FUNCTION IF EXISTS ledger_append_only();
DROP TRIGGER IF EXISTS posting_entry_balanced ON payments_posting;
DROP FUNCTION IF EXISTS ledger_entry_must_balance();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)  # the SQL has its own % placeholders


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
