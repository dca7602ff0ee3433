"""The beat job that expires open offers and authorizations past their time."""

from django.conf import settings
from django.db import migrations

NAME = "plans-expire"
TASK = "bnpl.tasks.plans_expire_task"


def create_job(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=NAME).exists():
        return
    interval, _ = IntervalSchedule.objects.get_or_create(every=settings.BNPL_PLAN_EXPIRY_MINUTES, period="minutes")
    PeriodicTask.objects.create(name=NAME, task=TASK, interval=interval)


def remove_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0013_plan_consent_states"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_job, remove_job)]
