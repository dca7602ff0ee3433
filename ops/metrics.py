"""Prometheus metrics: request count and latency per view, and the business series.

Request metrics live in this process (set ``PROMETHEUS_MULTIPROC_DIR`` under gunicorn with
several workers, as prometheus_client documents). Business series are read from the
database at scrape time, so they are exact across every process and restart.
"""

import hmac
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


class BusinessCollector:
    """The DESIGN §7 business series, counted from the rows that record them."""

    def collect(self):
        from bnpl.models import Installment, Plan, SweepRun
        from events.models import Event
        from ledger.models import LedgerCheckRun
        from payments.models import Payment
        from refunds.models import Refund

        yield CounterMetricFamily("plans_created", "Plans created.", value=Plan.objects.count())
        payments = dict(Payment.objects.values("status").annotate(n=Count("id")).values_list("status", "n"))
        yield CounterMetricFamily("payments_succeeded", "Successful payments.", value=payments.get("SUCCEEDED", 0))
        yield CounterMetricFamily("payments_failed", "Declined or failed payments.", value=payments.get("FAILED", 0))
        refunds = CounterMetricFamily("refunds_processed", "Refunds decided, by status.", labels=["status"])
        decided = dict(Refund.objects.values("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in (Refund.Status.APPROVED, Refund.Status.REJECTED):
            refunds.add_metric([status.lower()], decided.get(status, 0))
        yield refunds
        yield GaugeMetricFamily(
            "installments_overdue",
            "Installments overdue now.",
            value=Installment.objects.filter(status=Installment.Status.OVERDUE).count(),
        )
        last = SweepRun.objects.filter(skipped=False, finished_at__isnull=False).order_by("-id").first()
        yield GaugeMetricFamily(
            "overdue_sweep_seconds",
            "Duration of the last overdue sweep.",
            value=(last.duration_ms / 1000) if last else 0,
        )
        yield CounterMetricFamily(
            "ledger_check_failures",
            "Ledger checks that found a breach.",
            value=LedgerCheckRun.objects.filter(ok=False).count(),
        )
        yield from money_series()
        events = dict(
            Event.objects.values("delivery_status").annotate(n=Count("id")).values_list("delivery_status", "n")
        )
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


def money_series():
    """The money series of ``MONEY_SERIES``, a sample per currency: one query on the ledger."""
    from ledger.selectors import money_totals

    totals = money_totals()
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
