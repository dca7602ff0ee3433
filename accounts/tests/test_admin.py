import pytest
from django.test import Client

from accounts.models import User
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_admin_user_list_and_form_show_pii_masked(operator_client):
    user = UserFactory(phone_number="+998901234567", passport_number="AA1234567", card_number="4111111111111111")

    listing = operator_client.get("/admin/accounts/user/").content.decode()
    form = operator_client.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()

    for page in (listing, form):
        assert "+998****4567" in page
        assert "4111 **** **** 1111" in page
        assert "+998901234567" not in page
        assert "4111111111111111" not in page
    assert "AA*******" in form
    assert "AA1234567" not in form


def test_admin_search_and_filters_answer(operator_client, customer):
    assert customer.user_id in operator_client.get("/admin/accounts/user/", {"q": customer.user_id}).content.decode()
    assert operator_client.get("/admin/accounts/user/", {"role__exact": "MERCHANT"}).status_code == 200


def test_admin_creates_an_operator(operator_client):
    response = operator_client.post(
        "/admin/accounts/user/add/",
        {
            "username": "second-operator",
            "email": "ops@example.com",
            "role": "OPERATOR",
            "usable_password": "true",
            "password1": "a-long-operator-passphrase",
            "password2": "a-long-operator-passphrase",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    created = User.objects.get(username="second-operator")
    assert created.role == User.Role.OPERATOR
    assert created.is_staff
    assert created.user_id.startswith("usr-")


def test_admin_is_for_operators_only(customer):
    client = Client()
    client.force_login(customer)
    assert client.get("/admin/accounts/user/").status_code == 302  # to the login page


def test_admin_lists_refresh_tokens_without_showing_them(operator_client, customer):
    """An operator sees who holds which token id, never the token: it is a live session."""
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
    from rest_framework_simplejwt.tokens import RefreshToken

    token = RefreshToken.for_user(customer)
    record = OutstandingToken.objects.get(jti=token["jti"])

    listing = operator_client.get("/admin/token_blacklist/outstandingtoken/", {"q": customer.user_id})
    form = operator_client.get(f"/admin/token_blacklist/outstandingtoken/{record.pk}/change/")

    assert listing.status_code == form.status_code == 200
    assert token["jti"] in listing.content.decode()
    assert token["jti"] in form.content.decode()
    for page in (listing, form):
        assert str(token) not in page.content.decode()
        assert str(token).split(".")[1] not in page.content.decode()  # not even the claims part
