"""The operators' health dashboard: components and figures, as HTML or JSON (same data).

Answers 503 when the database is down, and still renders, saying so.
"""

import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.health import check_database, check_redis
from config.throttling import AnonThrottle, UserThrottle, throttled_view

CHART_DAYS = 30


def _celery(*, broker_up: bool = True) -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"status": "ok", "detail": "eager: tasks run in the web process"}
    if not broker_up:
        # No worker can be reached through a broker that is down; a ping would only wait
        # out the broker's timeouts (seconds, on a hung Redis) before saying so.
        return {"status": "down", "error": "broker unreachable"}
    from config.celery import app

    started = time.perf_counter()
    try:
        replies = app.control.ping(timeout=0.5) or []
    except Exception as exc:
        return {"status": "down", "error": exc.__class__.__name__}
    latency = round((time.perf_counter() - started) * 1000, 2)
    return {"status": "ok" if replies else "down", "workers": len(replies), "latency_ms": latency}


def _last_sweep() -> dict:
    from bnpl.models import SweepRun

    run = SweepRun.objects.filter(skipped=False, finished_at__isnull=False).order_by("-id").first()
    if run is None:
        return {"status": "never"}
    stale = timezone.now() - run.started_at > timedelta(minutes=3 * settings.BNPL_OVERDUE_SWEEP_MINUTES)
    return {
        "status": "stale" if stale else "ok",
        "at": run.started_at.isoformat(),
        "marked_overdue": run.installments_marked_overdue,
        "marked_debt": run.customers_marked_debt,
        "duration_ms": run.duration_ms,
    }


def _last_ledger_check() -> dict:
    from payments.models import LedgerCheckRun

    run = LedgerCheckRun.objects.order_by("-id").first()
    if run is None:
        return {"status": "never"}
    return {"status": "ok" if run.ok else "failed", "at": run.checked_at.isoformat(), "breaches": run.breach_count}


def _figures() -> dict:
    from accounts.models import User
    from bnpl.analytics import plan_figures
    from bnpl.models import Plan
    from events.models import Event
    from payments.models import Payment
    from refunds.models import Refund

    now = timezone.now()
    customers = dict(
        User.objects.filter(role=User.Role.CUSTOMER).values("status").annotate(n=Count("id")).values_list("status", "n")
    )
    plans = plan_figures(plans=Plan.objects.all())
    refunds = dict.fromkeys(Refund.Status.values, 0)
    refunds.update(dict(Refund.objects.values("status").annotate(n=Count("id")).values_list("status", "n")))
    since = now - timedelta(days=CHART_DAYS - 1)
    per_day = {}
    for label, queryset in (("plans", Plan.objects), ("payments", Payment.objects.filter(status="SUCCEEDED"))):
        rows = queryset.filter(created_at__gte=since).annotate(day=TruncDate("created_at")).values("day")
        for day, n in rows.annotate(n=Count("id")).values_list("day", "n"):
            per_day.setdefault(day, {"plans": 0, "payments": 0})[label] = n
    days = [(since + timedelta(days=i)).date() for i in range(CHART_DAYS)]
    return {
        "users": User.objects.count(),
        "customers_normal": customers.get(User.Status.NORMAL, 0),
        "customers_debt": customers.get(User.Status.DEBT_USER, 0),
        "plans_by_status": plans["plans_by_status"],
        "installments_overdue": plans["overdue_installments"],
        "overdue_by_bucket": plans["overdue_by_bucket"],
        "refunds_by_status": refunds,
        "payments_failed_24h": Payment.objects.filter(
            status="FAILED", created_at__gte=now - timedelta(hours=24)
        ).count(),
        "events_pending": Event.objects.filter(delivery_status=Event.Delivery.PENDING).count(),
        "events_failed": Event.objects.filter(delivery_status=Event.Delivery.FAILED).count(),
        "daily": [{"day": d.isoformat(), **per_day.get(d, {"plans": 0, "payments": 0})} for d in days],
    }


def health_snapshot() -> tuple[dict, bool]:
    """Everything the dashboard shows, and whether the service is healthy (database up)."""
    database = check_database()
    components = {"database": database}
    if settings.REDIS_URL:
        components["redis"] = check_redis(settings.REDIS_URL)
    healthy = database["status"] == "ok"
    figures = None
    if healthy:
        try:
            components["celery"] = _celery(broker_up=components.get("redis", {}).get("status") != "down")
            components["last_sweep"] = _last_sweep()
            components["ledger_check"] = _last_ledger_check()
            figures = _figures()
        except DatabaseError:
            healthy = False
            components["database"] = {"status": "down", "error": "DatabaseError"}
    return {
        "status": "ok" if healthy else "unavailable",
        "checked_at": timezone.now().isoformat(),
        "components": components,
        "figures": figures,
    }, healthy


def _chart(daily: list[dict]) -> dict:
    """Bar geometry for the inline SVG (no chart library, no CDN)."""
    peak = max([1] + [max(d["plans"], d["payments"]) for d in daily])
    width = 12
    bars = []
    for index, day in enumerate(daily):
        x = 40 + index * (width * 2 + 4)
        bars.append(
            {
                **day,
                "x_plans": x,
                "x_payments": x + width,
                "h_plans": round(day["plans"] / peak * 120, 1),
                "h_payments": round(day["payments"] / peak * 120, 1),
            }
        )
    for bar in bars:
        bar["y_plans"] = 140 - bar["h_plans"]
        bar["y_payments"] = 140 - bar["h_payments"]
    return {"bars": bars, "peak": peak, "width": 40 + len(daily) * (width * 2 + 4), "bar_width": width}


@never_cache
@require_GET
@throttled_view(AnonThrottle, UserThrottle)  # public, and its figures are aggregates over whole tables
def health_dashboard(request):
    """``GET /api/v1/health/``: HTML for browsers, JSON for ``Accept: application/json`` (or ``?format=json``)."""
    snapshot, healthy = health_snapshot()
    status = 200 if healthy else 503
    accept = request.headers.get("Accept", "")
    if request.GET.get("format") == "json" or ("application/json" in accept and "text/html" not in accept):
        return JsonResponse(snapshot, status=status)
    chart = _chart(snapshot["figures"]["daily"]) if snapshot["figures"] else None
    response = render(request, "health.html", {"snapshot": snapshot, "chart": chart}, status=status)
    response.keep_error_page = True  # a 503 page that says what is down, not a bare problem document
    return response
