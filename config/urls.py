"""The URL map: the pages (home and portals, sign-in, the hosted checkout), the API under
/api/v1/, probes, the OpenAPI schema and its UIs, the admin."""

from importlib import import_module

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from ops import dashboard, health
from ops.docs import RedocView
from ops.metrics import MetricsView
from ops.pages import checkout, portal, signin
from refunds.webhooks import RefundStatusWebhookView

PAGE = ["get", "head"]

# The admin says whose it is; "View site" opens the home page.
admin.site.site_header = "BNPL operations"
admin.site.site_title = "BNPL operations"
admin.site.index_title = "Operations"
admin.site.site_url = "/"


def _patterns(*modules: str) -> list:
    """The URL patterns of ``modules``, in order, as one flat list: an empty-prefix include
    per app made every request to a later app raise and catch a miss in each earlier one,
    which cost more than matching the patterns themselves."""
    return [pattern for module in modules for pattern in import_module(module).urlpatterns]


api_v1 = [
    path("health/", dashboard.health_dashboard, name="health-dashboard"),
    # The most requested first (plans and payments, then refunds): a path is matched against
    # every pattern before its own. No path matches two patterns (config/tests/test_urls.py),
    # so the order changes nothing else.
    *_patterns(
        "bnpl.api.urls",
        "payments.api.urls",
        "refunds.api.urls",
        "accounts.api.urls",
        "settlements.api.urls",
        "events.api.urls",
    ),
]

urlpatterns = [
    # The API first: its requests are most of the traffic, and every pattern before it is
    # tried and missed on each of them.
    path("api/v1/", include(api_v1)),
    path("", portal.home, name="home"),
    path("login/", signin.SignInView.as_view(), name="login"),
    path("logout/", signin.SignOutView.as_view(), name="logout"),
    path("checkout/<slug:token>/", checkout.checkout, name="checkout"),
    path("installments/<int:pk>/pay/", portal.installment_pay, name="installment-pay-page"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("webhook/refund-status/", RefundStatusWebhookView.as_view(), name="refund-status-webhook"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Pages for browsers: GET only (DRF's OPTIONS metadata cannot be rendered as their HTML).
    # Swagger UI's initialising script comes from its own URL (?script), not inline: see the CSP.
    path(
        "swagger/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", http_method_names=PAGE),
        name="swagger-ui",
    ),
    path("redoc/", RedocView.as_view(url_name="schema", http_method_names=PAGE), name="redoc"),
    path("admin/", admin.site.urls),
]
