"""What every page shares: rendering an answer that keeps its status (a 4xx page explains
itself, it is not turned into a problem document), the not-found page, the 429 page."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.exceptions import Throttled

from core.throttling import AuthThrottle, LoginThrottle, WindowRateThrottle


def page(request: HttpRequest, template: str, context: dict | None = None, *, status: int = 200) -> HttpResponse:
    """``template`` rendered with ``status``; an error status keeps this page (the problem-details
    middleware converts only answers that do not explain themselves)."""
    response = render(request, template, context or {}, status=status)
    if status >= 400:
        response.keep_error_page = True
    return response


def not_found(request: HttpRequest, message: str) -> HttpResponse:
    """A 404 page saying ``message``: the same answer whether the thing is absent or someone else's."""
    return page(request, "pages/not_found.html", {"message": message}, status=404)


class PageAuthThrottle(AuthThrottle):
    """Sign-in attempts on the page, per client address (the token endpoint's ``auth`` scope,
    counted apart from it: each endpoint has its own budget per address)."""

    def identity(self, request, view) -> str | None:
        return f"addr:{self.get_ident(request)}:page-sign-in"


class PageLoginThrottle(LoginThrottle):
    """Sign-in attempts on the page, per username tried: the same counter as the token
    endpoint's, so guessing one password through both gets no more tries than through one."""

    def identity(self, request, view) -> str | None:
        username = request.POST.get("username")
        if not username:
            return None  # the form says the field is required
        return f"username:{username.casefold()}"


def throttled(request: HttpRequest, *throttle_classes: type[WindowRateThrottle]) -> HttpResponse | None:
    """The 429 page (with ``Retry-After``) when ``request`` is over one of the limits, else None.
    Every throttle counts the request, as DRF's do."""
    waits = [
        throttle.wait() or 1
        for throttle in (cls() for cls in throttle_classes)
        if not throttle.allow_request(request, None)
    ]
    if not waits:
        return None
    wait = Throttled(max(waits)).wait
    response = page(request, "pages/throttled.html", {"retry_after": wait}, status=429)
    response["Retry-After"] = str(wait)
    return response


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's CSRF refusal (``CSRF_FAILURE_VIEW``) as a page of this site: 403, saying what to
    do. A form sent without its token, or from a page older than the session (signed in or out
    since), ends here; Django's own page styles itself inline, which the CSP refuses."""
    return page(request, "pages/csrf_failure.html", status=403)
