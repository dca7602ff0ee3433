"""Leave room on each page of the users table (PostgreSQL only).

A status change (the sweep, a payment) then fits on the same page and, the column not
being indexed, is a heap-only update that rewrites no index.
"""

from django.db import migrations


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE accounts_user SET (fillfactor = 85)")


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE accounts_user RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_user_status_role_unindexed")]

    operations = [migrations.RunPython(forward, backward)]
