"""The beat jobs: the daily settlement (after midnight in the business time zone, settling
the day that ended; again at 06:30, which settles only what a lost chunk left of that day)
and the reconcile of payouts left PENDING."""

from django.db import migrations

from core.beat import periodic_jobs

create, remove = periodic_jobs(
    [
        ("settle-merchants", "settlements.tasks.settle_merchants_task", ("crontab", 30, "0,6")),
        ("payouts-reconcile", "settlements.tasks.payouts_reconcile_task", ("interval", 10)),
    ]
)


class Migration(migrations.Migration):
    dependencies = [
        ("settlements", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
