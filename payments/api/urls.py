from django.urls import path
from rest_framework.routers import SimpleRouter

from payments.api import views

router = SimpleRouter()
router.register("payments", views.PaymentViewSet, basename="payment")
router.register("credit-transactions", views.CreditTransactionViewSet, basename="credit-transaction")

urlpatterns = [
    path("installments/<int:pk>/pay/", views.InstallmentPayView.as_view(), name="installment-pay"),
    path("plans/<int:pk>/pay/", views.PlanPayView.as_view(), name="plan-pay"),
    *router.urls,
]
