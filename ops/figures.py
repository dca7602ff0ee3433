"""Every figure served from the cache (``bnpl.analytics.figures_cached``), by name, and their
computation ahead of time (beat, ``ops.tasks.figures_refresh_task``), so that no request has
to compute them while beat runs.

Per-merchant analytics are not here: each is computed when its merchant (or an operator for
it) asks and finds it older than ``FIGURES_CACHE_SECONDS``, by one request at a time."""

from config.db_router import reading_from_replica


def _platform_analytics() -> dict:
    from bnpl.analytics import merchant_dashboard
    from bnpl.models import Plan

    # Where the analytics view reads them: the replica, when there is one.
    with reading_from_replica():
        return merchant_dashboard(plans=Plan.objects.all())


def refreshed_figures() -> dict:
    """``{figures_cached name: the function that computes it}``."""
    from bnpl.analytics import dashboard_cache_name
    from ops.dashboard import FIGURES, WORKERS, celery_ping, health_figures
    from ops.health import publishes_tasks
    from ops.metrics import BUSINESS, business_figures

    figures = {FIGURES: health_figures, BUSINESS: business_figures, dashboard_cache_name(None): _platform_analytics}
    if publishes_tasks():
        figures[WORKERS] = celery_ping
    return figures


def figures_refresh_all() -> list[str]:
    """Compute every figure of ``refreshed_figures()`` into the cache, one after the other,
    each unless another process is computing it now: the names computed."""
    from bnpl.analytics import figures_refresh

    return [name for name, compute in refreshed_figures().items() if figures_refresh(name, compute) is not None]
