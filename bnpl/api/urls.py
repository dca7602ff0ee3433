from django.urls import path
from rest_framework.routers import SimpleRouter

from bnpl.api import views

router = SimpleRouter()
router.register("plans", views.PlanViewSet, basename="plan")
router.register("installments", views.InstallmentViewSet, basename="installment")
router.register("late-fees", views.LateFeeViewSet, basename="late-fee")

urlpatterns = [
    path("debt/<str:user_id>/", views.DebtStatusView.as_view(), name="debt-status"),
    path("analytics/dashboard/", views.AnalyticsView.as_view(), name="analytics-dashboard"),
    *router.urls,
]
