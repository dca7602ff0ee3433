"""Helpers for migrations that move a model's state from one app to another."""


def content_types_moved(models: list[str], *, source: str, target: str):
    """``(forward, backward)`` functions for ``migrations.RunPython`` that move the content
    types of ``models`` (lower-case model names) from app ``source`` to app ``target`` and
    back, so the admin's history and any permission given on them follow the rows. A type
    already on the other side (made by ``post_migrate``) is left; the old one stays stale."""

    def move(apps, schema_editor, frm: str, to: str) -> None:
        ContentType = apps.get_model("contenttypes", "ContentType")
        db = schema_editor.connection.alias
        for model in models:
            if ContentType.objects.using(db).filter(app_label=to, model=model).exists():
                continue
            ContentType.objects.using(db).filter(app_label=frm, model=model).update(app_label=to)

    def forward(apps, schema_editor):
        move(apps, schema_editor, source, target)

    def backward(apps, schema_editor):
        move(apps, schema_editor, target, source)

    return forward, backward


def periodic_task_renamed(old: str, new: str):
    """``(forward, backward)`` functions for ``migrations.RunPython`` that point the beat
    jobs running the task ``old`` at ``new`` (a task that moved to another module). Only
    rows naming the old task change, so a job an operator pointed elsewhere is left alone."""

    def rename(apps, schema_editor, source: str, target: str) -> None:
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        PeriodicTask.objects.using(schema_editor.connection.alias).filter(task=source).update(task=target)

    return (lambda apps, editor: rename(apps, editor, old, new)), (lambda apps, editor: rename(apps, editor, new, old))
