"""The health dashboard: components to anyone, figures to signed-in operators, as HTML or JSON.

Components (database, Redis, Celery worker, last sweep, ledger check, last settlement) say
whether the service works and are public: a load balancer, a status page or a person checking
may read them. Figures (users, debt users, plans, overdue installments, refunds, failed
payments, events, 30 days of volumes, and the money per currency: processed, refunded,
merchant fees, late fees, paid out) describe the business and go only to an operator, signed in by session
(the admin's login) or by bearer token (the API's). Anyone else gets ``"figures": null`` and a
``figures_note`` saying who may see them; the aggregates are not even computed for them.

Answers 503 when the database is down, and still renders, saying so. The endpoint is a page and
a probe, not part of the REST API: it is not in the OpenAPI schema.

What each answer costs (docs/SCALING.md, "Dashboards, analytics and /metrics"): the components
are read live (a few indexed rows each), except the Celery workers' ping, which waits out its
half-second timeout and makes every worker answer: its result is shared through the cache
(``figures_cached``) and pinged again by beat every minute, so a visitor waits for a ping only
when beat has not run for ``FIGURES_CACHE_SECONDS`` (one visitor pings) or none is cached, and
however many visitors arrive, one ping runs at a time. The figures scan whole tables (seconds
on a million installments): they come from the cache too, computed by beat every minute
(``ops.tasks.figures_refresh_task``), and say when they were computed (``figures_at``).
"""

import functools
import time
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings

from bnpl.analytics import Figures, FiguresUnavailable, figures_cached
from core.problems import problem_response
from core.throttling import AnonThrottle, UserThrottle, throttled_view
from ops.health import check_broker, check_database, check_redis, publishes_tasks

CHART_DAYS = 30
# figures_cached names: the workers' ping, and the operators' figures.
WORKERS, FIGURES = "health:workers", "health:figures"


def _celery(*, broker_up: bool = True) -> dict:
    """The Celery workers' component: from the cache when pinged less than
    ``FIGURES_CACHE_SECONDS`` ago (``at``: when), else pinged now by one caller at a time."""
    if not publishes_tasks():
        return {"status": "ok", "detail": "eager: tasks run in the web process"}
    if not broker_up:
        # No worker can be reached through a broker that is down; a ping would only wait
        # out the broker's timeouts (seconds, on a hung Redis) before saying so.
        return {"status": "down", "error": "broker unreachable"}
    try:
        pinged = figures_cached(WORKERS, celery_ping)
    except FiguresUnavailable:
        return {"status": "unknown", "detail": "being checked"}
    if pinged.computed_at is None:
        return pinged.value
    return {**pinged.value, "at": datetime.fromtimestamp(pinged.computed_at, UTC).isoformat()}


def celery_ping() -> dict:
    """Ping every Celery worker (waits the whole timeout, for every answer): the component."""
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
    from ledger.models import LedgerCheckRun

    run = LedgerCheckRun.objects.order_by("-id").first()
    if run is None:
        return {"status": "never"}
    return {"status": "ok" if run.ok else "failed", "at": run.checked_at.isoformat(), "breaches": run.breach_count}


def _last_settlement() -> dict:
    """The latest settlement run: its business day, whether it finished, what it made, and
    the payouts that want someone's attention (failed and not yet taken into a settlement,
    still waiting for the payout gateway). Two queries."""
    from bnpl.schedule import business_today
    from settlements.models import Payout, SettlementLine, SettlementRun

    run = SettlementRun.objects.order_by("-id").first()
    if run is None:
        return {"status": "never"}
    # A failed payout's money goes with the merchant's next settlement (an adjustment line);
    # until then the merchant is owed it, and its account may need fixing.
    taken_back = SettlementLine.objects.filter(type=SettlementLine.Type.ADJUSTMENT, source_payout__isnull=False)
    payouts = Payout.objects.aggregate(
        failed=Count(
            "id",
            filter=Q(status=Payout.Status.FAILED) & ~Q(pk__in=taken_back.values("source_payout_id")),
        ),
        pending=Count("id", filter=Q(status=Payout.Status.PENDING)),
    )
    if run.finished_at is None:
        status = "running"
    elif payouts["failed"]:
        status = "attention"
    elif run.business_date < business_today() - timedelta(days=2):
        # The beat settles yesterday just after midnight: an older latest day is a day missed.
        status = "stale"
    else:
        status = "ok"
    return {
        "status": status,
        "business_date": run.business_date.isoformat(),
        "at": run.started_at.isoformat(),
        "finished": run.finished_at is not None,
        **({"finished_at": run.finished_at.isoformat()} if run.finished_at else {}),
        "settlements": run.settlements_created,
        "payouts": run.payouts_created,
        "payouts_failed": payouts["failed"],
        "payouts_pending": payouts["pending"],
    }


