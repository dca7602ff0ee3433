"""The outbox relay (events whose delivery task was lost) and the notification sweep."""

from django.db import migrations

from config.beat import periodic_jobs

create, remove = periodic_jobs(
    [
        ("events-relay", "events.tasks.events_relay_task", ("interval", 1)),
        ("notifications-send", "events.tasks.notifications_send_task", ("interval", 10)),
    ]
)


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0001_events_and_notifications"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
