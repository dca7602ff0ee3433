"""Daily pruning of expired refresh-token records (simplejwt's outstanding and blacklisted
tokens), in django-celery-beat's database schedule: a quiet hour of the business day's night."""

from django.db import migrations

from core.beat import periodic_jobs

create, remove = periodic_jobs(
    [("outstanding-tokens-prune", "accounts.tasks.outstanding_tokens_prune_task", ("crontab", "40", "3"))]
)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_card_token_index"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