def _money(totals: dict | None = None) -> list[dict]:
    """The ledger's money totals per currency (``ledger.selectors.MONEY_TOTALS``): one query,
    none when ``totals`` (``money_totals()``) are given."""
    from ledger.selectors import money_totals

    totals = money_totals() if totals is None else totals
    return [{"currency": currency, **amounts} for currency, amounts in totals.items()]


def health_figures(*, plans: dict | None = None, money: dict | None = None) -> dict:
    """Every figure of the dashboard, computed now: about fifteen aggregate queries, the
    biggest over every installment and every posting. ``plans`` and ``money``:
    ``plan_figures`` of every plan and ``money_totals()``, when the caller has them already."""
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
    plans = plans if plans is not None else plan_figures(plans=Plan.objects.all())
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
        "money": _money(money),
    }


# Card titles: words, not keys. A component missing here still shows as words ("last_payout"
# reads "Last payout"), so a new one appears on the page without a template change; name it here
# when the key alone says too little.
COMPONENT_LABELS = {
    "database": "Database",
    "redis": "Redis",
    "broker": "Broker",
    "celery": "Celery worker",
    "last_sweep": "Last sweep",
    "ledger_check": "Ledger check",
    "last_settlement": "Last settlement",
}
DETAIL_LABELS = {  # the others read well as their keys in words ("marked_overdue": "marked overdue")
    "latency_ms": "latency (ms)",
    "duration_ms": "duration (ms)",
    "marked_debt": "marked debt users",
    "payouts_failed": "failed payouts to see to",
    "payouts_pending": "payouts awaiting the bank",
}
# The money figures' names, in words (the JSON keeps the keys).
MONEY_LABELS = {
    "processed": "processed (plans captured)",
    "refunded": "refunded",
    "merchant_fees": "merchant fees, net of refunds",
    "late_fees": "late fees, net of waivers",
    "paid_out": "paid out to merchants",
}
FIGURES_NOTE = (
    "Figures are shown to signed-in operators only: sign in to the admin, or send an operator's bearer token."
)
FIGURES_PENDING_NOTE = "The figures are being computed: they will be shown in a few seconds."


def _words(key: str, labels: dict[str, str], *, title: bool = True) -> str:
    """The label of ``key``, or the key in words: "last_payout" reads "Last payout" as a title,
    "paid_at" reads "paid at" as a detail."""
    words = labels.get(key) or key.replace("_", " ")
    return words[:1].upper() + words[1:] if title else words


def health_snapshot(*, figures: bool = True) -> tuple[dict, bool]:
    """Everything the dashboard shows, and whether the service is healthy (database up).

    ``figures=False`` leaves the figures out (``None``) without reading them."""
    database = check_database()
    components = {"database": database}
    if settings.REDIS_URL:
        components["redis"] = check_redis(settings.REDIS_URL)
    if publishes_tasks():
        # As /readyz: whether the app can publish a task, not only whether Redis answers a ping.
        components["broker"] = check_broker()
    healthy = database["status"] == "ok"
    numbers, figures_at = None, timezone.now()
    if healthy:
        try:
            components["celery"] = _celery(broker_up=components.get("broker", {}).get("status") != "down")
            components["last_sweep"] = _last_sweep()
            components["ledger_check"] = _last_ledger_check()
            components["last_settlement"] = _last_settlement()
            if figures:
                cached = _cached_figures()
                numbers = cached.value if cached else None
                if cached and cached.computed_at is not None:
                    figures_at = datetime.fromtimestamp(cached.computed_at, UTC)
        except DatabaseError:
            healthy = False
            components["database"] = {"status": "down", "error": "DatabaseError"}
    snapshot = {
        "status": "ok" if healthy else "unavailable",
        "checked_at": timezone.now().isoformat(),
        "components": components,
        "figures": numbers,
    }
    if numbers is not None:
        snapshot["figures_at"] = figures_at.isoformat()
    elif figures and healthy:
        snapshot["figures_note"] = FIGURES_PENDING_NOTE
    return snapshot, healthy


