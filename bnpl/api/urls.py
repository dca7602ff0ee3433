from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from bnpl.api import views

router = SimpleRouter()
router.register("plans", views.PlanViewSet, basename="plan")
router.register("installments", views.InstallmentViewSet, basename="installment")
router.register("late-fees", views.LateFeeViewSet, basename="late-fee")

urlpatterns = [
    # The same user_id pattern as /users/{user_id}/: an id no user can have is a 404 here,
    # never a lookup (PostgreSQL refuses a NUL in a text parameter).
    re_path(r"^debt/(?P<user_id>[A-Za-z0-9_-]+)/$", views.DebtStatusView.as_view(), name="debt-status"),
    path("analytics/dashboard/", views.AnalyticsView.as_view(), name="analytics-dashboard"),
    *router.urls,
]
