"""Periodic jobs in django-celery-beat's database scheduler, created by data migrations
(and so editable in the admin afterwards)."""

from django.conf import settings


def periodic_jobs(jobs: list[tuple[str, str, tuple]]):
    """``(create, remove)`` functions for ``migrations.RunPython`` that add the ``jobs``
    ``(name, dotted task, ("interval", minutes) | ("crontab", minute, hour))``; a job that
    already exists by name is left as the operators edited it."""

    def create(apps, schema_editor):
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        for name, task, schedule in jobs:
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

    def remove(apps, schema_editor):
        apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[j[0] for j in jobs]).delete()

    return create, remove
