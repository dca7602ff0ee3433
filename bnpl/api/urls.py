from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from accounts.models import USER_ID_IN_PATH
from bnpl.api import views

router = SimpleRouter()
router.register("plans", views.PlanViewSet, basename="plan")
router.register("installments", views.InstallmentViewSet, basename="installment")
router.register("late-fees", views.LateFeeViewSet, basename="late-fee")

urlpatterns = [
    # Beside accounts' exact "auth/me/": a longer path, so neither hides the other.
    path("auth/me/spending-power/", views.SpendingPowerView.as_view(), name="auth-me-spending-power"),
    re_path(rf"^debt/(?P<user_id>{USER_ID_IN_PATH})/$", views.DebtStatusView.as_view(), name="debt-status"),
    path("analytics/dashboard/", views.AnalyticsView.as_view(), name="analytics-dashboard"),
    *router.urls,
]
