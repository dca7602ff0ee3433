"""A late fee is PAID or WAIVED, never both (DESIGN §3, invariant 5): a waiver is recorded
(``waived_at``) exactly on a WAIVED fee.

On PostgreSQL the constraint is added NOT VALID: it holds for every row written from now
on, without refusing the migration over a fee that an earlier release left both waived and
paid (a race it had); ``check_ledger`` reports such fees for an operator to settle, after
which ``ALTER TABLE bnpl_latefee VALIDATE CONSTRAINT late_fee_waived_iff_recorded`` holds
the old rows too. Elsewhere it is added as usual.
"""

from django.db import migrations, models

CONSTRAINT = models.CheckConstraint(
    condition=models.Q(status="WAIVED", waived_at__isnull=False)
    | (~models.Q(status="WAIVED") & models.Q(waived_at__isnull=True)),
    name="late_fee_waived_iff_recorded",
)


def add(apps, schema_editor):
    model = apps.get_model("bnpl", "LateFee")
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.add_constraint(model, CONSTRAINT)
        return
    table = schema_editor.quote_name(model._meta.db_table)
    schema_editor.execute(f"ALTER TABLE {table} ADD {CONSTRAINT.constraint_sql(model, schema_editor)} NOT VALID")


def remove(apps, schema_editor):
    schema_editor.remove_constraint(apps.get_model("bnpl", "LateFee"), CONSTRAINT)


class Migration(migrations.Migration):
    dependencies = [("bnpl", "0011_reservations_kept_on_installments_and_fees")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddConstraint(model_name="latefee", constraint=CONSTRAINT)],
            database_operations=[migrations.RunPython(add, remove)],
        )
    ]
