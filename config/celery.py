"""The Celery application, configured from Django settings (``CELERY_*``)."""

import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("bnpl")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_django_logging(**kwargs) -> None:
    """Leave logging to settings.LOGGING (JSON lines, PII masked): with a receiver here,
    Celery neither replaces the handlers nor changes the root level (LOG_LEVEL rules)."""
