"""Security headers on every answer, and pages the Content-Security-Policy does not break."""

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.urls import reverse

from bnpl.schedule import business_today
from bnpl.services.sweep import overdue_sweep
from core.middleware import DATA_CSP, page_csp
from ops.docs import RedocView

pytestmark = pytest.mark.django_db

# What every answer carries, page or data.
COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]{24})'")


def security_headers(response) -> dict[str, str]:
    return {name: response.get(name) for name in (*COMMON, "Content-Security-Policy")}


class _InlineCode(HTMLParser):
    """What a page would run or style inline: scripts without src, style attributes, event
    handlers, <style> elements (with their nonce, if any)."""

    def __init__(self):
        super().__init__()
        self.scripts, self.style_attributes, self.handlers, self.style_nonces = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and "src" not in attributes and attributes.get("type") != "application/json":
            self.scripts.append(self.getpos())
        if "style" in attributes:
            self.style_attributes.append((tag, self.getpos()))
        self.handlers += [(tag, name) for name in attributes if name.startswith("on")]
        if tag == "style":
            self.style_nonces.append(attributes.get("nonce"))


def assert_allowed_by_its_csp(response, where: str) -> None:
    """No inline script or style the page's own policy would refuse."""
    parsed = _InlineCode()
    parsed.feed(response.content.decode())
    assert parsed.scripts == [], f"{where}: inline <script> at (line, column) {parsed.scripts}"
    assert parsed.style_attributes == [], f"{where}: style attributes on {parsed.style_attributes}"
    assert parsed.handlers == [], f"{where}: inline event handlers {parsed.handlers}"
    allowed = NONCE.findall(response["Content-Security-Policy"])
    for style_nonce in parsed.style_nonces:
        assert style_nonce in allowed, f"{where}: a <style> without the response's nonce"


def test_a_page_with_an_inline_style_allows_exactly_its_own_nonce(operator_client):
    path = "/swagger/"
    response = operator_client.get(path, HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    nonce = re.search(r'<style nonce="([^"]+)">', response.content.decode()).group(1)
    assert security_headers(response) == COMMON | {
        "Content-Security-Policy": "default-src 'none'; script-src 'self'; "
        f"style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; font-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    }
    assert_allowed_by_its_csp(response, path)


def test_the_nonce_is_new_for_every_response(operator_client):
    first = operator_client.get("/swagger/", HTTP_ACCEPT="text/html")["Content-Security-Policy"]
    second = operator_client.get("/swagger/", HTTP_ACCEPT="text/html")["Content-Security-Policy"]

    assert NONCE.search(first).group(1) != NONCE.search(second).group(1)


@pytest.mark.parametrize(
    ("path", "who"),
    [
        ("/admin/login/", "anonymous"),
        ("/admin/", "operator"),
        ("/", "anonymous"),
        ("/", "operator"),
        ("/api/v1/health/", "anonymous"),
        ("/api/v1/health/", "operator"),  # with the figures and the chart
        ("/login/", "anonymous"),
        ("/", "customer"),  # the portals: forms, tables, no script
        ("/", "merchant"),
    ],
)
def test_a_page_without_inline_style_allows_none(client, operator, customer, merchant, path, who):
    # The home page and the dashboard take their styles from this origin's stylesheet.
    if who != "anonymous":
        client.force_login({"operator": operator, "customer": customer, "merchant": merchant}[who])
    response = client.get(path, HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert_allowed_by_its_csp(response, path)
    assert security_headers(response) == COMMON | {
        "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    }
    assert "unsafe" not in response["Content-Security-Policy"]


def test_redoc_allows_its_nonce_the_hashes_of_its_bundles_early_styles_and_its_worker(api_client):
    response = api_client.get("/redoc/")

    nonce = NONCE.search(response["Content-Security-Policy"]).group(1)
    hashes = RedocView.csp_allow["style-src"]
    allow = {"style-src": (f"'nonce-{nonce}'", *hashes), "worker-src": ("blob:",)}
    assert security_headers(response) == COMMON | {"Content-Security-Policy": page_csp(allow)}
    assert f"style-src 'self' 'nonce-{nonce}' {hashes[0]} {hashes[1]};" in response["Content-Security-Policy"]
    assert response["Content-Security-Policy"].endswith("; worker-src blob:")
    assert f'nonce="{nonce}"' in response.content.decode()  # handed to ReDoc by its init script's tag
    assert_allowed_by_its_csp(response, "/redoc/")


def test_swagger_ui_loads_its_initialising_script_from_a_url(api_client):
    page = api_client.get("/swagger/").content.decode()
    script_url = re.search(r'<script src="([^"]*\?script=[^"]*)"', page).group(1).replace("&amp;", "&")

    script = api_client.get(script_url)

    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()
    assert security_headers(script) == COMMON | {"Content-Security-Policy": DATA_CSP}


@pytest.mark.parametrize(
    ("path", "status", "content_type"),
    [
        ("/healthz", 200, "application/json"),
        ("/api/v1/auth/me/", 401, "application/problem+json"),  # DRF's own answer
        ("/api/v1/no-such-thing/", 404, "application/problem+json"),  # converted by the problem-details middleware
        ("/api/v1/health/?format=json", 200, "application/json"),
    ],
)
def test_data_answers_carry_the_data_policy(api_client, path, status, content_type):
    response = api_client.get(path)

    assert response.status_code == status
    assert response["Content-Type"].startswith(content_type)
    assert security_headers(response) == COMMON | {"Content-Security-Policy": DATA_CSP}


def test_an_authenticated_api_answer_carries_the_data_policy(customer, as_user):
    response = as_user(customer).get("/api/v1/auth/me/")

    assert response.status_code == 200
    assert security_headers(response) == COMMON | {"Content-Security-Policy": DATA_CSP}


def test_a_body_refused_before_any_view_carries_the_headers_too(api_client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 10

    response = api_client.post("/api/v1/auth/token/", {"username": "someone", "password": "x" * 20}, format="json")

    assert response.status_code == 413
    assert security_headers(response) == COMMON | {"Content-Security-Policy": DATA_CSP}


@pytest.fixture
def books(make_plan):
    plan = make_plan(purchase_date=business_today() - timedelta(days=45))
    overdue_sweep(late_fees=True)
    return plan


def admin_pages() -> list[str]:
    """The admin's index, each model's list and add form, and the change form of its first row."""
    pages = [reverse("admin:index")]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        pages += [reverse("admin:{}_{}_changelist".format(*info)), reverse("admin:{}_{}_add".format(*info))]
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            pages.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
    return pages


def test_no_admin_page_needs_inline_script_or_style(operator_client, books):
    pages = admin_pages()

    assert "/admin/django_celery_beat/periodictask/add/" in pages  # whose stock form has an inline script
    for path in pages:
        response = operator_client.get(path)
        if response.status_code == 403:  # a read-only model's add form
            continue
        assert response.status_code == 200, path
        assert response["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self'; style-src"), path
        assert_allowed_by_its_csp(response, path)


def test_debug_error_pages_keep_their_inline_styles(operator_client, settings):
    settings.DEBUG = True

    response = operator_client.get("/admin/no-such-page/")

    assert response.status_code == 404
    assert not response.has_header("Content-Security-Policy")  # Django's debug page styles itself
    assert response["X-Content-Type-Options"] == "nosniff"
