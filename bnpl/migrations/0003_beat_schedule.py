"""The periodic jobs, in django-celery-beat's database scheduler (editable in the admin)."""

from django.conf import settings
from django.db import migrations

JOBS = [
    # (name, task, schedule)
    ("overdue-sweep", "bnpl.tasks.overdue_sweep_task", ("interval", settings.BNPL_OVERDUE_SWEEP_MINUTES)),
    ("reminders-daily", "bnpl.tasks.reminders_send_task", ("crontab", "0", "9")),
    ("ledger-check-daily", "payments.tasks.ledger_check_task", ("crontab", "30", "2")),
]


def create_jobs(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, schedule in JOBS:
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        if schedule[0] == "interval":
            interval, _ = IntervalSchedule.objects.get_or_create(every=schedule[1], period="minutes")
            PeriodicTask.objects.create(name=name, task=task, interval=interval)
        else:
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=schedule[1],
                hour=schedule[2],
                day_of_week="*",
                day_of_month="*",
                month_of_year="*",
                timezone=settings.BNPL_TIME_ZONE,
            )
            PeriodicTask.objects.create(name=name, task=task, crontab=crontab)


def remove_jobs(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[j[0] for j in JOBS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0002_installments_fees_reminders_sweeps"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_jobs, remove_jobs)]
