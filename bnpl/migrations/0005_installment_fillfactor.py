"""Leave room on each page of the installments table (PostgreSQL only).

An installment is rewritten a few times in its life (overdue, partly paid, paid); with
free space on its page the new version stays beside the old one instead of extending the
table, which is most of the cost of the sweep's bulk update.
"""

from django.db import migrations


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE bnpl_installment SET (fillfactor = 85)")


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE bnpl_installment RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("bnpl", "0004_installment_plan_index_via_unique")]

    operations = [migrations.RunPython(forward, backward)]
