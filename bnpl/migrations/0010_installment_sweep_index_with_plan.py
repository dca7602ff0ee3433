"""The sweep's index on installments carries the plan too: (status, due date, plan).

A sweep chunk looks for the past-due (and the overdue) installments of its range of plans;
with the plan in the index the other chunks' rows are filtered out in the index instead of
fetched from the table, which cost a chunk of a million-installment sweep up to a hundred
thousand table reads. The new index is built before the old one is dropped.
"""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0009_latefee_fewer_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="installment",
            index=models.Index(fields=["status", "due_date", "plan"], name="installment_status_due_plan"),
        ),
        migrations.RemoveIndex(model_name="installment", name="installment_status_due"),
    ]
