"""Autopay every morning (business time zone) and the reconciliation of pending payments."""

from django.db import migrations

from config.beat import periodic_jobs

create, remove = periodic_jobs(
    [
        ("autopay-daily", "payments.tasks.autopay_run_task", ("crontab", "0", "6")),
        ("payments-reconcile", "payments.tasks.payments_reconcile_task", ("interval", 10)),
    ]
)


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0006_credit_balance_and_autopay"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
