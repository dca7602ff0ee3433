"""Session sign-in and sign-out on ``/login/`` and ``/logout/``: Django's form and CSRF, ``next``
kept on this site, and the token endpoint's limits with a 429 page (never a 500)."""

import uuid

import pytest
from django.test import Client

from accounts.tests.factories import DEFAULT_PASSWORD, MerchantFactory, UserFactory
from core import throttling

pytestmark = pytest.mark.django_db

LOOSE = "100000/min"


@pytest.fixture
def limits(settings):
    """``limits(auth=..., login=...)``: those rates, the others loose, counted in a cache of
    this test's own (a fresh key prefix on Redis when there is one)."""
    if settings.REDIS_URL:
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": settings.REDIS_URL,
                "KEY_PREFIX": f"{settings.CACHES['default'].get('KEY_PREFIX', 'bnpl')}-pages-{uuid.uuid4().hex}",
            }
        }
    else:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "x"}}
    throttling.backoff_reset()

    def set_limits(**given: str) -> None:
        settings.BNPL_THROTTLE_RATES = {scope: given.get(scope, LOOSE) for scope in ("user", "anon", "auth", "login")}

    yield set_limits
    throttling.backoff_reset()


def sign_in(client: Client, username: str, password: str = DEFAULT_PASSWORD, **extra):
    return client.post("/login/", {"username": username, "password": password, **extra})


def test_the_sign_in_page_has_the_form_with_its_csrf_token_and_next(client):
    response = client.get("/login/?next=/checkout/abc/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'name="username"' in page
    assert 'type="password"' in page
    assert '<input type="hidden" name="next" value="/checkout/abc/">' in page
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("factory", [UserFactory, MerchantFactory])
def test_signing_in_opens_a_session_and_goes_on_to_next(factory):
    user = factory()
    client = Client(enforce_csrf_checks=True)
    client.get("/login/")

    response = sign_in(
        client, user.username, csrfmiddlewaretoken=client.cookies["csrftoken"].value, next="/checkout/abc/"
    )

    assert response.status_code == 302
    assert response["Location"] == "/checkout/abc/"
    assert client.get("/").context["user"] == user


def test_signing_in_without_next_goes_home_and_a_foreign_next_is_ignored(customer):
    assert sign_in(Client(), customer.username)["Location"] == "/"
    assert sign_in(Client(), customer.username, next="https://evil.example/")["Location"] == "/"


def test_a_signed_in_user_opening_the_sign_in_page_goes_on_to_next(customer):
    client = Client()
    client.force_login(customer)

    response = client.get("/login/?next=/checkout/abc/")

    assert response.status_code == 302
    assert response["Location"] == "/checkout/abc/"


@pytest.mark.parametrize(("username", "password"), [("nobody", "whatever-1"), (None, "wrong-password-1"), ("", "")])
def test_wrong_credentials_show_the_form_again_with_400(customer, username, password):
    client = Client()

    response = sign_in(client, customer.username if username is None else username, password)

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "Please enter a correct username and password" in page or "This field is required." in page
    assert password not in page or password == ""
    assert "_auth_user_id" not in client.session


def test_signing_in_needs_the_csrf_token(customer):
    client = Client(enforce_csrf_checks=True)

    response = sign_in(client, customer.username)

    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_too_many_attempts_from_one_address_get_the_429_page(customer, limits):
    limits(auth="3/min")
    client = Client()
    for _ in range(3):
        assert sign_in(client, customer.username, "wrong-password-1").status_code == 400

    response = sign_in(client, customer.username)  # the right password, too late

    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) >= 1
    assert "Too many attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_one_username_is_limited_from_every_address_and_with_the_token_endpoint(customer, api_client, limits):
    limits(login="3/min")
    api_client.post("/api/v1/auth/token/", {"username": customer.username, "password": "x"}, format="json")
    for address in ("10.0.0.1", "10.0.0.2"):
        assert sign_in(Client(REMOTE_ADDR=address), customer.username, "wrong-password-1").status_code == 400

    response = sign_in(Client(REMOTE_ADDR="10.0.0.3"), customer.username)

    assert response.status_code == 429
    assert sign_in(Client(REMOTE_ADDR="10.0.0.3"), UserFactory().username).status_code == 302  # others are not


def test_signing_out_ends_the_session(customer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(customer)
    token = client.get("/").context["csrf_token"]

    response = client.post("/logout/", {"csrfmiddlewaretoken": str(token)})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert "_auth_user_id" not in client.session


def test_signing_out_takes_a_post_with_its_csrf_token(customer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(customer)

    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 403
    assert client.session["_auth_user_id"] == str(customer.pk)
