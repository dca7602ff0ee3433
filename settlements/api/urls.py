from rest_framework.routers import SimpleRouter

from settlements.api import views

router = SimpleRouter()
router.register("settlements", views.SettlementViewSet, basename="settlement")
router.register("payouts", views.PayoutViewSet, basename="payout")

urlpatterns = router.urls
