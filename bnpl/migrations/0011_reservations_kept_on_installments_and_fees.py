"""What PENDING payments have claimed is kept on the installment and the fee it claims.

Before, each writer of installment state summed the PENDING payments' allocations itself;
now ``bnpl.services.installments`` keeps ``amount_reserved`` and is the one place that
says what is reserved. The columns are filled from the allocations of the payments
PENDING when this runs (none, usually: a payment is pending for the length of a card call).
The database default is 0, so rows written by hand-written statements need not name it.
"""

from decimal import Decimal

from django.conf import settings
from django.db import migrations, models
from django.db.models import Sum


def reservations_fill(apps, schema_editor):
    allocation = apps.get_model("payments", "PaymentAllocation")
    installment = apps.get_model("bnpl", "Installment")
    late_fee = apps.get_model("bnpl", "LateFee")
    db = schema_editor.connection.alias
    pending = allocation.objects.using(db).filter(payment__status="PENDING")
    for model, column in ((installment, "installment_id"), (late_fee, "late_fee_id")):
        held = pending.filter(**{f"{column}__isnull": False}).values(column).annotate(total=Sum("amount"))
        for row in held:
            model.objects.using(db).filter(pk=row[column]).update(amount_reserved=row["total"])


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0010_installment_sweep_index_with_plan"),
        ("payments", "0004_payments_and_idempotency_keys"),  # the allocations, as they still are
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="installment",
            name="amount_reserved",
            field=models.DecimalField(
                decimal_places=2, default=Decimal("0.00"), db_default=Decimal("0.00"), max_digits=12
            ),
        ),
        migrations.AddField(
            model_name="latefee",
            name="amount_reserved",
            field=models.DecimalField(
                decimal_places=2, default=Decimal("0.00"), db_default=Decimal("0.00"), max_digits=12
            ),
        ),
        migrations.AddConstraint(
            model_name="installment",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount_reserved__gte", 0)), name="installment_amount_reserved_not_negative"
            ),
        ),
        migrations.AddConstraint(
            model_name="latefee",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount_reserved__gte", 0)), name="late_fee_amount_reserved_not_negative"
            ),
        ),
        migrations.RunPython(reservations_fill, migrations.RunPython.noop, elidable=True),
    ]
