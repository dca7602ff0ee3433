"""The Celery application, configured from Django settings (``CELERY_*``)."""

import os

from celery import Celery
from celery.signals import setup_logging
from django.core import checks

from config import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before any connection: redis:// brokers use kombu's Redis transport with the fixes a worker
# needs to live through a Redis that stalls or goes away (config/broker.py).
broker.register()

app = Celery("bnpl")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_django_logging(**kwargs) -> None:
    """Leave logging to settings.LOGGING (JSON lines, PII masked): with a receiver here,
    Celery neither replaces the handlers nor changes the root level (LOG_LEVEL rules)."""


READINESS_QUEUE = "bnpl.readiness"


def broker_publish_check(*, timeout: float = 1.0) -> None:
    """Publish one message to the broker the app publishes its tasks to (its URL, transport,
    options and serializer), then purge it; raises whatever stops the app from publishing: a
    transport that cannot be loaded, a broker that is down, stalled or refuses the write.

    A connection of its own with ``timeout``-second socket timeouts and no retry, so that a
    probe answers within its deadline (a Kubernetes probe gives 3 s) even when the broker
    hangs. Nothing is left in any queue a worker reads.
    """
    from kombu import Queue

    # One connection attempt: kombu would otherwise retry connecting for the whole of
    # broker_connection_timeout (4 s) before giving up.
    options = {
        **app.conf.broker_transport_options,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "max_retries": 0,
    }
    probe = Queue(READINESS_QUEUE, routing_key=READINESS_QUEUE, durable=False)
    with app.connection_for_write(transport_options=options, connect_timeout=timeout) as connection:
        producer = connection.Producer(serializer=app.conf.task_serializer)
        producer.publish({"probe": "readiness"}, exchange="", routing_key=READINESS_QUEUE, declare=[probe])
        probe(connection.default_channel).purge()


@checks.register(checks.Tags.compatibility)
def check_broker_transport(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """``manage.py check`` fails when the configured broker's transport cannot be loaded (its
    library, or an extra it needs, is not installed): the worker could not start and every
    publish would fail. No network: only the transport is loaded."""
    try:
        with app.connection_for_write() as connection:
            connection.transport  # noqa: B018 - loading the transport class is the check
    except Exception as exc:  # any failure to load it is the finding
        return [
            checks.Error(
                f"The Celery broker transport for {app.conf.broker_url.split(':', 1)[0]}:// cannot be loaded: "
                f"{exc.__class__.__name__}: {exc}",
                hint="Install the runtime lock (requirements.txt), which pins celery[redis] and what it needs.",
                id="bnpl.E001",
            )
        ]
    return []
