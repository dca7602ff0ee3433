"""The daily ledger check is now the ledger's task: its beat job (made by bnpl 0003 as
``payments.tasks.ledger_check_task``) runs ``ledger.tasks.ledger_check_task``. Only the row
that still names the old task changes, so a job an operator edited is left alone."""

from django.db import migrations

OLD, NEW = "payments.tasks.ledger_check_task", "ledger.tasks.ledger_check_task"


def _rename(apps, schema_editor, old, new):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.using(schema_editor.connection.alias).filter(task=old).update(task=new)


def forward(apps, schema_editor):
    _rename(apps, schema_editor, OLD, NEW)


def backward(apps, schema_editor):
    _rename(apps, schema_editor, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0001_initial"),
        ("bnpl", "0003_beat_schedule"),  # made the job
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forward, backward)]
