"""Views that fail on purpose, mounted beside the real URLs for the error-handling tests.

The database errors here are simulated (the view raises what Django raises when the
connection is gone): they test the error handler's answer, and are not counted as injected
faults. The real ones (PostgreSQL cut at a proxy, or unreachable) are in
config/tests/test_faults_postgres.py."""

from django.db import InterfaceError, OperationalError
from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from core.problems import DomainError


class Boom(DomainError):
    status_code = 422
    code = "boom_refused"
    title = "Boom refused"


class OnceAMinute(AnonRateThrottle):
    rate = "1/min"
    scope = "test-once"


class Open(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []


class CrashView(Open):
    def get(self, request):
        raise RuntimeError("crash while charging 4111111111111111 for +998901234567")


class DomainView(Open):
    def get(self, request):
        raise Boom("Not today.", limit="10.00")


class DatabaseDownView(Open):
    def get(self, request):
        raise OperationalError("connection refused")


class ThrottledView(Open):
    throttle_classes = [OnceAMinute]

    def get(self, request):
        return Response({"ok": True})


def plain_crash(request):
    raise RuntimeError("plain Django view crashed")


def plain_database_gone(request):
    raise InterfaceError("connection already closed")


urlpatterns = [
    path("t/crash/", CrashView.as_view()),
    path("t/domain/", DomainView.as_view()),
    path("t/db-down/", DatabaseDownView.as_view()),
    path("t/throttled/", ThrottledView.as_view()),
    path("t/plain-crash/", plain_crash),
    path("t/plain-db-gone/", plain_database_gone),
    path("", include("config.urls")),
]