def _cached_figures() -> Figures | None:
    """The figures from the cache (``figures_cached``), or None when none is cached and the
    one computation under way did not end within ``FIGURES_WAIT_SECONDS``."""
    try:
        return figures_cached(FIGURES, health_figures)
    except FiguresUnavailable:
        return None


def _viewer(request):
    """The caller, signed in by the API's authenticators (bearer token, then the admin's
    session), or Django's anonymous user. Raises DRF's AuthenticationFailed for a bad token.

    DRF's request sets the user on the Django request too, so the throttles count a token's
    user as that user, not as an anonymous address."""
    drf_request = Request(request, authenticators=[auth() for auth in api_settings.DEFAULT_AUTHENTICATION_CLASSES])
    try:
        return drf_request.user
    except DatabaseError:
        # The database is down: nobody can be looked up, and there are no figures to show.
        request.user = AnonymousUser()
        return request.user


def _is_operator(user) -> bool:
    return bool(user.is_authenticated and getattr(user, "is_operator", False))


def _authenticated(view):
    """Resolves ``request.user`` (session or bearer token) before the throttles and the view;
    a bad or expired token is a 401 problem, as on the API."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            _viewer(request)
        except exceptions.AuthenticationFailed as exc:
            # simplejwt's errors carry their code and message in a dict detail.
            codes, detail = exc.get_codes(), exc.detail
            return problem_response(
                status=401,
                code=codes.get("code", exc.default_code) if isinstance(codes, dict) else codes,
                detail=str(detail.get("detail", exc.default_detail) if isinstance(detail, dict) else detail),
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            )
        return view(request, *args, **kwargs)

    return wrapper


def _when(value: str) -> dict | str:
    """An ISO timestamp as a short UTC text, keeping the exact value for ``<time datetime>``."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return value
    # A no-break space keeps "UTC" with the time when a narrow card wraps the line.
    return {"iso": value, "text": moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M\u00a0UTC")}


def _components_for_page(components: dict) -> list[dict]:
    cards = []
    for name, component in components.items():
        details = []
        for key, value in component.items():
            if key == "status":
                continue
            shown = _when(value) if isinstance(value, str) and (key == "at" or key.endswith("_at")) else value
            if isinstance(value, bool):
                shown = "yes" if value else "no"
            details.append({"key": key, "label": _words(key, DETAIL_LABELS, title=False), "value": shown})
        cards.append(
            {
                "name": name,
                "label": _words(name, COMPONENT_LABELS),
                "status": component.get("status", "unknown"),
                "details": details,
            }
        )
    return cards


def _labelled(counts: dict, choices) -> list[dict]:
    labels = dict(choices)
    return [{"key": key, "label": labels.get(key, _words(key, {})), "n": n} for key, n in counts.items()]


def _short_day(day: date) -> str:
    return f"{day.strftime('%b')} {day.day}"


# The chart's drawing units (its viewBox); the SVG scales to its card's width.
CHART_LEFT, CHART_RIGHT, CHART_SLOT, CHART_BAR = 34, 6, 26, 10
CHART_TOP, CHART_BASE, CHART_HEIGHT = 14, 150, 196
CHART_LABEL_EVERY = 5  # days between day labels, counted back from today


def _chart(daily: list[dict]) -> dict:
    """Bar geometry for the inline SVG (no chart library, no CDN, no script): two bars a day,
    a day label every few days (today's always), the peak and zero on the axis."""
    peak = max([1] + [max(d["plans"], d["payments"]) for d in daily])
    plot = CHART_BASE - CHART_TOP
    days = [date.fromisoformat(d["day"]) for d in daily]
    bars, labels = [], []
    for index, (day, values) in enumerate(zip(days, daily, strict=True)):
        x = CHART_LEFT + index * CHART_SLOT + (CHART_SLOT - 2 * CHART_BAR) // 2
        h_plans = round(values["plans"] / peak * plot, 1)
        h_payments = round(values["payments"] / peak * plot, 1)
        bars.append(
            {
                **values,
                "label": _short_day(day),
                "x_plans": x,
                "x_payments": x + CHART_BAR,
                "h_plans": h_plans,
                "h_payments": h_payments,
                "y_plans": round(CHART_BASE - h_plans, 1),
                "y_payments": round(CHART_BASE - h_payments, 1),
            }
        )
        if (len(days) - 1 - index) % CHART_LABEL_EVERY == 0:
            labels.append({"x": CHART_LEFT + index * CHART_SLOT + CHART_SLOT // 2, "text": _short_day(day)})
    width = CHART_LEFT + len(daily) * CHART_SLOT + CHART_RIGHT
    return {
        "bars": bars,
        "day_labels": labels,
        "peak": peak,
        "width": width,
        "height": CHART_HEIGHT,
        "bar_width": CHART_BAR,
        "left": CHART_LEFT,
        "top": CHART_TOP,
        "base": CHART_BASE,
        "mid": (CHART_TOP + CHART_BASE) / 2,
        "label_y": CHART_BASE + 16,
        "legend_y": CHART_HEIGHT - 8,
        "first": _short_day(days[0]) if days else "",
        "last": _short_day(days[-1]) if days else "",
    }


def _page_context(snapshot: dict, *, operator: bool) -> dict:
    from bnpl.models import Plan
    from refunds.models import Refund

    context = {
        "snapshot": snapshot,
        "checked": _when(snapshot["checked_at"]),
        "components": _components_for_page(snapshot["components"]),
        "operator": operator,
        "figures_note": FIGURES_NOTE if not operator else snapshot.get("figures_note"),
    }
    figures = snapshot["figures"]
    if figures:
        context["figures_at"] = _when(snapshot["figures_at"])
        context["figures_max_age"] = settings.FIGURES_CACHE_SECONDS
        context["plans"] = _labelled(figures["plans_by_status"], Plan.Status.choices)
        context["refunds"] = _labelled(figures["refunds_by_status"], Refund.Status.choices)
        context["chart"] = _chart(figures["daily"])
        context["money"] = [
            {
                "currency": row["currency"],
                "rows": [{"key": key, "label": label, "amount": row[key]} for key, label in MONEY_LABELS.items()],
            }
            for row in figures["money"]
        ]
    return context


@never_cache
@csrf_exempt  # GET only: any other method is told 405, not refused for its CSRF token
@require_GET
@_authenticated
@throttled_view(AnonThrottle, UserThrottle)  # public, and an operator's figures are aggregates over whole tables
def health_dashboard(request):
    """``GET /api/v1/health/``: HTML for browsers, JSON for ``Accept: application/json`` (or ``?format=json``).

    Components for anyone; figures for an operator (session or bearer token) only."""
    operator = _is_operator(request.user)
    snapshot, healthy = health_snapshot(figures=operator)
    if not operator:
        snapshot["figures_note"] = FIGURES_NOTE
    status = 200 if healthy else 503
    accept = request.headers.get("Accept", "")
    if request.GET.get("format") == "json" or ("application/json" in accept and "text/html" not in accept):
        response = JsonResponse(snapshot, status=status)
    else:
        response = render(request, "health.html", _page_context(snapshot, operator=operator), status=status)
        response.keep_error_page = True  # a 503 page that says what is down, not a bare problem document
    # The answer depends on who asks (figures or none): never served from a shared cache to another.
    patch_vary_headers(response, ("Accept", "Authorization", "Cookie"))
    return response
