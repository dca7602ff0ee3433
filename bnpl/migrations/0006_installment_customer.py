"""Copy the plan's customer onto each installment (filled from the plan, then required)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def fill_customer(apps, schema_editor):
    Installment = apps.get_model("bnpl", "Installment")
    Plan = apps.get_model("bnpl", "Plan")
    Installment.objects.update(
        customer_id=models.Subquery(Plan.objects.filter(pk=models.OuterRef("plan_id")).values("customer_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0005_installment_fillfactor"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="installment",
            name="customer",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="installments",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(fill_customer, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="installment",
            name="customer",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="installments",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
