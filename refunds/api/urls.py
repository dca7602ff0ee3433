from rest_framework.routers import SimpleRouter

from refunds.api import views

router = SimpleRouter()
router.register("refunds", views.RefundViewSet, basename="refund")

urlpatterns = router.urls
