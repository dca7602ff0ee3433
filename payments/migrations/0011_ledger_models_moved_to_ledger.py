"""The models of the books now belong to the ledger app (ledger migration 0001): they leave
the payments state only. No table, row or trigger is touched; ``db_table`` in the ledger's
models keeps the tables' names."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0010_idempotency_key_principal_index_dropped"),
        ("ledger", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="Posting"),
                migrations.DeleteModel(name="JournalEntry"),
                migrations.DeleteModel(name="LedgerAccount"),
                migrations.DeleteModel(name="LedgerCheckRun"),
            ],
            database_operations=[],
        ),
    ]
