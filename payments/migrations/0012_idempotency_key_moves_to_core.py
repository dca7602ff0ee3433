"""The Idempotency-Key records now belong to core (core 0001): payments forgets the model in
Django's state only; the table, kept by core under its old name, is not dropped."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0011_ledger_models_moved_to_ledger"),
        ("core", "0001_idempotency_key_from_payments"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="IdempotencyKey")],
            database_operations=[],
        ),
    ]
