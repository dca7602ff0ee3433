"""The URL map: the API under /api/v1/, probes, the OpenAPI schema and its UIs, the admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config import dashboard, health
from config.metrics import MetricsView
from refunds.webhooks import RefundStatusWebhookView

api_v1 = [
    path("health/", dashboard.health_dashboard, name="health-dashboard"),
    path("", include("accounts.api.urls")),
    path("", include("bnpl.api.urls")),
    path("", include("payments.api.urls")),
    path("", include("refunds.api.urls")),
    path("", include("events.api.urls")),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("api/v1/", include(api_v1)),
    path("webhook/refund-status/", RefundStatusWebhookView.as_view(), name="refund-status-webhook"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("swagger/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("admin/", admin.site.urls),
]
