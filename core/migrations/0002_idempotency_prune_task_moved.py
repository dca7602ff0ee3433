"""The hourly prune of Idempotency-Keys is core's task now, beside the keys: its beat job
(made by payments 0005 as ``payments.tasks.idempotency_keys_prune_task``) runs
``core.tasks.idempotency_keys_prune_task``. The old name stays a task for messages an
earlier release queued."""

from django.db import migrations

from core.migration_ops import periodic_task_renamed

forward, backward = periodic_task_renamed(
    "payments.tasks.idempotency_keys_prune_task", "core.tasks.idempotency_keys_prune_task"
)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_idempotency_key_from_payments"),
        ("payments", "0005_idempotency_prune_schedule"),  # made the job
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forward, backward)]
