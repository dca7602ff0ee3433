"""Hourly pruning of expired Idempotency-Keys, in django-celery-beat's database schedule."""

from django.db import migrations

NAME = "idempotency-keys-prune"


def create_job(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if not PeriodicTask.objects.filter(name=NAME).exists():
        hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
        PeriodicTask.objects.create(name=NAME, task="payments.tasks.idempotency_keys_prune_task", interval=hourly)


def remove_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0004_payments_and_idempotency_keys"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_job, remove_job)]
