"""A refund's merchant loses its own index: refund_transaction_per_merchant (merchant,
transaction_id) serves every lookup by merchant, and beside it the planner chose, on stale
statistics, the single-column index for a transaction id's check, scanning all of a
merchant's refunds on every refund request.

Only the index is dropped (by the name Django gave it, the same on every backend). Altering
the field itself would also drop and re-add its foreign key, which PostgreSQL validates
again over the whole table under an exclusive lock."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

INDEX = "refunds_refund_merchant_id_bc44f600"


class Migration(migrations.Migration):
    dependencies = [
        ("refunds", "0003_refund_merchant_fee_returned"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="refund",
                    name="merchant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    reverse_sql=f"CREATE INDEX IF NOT EXISTS {INDEX} ON refunds_refund (merchant_id)",
                ),
            ],
        ),
    ]
