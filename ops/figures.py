"""Every figure served from the cache (``bnpl.analytics.figures_cached``), by name, and their
computation ahead of time (beat, ``ops.tasks.figures_refresh_task``), so that no request has
to compute them while beat runs.

The three pages share their two biggest queries (the ledger's money totals and the plans'
figures, over every posting and every installment): a refresh makes each once. It reads
where the analytics view reads, the replica when there is one: what it computes is served
as of when it was computed anyway.

Per-merchant analytics are not here: each is computed when its merchant (or an operator for
it) asks and finds it older than ``FIGURES_CACHE_SECONDS``, by one request at a time."""

import functools

from config.db_router import reading_from_replica


def refreshed_figures() -> dict:
    """``{figures_cached name: the function that computes it}``; the functions share the
    money totals and the plans' figures, each computed once, when the first needs it."""
    from bnpl.analytics import dashboard_cache_name, merchant_dashboard, plan_figures
    from bnpl.models import Plan
    from ledger.selectors import money_totals
    from ops.dashboard import FIGURES, WORKERS, celery_ping, health_figures
    from ops.health import publishes_tasks
    from ops.metrics import BUSINESS, business_figures

    money = functools.cache(money_totals)
    plans = functools.cache(lambda: plan_figures(plans=Plan.objects.all()))
    figures = {
        FIGURES: lambda: health_figures(plans=plans(), money=money()),
        dashboard_cache_name(None): lambda: merchant_dashboard(
            plans=Plan.objects.all(), money=money(), figures=plans()
        ),
        BUSINESS: lambda: business_figures(money=money()),
    }
    if publishes_tasks():
        figures[WORKERS] = celery_ping
    return figures


def figures_refresh_all() -> list[str]:
    """Compute every figure of ``refreshed_figures()`` into the cache, one after the other,
    each unless another process is computing it now: the names computed."""
    from bnpl.analytics import figures_refresh

    with reading_from_replica():
        return [name for name, compute in refreshed_figures().items() if figures_refresh(name, compute) is not None]
