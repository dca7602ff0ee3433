"""RFC 9457 problem details: the one place errors become HTTP answers.

Every error, whether a domain error raised by a service, one of DRF's or Django's own, is
answered as ``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``
and a stable machine ``code``; validation errors add ``errors: {field: [messages]}``.
"""

import logging
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "/problems/"


class DomainError(Exception):
    """A business rule said no. Subclasses set the HTTP status and a stable code."""

    status_code = 400
    code = "domain_error"
    title = "Request refused"
    default_detail = "The request was refused."
    # True when the work had begun (a payment exists) before the error: an Idempotency-Key
    # retry must replay this answer, never start the work again, even for a 5xx.
    replay_on_retry = False

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.default_detail
        self.extra = extra
        super().__init__(self.detail)


class FieldInvalid(DomainError):
    """Input that passed its serializer but names something that cannot be used (400, per field)."""

    status_code = 400
    code = "validation_error"
    title = "Invalid request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"Invalid input: {field}.", errors={field: [message]})


class InvalidText(DomainError):
    """Strings in a request body that are not valid Unicode text (a lone surrogate, bytes that
    are not UTF-8), named by their paths (400; core.parsers)."""

    status_code = 400
    code = "invalid_text"
    title = "Invalid request"
    message = "Must be valid UTF-8 text: no lone surrogates (\\ud800-\\udfff), no invalid bytes."

    def __init__(self, paths: list[str]) -> None:
        super().__init__(f"Invalid text in: {', '.join(paths)}.", errors={path: [self.message] for path in paths})


def problem_body(*, status: int, code: str, detail: str, title: str | None = None, **extra: Any) -> dict:
    """The problem-details document for one error; extension members go beside the standard ones."""
    body = {
        "type": f"{PROBLEM_TYPE_BASE}{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return body


def problem_response(*, status: int, code: str, detail: str, title: str | None = None, headers=None, **extra):
    """A plain Django response carrying a problem document (for code outside DRF views)."""
    response = JsonResponse(
        problem_body(status=status, code=code, detail=detail, title=title, **extra),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


# The database cannot be reached (down, cut, or a connection lost mid-request): a 503 the
# client may retry, not a 500.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_RETRY_AFTER = {"Retry-After": "5"}


def database_unavailable_problem() -> dict:
    """The 503 problem answered whenever the database cannot be reached."""
    return problem_body(status=503, code="service_unavailable", detail="The database is unavailable; retry later.")


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error structure into ``{"field.sub": ["message", ...]}``."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(flatten_errors(value, name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "non_field_errors": [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            if isinstance(item, (dict, list)):
                out.update(flatten_errors(item, f"{prefix}.{index}" if prefix else str(index)))
            else:
                out.setdefault(prefix or "non_field_errors", []).append(str(item))
        return out
    return {prefix or "non_field_errors": [str(detail)]}


def validation_problem(detail) -> dict:
    """The 400 problem for DRF-style validation errors, naming every field."""
    errors = flatten_errors(detail)
    return problem_body(
        status=400,
        code="validation_error",
        title="Invalid request",
        detail=f"Invalid input: {', '.join(sorted(errors))}.",
        errors=errors,
    )


def _api_exception_code(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    if isinstance(codes, dict) and isinstance(codes.get("code"), str):
        return codes["code"]  # simplejwt puts its code inside a dict detail
    return exc.default_code


def _api_exception_detail(exc: exceptions.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, dict):
        detail = detail.get("detail", exc.default_detail)
    if isinstance(detail, list):
        detail = " ".join(str(item) for item in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every known error becomes a problem-details response, in
    JSON even from a view that renders something else (the API's HTML pages, /metrics)."""
    response = _problem_for(exc, context)
    request = context.get("request")
    if response is not None and request is not None:
        # DRF renders an error with the renderer the request negotiated; a problem
        # document is JSON whatever that was.
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = PROBLEM_CONTENT_TYPE
    return response


def _problem_for(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        body = problem_body(status=exc.status_code, code=exc.code, title=exc.title, detail=exc.detail, **exc.extra)
        return Response(body, status=exc.status_code, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.error("Database unavailable: %s", exc.__class__.__name__)
        return Response(
            database_unavailable_problem(), status=503, content_type=PROBLEM_CONTENT_TYPE, headers=DATABASE_RETRY_AFTER
        )
    if isinstance(exc, DatabaseError):
        return None  # a real bug: let the middleware log it and answer 500

    # DRF fills in headers (WWW-Authenticate, Retry-After, Allow) and maps Http404 and
    # Django's PermissionDenied onto its own exceptions.
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, (exceptions.ValidationError, serializers.ValidationError)):
        body = validation_problem(exc.detail)
    else:
        extra = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            extra["retry_after"] = int(exc.wait)
        body = problem_body(
            status=response.status_code,
            code=_api_exception_code(exc),
            detail=_api_exception_detail(exc),
            **extra,
        )
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response
