"""An allocation records what of it went to the customer's credit: the share of a payment
that was no longer owed when it succeeded (a refund or a waiver lowered it while it was
PENDING). Existing allocations credited nothing."""

from decimal import Decimal

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0011_reservations_kept_on_installments_and_fees"),
        ("payments", "0012_idempotency_key_moves_to_core"),
    ]

    operations = [
        migrations.AddField(
            model_name="paymentallocation",
            name="credited",
            field=models.DecimalField(
                db_default=Decimal("0.00"), decimal_places=2, default=Decimal("0.00"), max_digits=12
            ),
        ),
        migrations.AddConstraint(
            model_name="paymentallocation",
            constraint=models.CheckConstraint(
                condition=models.Q(("credited__gte", 0), ("credited__lte", models.F("amount"))),
                name="allocation_credited_within_amount",
            ),
        ),
    ]
