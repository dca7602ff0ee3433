"""The figures the dashboards serve from the cache, computed again every minute by beat."""

from django.db import migrations

from core.beat import periodic_jobs

create, remove = periodic_jobs([("figures-refresh", "ops.tasks.figures_refresh_task", ("interval", 1))])


class Migration(migrations.Migration):
    dependencies = [("django_celery_beat", "0019_alter_periodictasks_options")]

    operations = [migrations.RunPython(create, remove)]
