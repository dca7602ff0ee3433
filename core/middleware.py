"""Request-level middleware: request ids, problem details for Django's own errors, chunked
bodies, body limits, the Content-Security-Policy."""

import io
import logging
import re
import secrets
import time
import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.functional import SimpleLazyObject, empty

from core.logging import request_id_var
from core.problems import (
    DATABASE_RETRY_AFTER,
    DATABASE_UNAVAILABLE,
    PROBLEM_CONTENT_TYPE,
    database_unavailable_problem,
    problem_response,
)

logger = logging.getLogger("bnpl.request")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Accepts a safe ``X-Request-ID`` or makes one, tags every log line with it, echoes it back.

    It also writes one access log line per request (method, path, status, duration).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "http_method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            return response
        finally:
            request_id_var.reset(token)


def _wants_problem(request: HttpRequest) -> bool:
    # The admin and the static files keep Django's own pages; the API and everything
    # else a client calls speaks problem details.
    return not request.path.startswith(("/admin/", f"/{settings.STATIC_URL.lstrip('/')}"))


class ProblemDetailsMiddleware:
    """Turns Django's own error answers (404, 405, 500, ...) into problem details.

    DRF views answer problems themselves (core.problems.exception_handler); this covers
    unmatched URLs, plain Django views and exceptions nothing else caught.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and not getattr(response, "keep_error_page", False)  # a page that explains itself (the dashboard)
            and not response.get("Content-Type", "").startswith((PROBLEM_CONTENT_TYPE, "application/json"))
            and _wants_problem(request)
        ):
            return self._convert(response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _wants_problem(request):
            return None
        if isinstance(exception, DATABASE_UNAVAILABLE):
            # Plain Django views (the refund webhook) meet a database that is down too: the
            # same 503 as the API's, which the caller retries.
            logger.error("Database unavailable in %s %s: %s", request.method, request.path, type(exception).__name__)
            return JsonResponse(
                database_unavailable_problem(),
                status=503,
                content_type=PROBLEM_CONTENT_TYPE,
                headers=DATABASE_RETRY_AFTER,
            )
        logger.exception("Unhandled error in %s %s", request.method, request.path)
        return problem_response(status=500, code="server_error", detail="An unexpected error occurred.")

    @staticmethod
    def _convert(response: HttpResponse) -> HttpResponse:
        status = response.status_code
        codes = {
            400: "bad_request",
            403: "permission_denied",
            404: "not_found",
            405: "method_not_allowed",
            413: "request_too_large",
            500: "server_error",
        }
        headers = {name: response[name] for name in ("Allow", "Retry-After") if response.has_header(name)}
        details = {
            404: "No resource at this address.",
            405: "This method is not allowed here.",
            500: "An unexpected error occurred.",
        }
        return problem_response(
            status=status,
            code=codes.get(status, "error"),
            detail=details.get(status, "The request could not be processed."),
            headers=headers,
        )


def _request_too_large(detail: str) -> HttpResponse:
    return problem_response(status=413, code="request_too_large", detail=detail)


class ChunkedBodyMiddleware:
    """A request body sent with ``Transfer-Encoding`` and no ``Content-Length`` reaches the
    views whole, as if its length had been sent, or not at all: never as an empty body.

    gunicorn de-chunks the body into ``wsgi.input`` but, having no length to give, sets no
    ``CONTENT_LENGTH``; Django then reads zero bytes, and a payment of ``{"amount": "10.00"}``
    became a payment of the whole remainder. So the body is read here, up to
    ``MAX_REQUEST_BODY_BYTES``:

    - more than that: 413 ``request_too_large`` (nothing beyond the limit is read);
    - chunks the server cannot decode: 400 ``bad_request``;
    - a server that does not promise a terminated ``wsgi.input`` (``wsgi.input_terminated``,
      which gunicorn sets; Django's runserver does not): 411 ``length_required``, since
      reading would either block or find nothing.

    A request with a ``CONTENT_LENGTH`` is the server's framing and passes untouched
    (gunicorn itself refuses ``Content-Length`` together with ``Transfer-Encoding``).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "HTTP_TRANSFER_ENCODING" not in request.META or request.META.get("CONTENT_LENGTH"):
            return self.get_response(request)
        environ = getattr(request, "environ", {})
        if not environ.get("wsgi.input_terminated"):
            return problem_response(
                status=411,
                code="length_required",
                detail="Send the body with a Content-Length: this server cannot read a chunked body.",
            )
        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            body = environ["wsgi.input"].read(limit + 1)
        except Exception:
            # Whatever the server raises decoding the client's chunks (gunicorn's errors are
            # its own classes, not OSError) is a malformed request, not a bug of ours.
            logger.warning("Unreadable chunked body in %s %s", request.method, request.path, exc_info=True)
            return problem_response(status=400, code="bad_request", detail="The chunked request body is malformed.")
        if len(body) > limit:
            return _request_too_large(f"The request body is over the limit of {limit} bytes.")
        # What WSGIRequest reads its body from (a LimitedStream of CONTENT_LENGTH bytes of
        # wsgi.input): the body now has the length DRF and Django look for.
        request.META["CONTENT_LENGTH"] = str(len(body))
        request._stream = io.BytesIO(body)
        return self.get_response(request)


class BodySizeLimitMiddleware:
    """Refuses request bodies above ``MAX_REQUEST_BODY_BYTES`` with 413 before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return problem_response(status=400, code="bad_request", detail="Content-Length is not a number.")
        if length > limit:
            return _request_too_large(f"The request body is {length} bytes; the limit is {limit} bytes.")
        return self.get_response(request)


# A page runs only scripts served from this origin (no inline script, no eval), and inline
# <style> only with its own response's nonce (style-src lists the nonce only on a page that
# used it). Images may be data: URIs (Swagger UI's icons are), forms post back here only, and
# nothing may frame a page or rebase its URLs. A view may allow more on its own page.
PAGE_CSP = {
    "default-src": ("'none'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:"),
    "font-src": ("'self'",),
    "connect-src": ("'self'",),
    "form-action": ("'self'",),
    "base-uri": ("'none'",),
    "frame-ancestors": ("'none'",),
}
# Every other answer (JSON, problem details, metrics, scripts) is data, never a document:
# opened directly it may load nothing and be framed by nothing.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"


def page_csp(allow: dict[str, tuple[str, ...]] | None = None) -> str:
    """``PAGE_CSP`` as a header value, with the sources in ``allow`` added to their directives."""
    policy = {directive: list(sources) for directive, sources in PAGE_CSP.items()}
    for directive, sources in (allow or {}).items():
        policy.setdefault(directive, []).extend(sources)
    return "; ".join(f"{directive} {' '.join(sources)}" for directive, sources in policy.items())


class ContentSecurityPolicyMiddleware:
    """Sends a ``Content-Security-Policy`` on every response: the page policy on HTML,
    ``DATA_CSP`` on everything else.

    A template that needs an inline ``<style>`` gives it ``nonce="{{ request.csp_nonce }}"``:
    the nonce is made on first use, fresh for each request, and only then allowed. A view may
    allow more sources on its page in ``response.csp_allow`` (``{"style-src": (...), ...}``);
    a response that carries its own ``Content-Security-Policy`` keeps it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        nonce = SimpleLazyObject(lambda: secrets.token_urlsafe(18))
        request.csp_nonce = nonce
        response = self.get_response(request)
        if response.has_header("Content-Security-Policy"):
            return response
        if not response.get("Content-Type", "").startswith("text/html"):
            response["Content-Security-Policy"] = DATA_CSP
        elif settings.DEBUG and response.status_code >= 400:
            pass  # Django's debug error pages style and script themselves inline (DEBUG only)
        else:
            allow = dict(getattr(response, "csp_allow", {}))
            if nonce._wrapped is not empty:  # the page rendered the nonce
                allow["style-src"] = (f"'nonce-{nonce}'", *allow.get("style-src", ()))
            response["Content-Security-Policy"] = page_csp(allow)
        return response
