"""Prometheus metrics: request count and latency per view, and the business series.

Request metrics live in this process (set ``PROMETHEUS_MULTIPROC_DIR`` under gunicorn with
several workers, as prometheus_client documents). Business series are counted from the rows
that record them, so they are the same across every process and restart; those counts scan
whole tables (half a second on a million installments), so a scrape reads them from the cache
(``bnpl.analytics.figures_cached``), where beat puts them every minute: each sample is exact as
of ``business_figures_age_seconds`` ago (at most ``FIGURES_CACHE_SECONDS`` while beat runs).
"""

import hmac
import logging
import os
import time

from django.conf import settings
from django.db.models import Count
from drf_spectacular.utils import extend_schema
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from rest_framework import permissions
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)
REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "http_requests_total", "HTTP requests by view, method and status.", ["view", "method", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "http_request_duration_seconds", "HTTP request latency by view and method.", ["view", "method"], registry=REGISTRY
)


class MetricsMiddleware:
    """Counts and times every request under its URL pattern's name (not its raw path)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or match.route) if match else "unmatched"
        LATENCY.labels(view, request.method).observe(time.perf_counter() - started)
        REQUESTS.labels(view, request.method, str(response.status_code)).inc()
        return response


BUSINESS = "metrics:business"


def business_figures(*, money: dict | None = None) -> dict:
    """The counts behind the business series, computed now: eight aggregate queries (seven
    when ``money``, the ledger's ``money_totals()``, is given)."""
    from bnpl.models import Installment, Plan, SweepRun
    from events.models import Event
    from ledger.models import LedgerCheckRun
    from ledger.selectors import money_totals
    from payments.models import Payment
    from refunds.models import Refund

    last = SweepRun.objects.filter(skipped=False, finished_at__isnull=False).order_by("-id").first()
    return {
        "plans_created": Plan.objects.count(),
        "payments": dict(Payment.objects.values("status").annotate(n=Count("id")).values_list("status", "n")),
        "refunds": dict(Refund.objects.values("status").annotate(n=Count("id")).values_list("status", "n")),
        "installments_overdue": Installment.objects.filter(status=Installment.Status.OVERDUE).count(),
        "overdue_sweep_seconds": (last.duration_ms / 1000) if last else 0,
        "ledger_check_failures": LedgerCheckRun.objects.filter(ok=False).count(),
        "money": money_totals() if money is None else money,
        "events": dict(
            Event.objects.values("delivery_status").annotate(n=Count("id")).values_list("delivery_status", "n")
        ),
    }


class BusinessCollector:
    """The DESIGN §7 business series, counted from the rows that record them (through the
    cache: ``business_figures_age_seconds`` says how long ago)."""

    def collect(self):
        from bnpl.analytics import FiguresUnavailable, figures_cached
        from events.models import Event
        from refunds.models import Refund

        try:
            cached = figures_cached(BUSINESS, business_figures)
        except FiguresUnavailable:
            logger.warning("Business series left out of this scrape: their first computation is still under way")
            return
        figures = cached.value
        yield GaugeMetricFamily(
            "business_figures_age_seconds",
            "Seconds since the business series below were counted (0: counted for this scrape).",
            value=round(cached.age, 3),
        )
        yield CounterMetricFamily("plans_created", "Plans created.", value=figures["plans_created"])
        payments = figures["payments"]
        yield CounterMetricFamily("payments_succeeded", "Successful payments.", value=payments.get("SUCCEEDED", 0))
        yield CounterMetricFamily("payments_failed", "Declined or failed payments.", value=payments.get("FAILED", 0))
        refunds = CounterMetricFamily("refunds_processed", "Refunds decided, by status.", labels=["status"])
        for status in (Refund.Status.APPROVED, Refund.Status.REJECTED):
            refunds.add_metric([status.lower()], figures["refunds"].get(status, 0))
        yield refunds
        yield GaugeMetricFamily(
            "installments_overdue", "Installments overdue now.", value=figures["installments_overdue"]
        )
        yield GaugeMetricFamily(
            "overdue_sweep_seconds", "Duration of the last overdue sweep.", value=figures["overdue_sweep_seconds"]
        )
        yield CounterMetricFamily(
            "ledger_check_failures", "Ledger checks that found a breach.", value=figures["ledger_check_failures"]
        )
        yield from money_series(figures["money"])
        events = figures["events"]
        yield GaugeMetricFamily(
            "merchant_events_pending", "Merchant events awaiting delivery.", value=events.get(Event.Delivery.PENDING, 0)
        )
        yield CounterMetricFamily(
            "merchant_events_failed", "Merchant events given up on.", value=events.get(Event.Delivery.FAILED, 0)
        )


# The ledger's money totals as series, per currency (amounts in the currency's units). Those
# that only grow are counters; the fees fall when a refund gives a fee share back or a late
# fee is waived, so they are gauges.
MONEY_SERIES = (
    ("processed", CounterMetricFamily, "money_processed", "Totals of plans that became ACTIVE (captured)."),
    (
        "refunded",
        CounterMetricFamily,
        "money_refunded",
        "Approved refunds: taken off unpaid installments, credited, or paid back to the card.",
    ),
    (
        "merchant_fees",
        GaugeMetricFamily,
        "merchant_fees_earned",
        "Merchant fees charged, less the fee share refunds gave back.",
    ),
    ("late_fees", GaugeMetricFamily, "late_fees_earned", "Late fees charged to customers, less those waived."),
    ("paid_out", CounterMetricFamily, "money_paid_out", "Payouts paid to merchants' bank accounts."),
)


def money_series(totals: dict):
    """The money series of ``MONEY_SERIES``, a sample per currency, from the ledger's
    ``money_totals()``."""
    for name, family, series, documentation in MONEY_SERIES:
        metric = family(series, documentation, labels=["currency"])
        for currency, amounts in totals.items():
            # A sample is a float64 by Prometheus's format: exact to the cent far past any total here.
            metric.add_metric([currency], float(amounts[name]))
        yield metric


REGISTRY.register(BusinessCollector())


class PrometheusRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "prometheus"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else str(data).encode()


class OperatorOrMetricsToken(permissions.BasePermission):
    """Operators (session or JWT), or ``Authorization: Bearer <METRICS_TOKEN>`` for scrapers."""

    def has_permission(self, request, view) -> bool:
        token = settings.METRICS_TOKEN
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
            return True
        return bool(request.user and request.user.is_authenticated and getattr(request.user, "is_operator", False))


@extend_schema(exclude=True)  # for Prometheus, not for API clients
class MetricsView(APIView):
    permission_classes = [OperatorOrMetricsToken]
    renderer_classes = [PrometheusRenderer]
    throttle_classes: list = []  # a scrape answered 429 is a gap in every series

    def get_authenticators(self):
        # A scraper's bearer token is not a JWT: let it through to the permission check.
        request = getattr(self, "request", None)
        header = request.META.get("HTTP_AUTHORIZATION", "") if request is not None else ""
        if settings.METRICS_TOKEN and header == f"Bearer {settings.METRICS_TOKEN}":
            return []
        return super().get_authenticators()

    def get(self, request):
        body = generate_latest(REGISTRY)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)
            body = generate_latest(combined) + body
        return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
