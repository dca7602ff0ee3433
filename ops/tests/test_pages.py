"""The pages a person opens first: the home page at ``/`` and the admin's branding."""

import re

import pytest
from django.test import Client

from accounts.tests.factories import MerchantFactory, OperatorFactory, UserFactory

pytestmark = pytest.mark.django_db

LINKS = ("/swagger/", "/redoc/", "/api/v1/health/", "/admin/login/")


def session_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def hrefs(page: str) -> set[str]:
    return {href.split("?")[0] for href in re.findall(r'href="([^"]+)"', page)}


def test_home_is_a_landing_page_for_anonymous_visitors(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "<h1>Buy now, pay later</h1>" in page
    assert "Merchants sell on installments" in page
    assert set(LINKS) <= hrefs(page)
    assert "POST /api/v1/auth/token/" in page  # how an API client gets a token
    assert "Authorization: Bearer" in page
    assert "Sign out" not in page
    assert "/login/" in hrefs(page)  # the session sign-in for customers and merchants


@pytest.mark.parametrize(
    ("factory", "role"),
    [(UserFactory, "Customer"), (MerchantFactory, "Merchant"), (OperatorFactory, "Operator")],
)
def test_home_greets_a_signed_in_user_with_their_role(factory, role):
    user = factory()

    response = session_client(user).get("/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f'role <strong data-role="{user.role}">{role}</strong>' in page
    assert user.username in page
    assert {"/swagger/", "/redoc/", "/api/v1/health/"} <= hrefs(page)
    assert "<h1>Buy now, pay later</h1>" not in page
    assert ("/admin/" in hrefs(page)) == (role == "Operator")
    # Everyone signed in may sign out (the session's own form); operators also keep the admin's.
    assert 'action="/logout/"' in page
    assert ('action="/admin/logout/"' in page) == (role == "Operator")


def test_home_answers_head_without_a_body(client):
    response = client.head("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert response.content == b""


@pytest.mark.parametrize("method", ["post", "put", "delete", "options"])
def test_home_refuses_other_methods_with_405(method):
    # The CSRF check is on: a POST is told 405 (nothing here changes state), not a CSRF 403.
    response = getattr(Client(enforce_csrf_checks=True), method)("/")

    assert response.status_code == 405
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"


def test_home_is_not_cached_by_anyone_else(client):
    response = client.get("/")

    assert "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]


def test_pages_load_only_this_origins_assets(client):
    for path in ("/", "/api/v1/health/"):
        page = client.get(path, HTTP_ACCEPT="text/html").content.decode()
        stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page)
        assert stylesheets == ["/static/bnpl/pages.css"], (path, stylesheets)
        assert client.get(stylesheets[0]).status_code == 200
        assert "<script" not in page


def test_pages_are_not_in_the_openapi_schema(api_client):
    paths = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]

    assert "/" not in paths
    assert "/api/v1/health/" not in paths  # a page and a probe, not a REST resource


def test_the_admin_is_branded_and_links_to_the_home_page(operator_client):
    page = operator_client.get("/admin/").content.decode()

    assert '<a href="/admin/">BNPL operations</a>' in page
    assert "<title>Operations | BNPL operations</title>" in page
    assert "Django administration" not in page
    assert '<a href="/">View site</a>' in page
    assert '<link rel="stylesheet" href="/static/bnpl/admin.css">' in page


def test_the_admin_login_page_is_branded(client):
    page = client.get("/admin/login/").content.decode()

    assert "BNPL operations" in page
    assert "Django administration" not in page
