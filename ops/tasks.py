"""The periodic computation of the figures the dashboards serve from the cache."""

from celery import shared_task
from django.db import OperationalError


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def figures_refresh_task() -> list[str]:
    """Compute again, into the cache, every figure the pages serve from it (beat: every minute,
    within ``FIGURES_CACHE_SECONDS``): the health dashboard's figures and the workers' ping,
    /metrics' business series, the platform's analytics dashboard. Each is skipped when
    another process is computing it now. Returns the names computed."""
    from ops.figures import figures_refresh_all

    return figures_refresh_all()
