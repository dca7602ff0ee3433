"""Liveness and readiness probes for load balancers and Kubernetes."""

import time

import redis
from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.celery import app as celery_app
from config.celery import broker_publish_check
from core.problems import problem_response


def check_database(alias: str = "default") -> dict:
    """``{"status": "ok"|"down", "latency_ms": ...}`` after a ``SELECT 1`` on the connection."""
    started = time.perf_counter()
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return {"status": "down", "error": exc.__class__.__name__}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def check_redis(url: str) -> dict:
    """``{"status": "ok"|"down", "latency_ms": ...}`` after a PING with a short timeout."""
    started = time.perf_counter()
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return {"status": "down", "error": exc.__class__.__name__}
    finally:
        client.close()
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def publishes_tasks() -> bool:
    """Whether tasks go to a broker (in eager mode they run in the process: nothing to check)."""
    return not celery_app.conf.task_always_eager


def check_broker() -> dict:
    """``{"status": "ok"|"down", "latency_ms": ...}`` after publishing a probe message the way
    the app publishes its tasks (config.celery.broker_publish_check); any failure, a
    transport that cannot even be loaded included, is "down" with its class name."""
    started = time.perf_counter()
    try:
        broker_publish_check()
    except Exception as exc:  # whatever stops a publish makes the app not ready
        return {"status": "down", "error": exc.__class__.__name__}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. No I/O, so a slow database never restarts the pod."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database answers and, when configured, Redis answers and the app can
    publish a task to the broker; 503 naming what is down."""
    checks = {"database": check_database()}
    if settings.REDIS_URL:
        checks["redis"] = check_redis(settings.REDIS_URL)
    if publishes_tasks():
        checks["broker"] = check_broker()
    down = sorted(name for name, result in checks.items() if result["status"] != "ok")
    if down:
        return problem_response(
            status=503,
            code="not_ready",
            title="Not ready",
            detail=f"Not ready: {', '.join(down)} {'is' if len(down) == 1 else 'are'} down.",
            checks=checks,
            down=down,
        )
    return JsonResponse({"status": "ok", "checks": checks})
