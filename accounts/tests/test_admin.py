import pytest
from django.test import Client

from accounts.models import User
from accounts.tests.factories import MerchantFactory, UserFactory

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


# --- The merchant's payout account ------------------------------------------------------------


def change_form(user: User, **changes) -> dict:
    """The body of the user's admin change form as it stands, with ``changes``."""
    body = {
        "username": user.username,
        "email": user.email,
        "full_name": user.full_name,
        "role": user.role,
        "credit_limit": str(user.credit_limit),
        "autopay": "on" if user.autopay else "",
        "webhook_url": user.webhook_url,
        "new_payout_account": "",
        "new_payout_account_name": user.payout_account_name,
        "is_active": "on",
    }
    if user.is_merchant:  # the pricing history inline's (empty) management form
        body |= {
            f"pricing_changes-{name}": "0"
            for name in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS")
        }
    body.update(changes)
    return {key: value for key, value in body.items() if value != ""}


def test_admin_shows_the_payout_account_masked_only(operator_client):
    merchant = MerchantFactory(payout=True)

    listing = operator_client.get("/admin/accounts/user/").content.decode()
    form = operator_client.get(f"/admin/accounts/user/{merchant.pk}/change/").content.decode()

    for page in (listing, form):
        assert "DE89**************3000" in page
        assert "DE89370400440532013000" not in page
        assert "0532013000" not in page
    assert merchant.full_name in form  # the holder's name, to edit


def test_an_operator_sets_a_merchants_payout_account_in_the_admin(operator_client, operator, log_lines):
    merchant = MerchantFactory()

    response = operator_client.post(
        f"/admin/accounts/user/{merchant.pk}/change/",
        change_form(merchant, new_payout_account="gb82 WEST 1234 5698 7654 32", new_payout_account_name="Shop Ltd"),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    merchant.refresh_from_db()
    assert (merchant.payout_account, merchant.payout_account_kind, merchant.payout_account_name) == (
        "GB82WEST12345698765432",
        "IBAN",
        "Shop Ltd",
    )
    assert f"set by {operator.user_id}: (none) -> GB82**************5432" in "\n".join(log_lines())
    form = operator_client.get(f"/admin/accounts/user/{merchant.pk}/change/").content.decode()
    assert "GB82**************5432" in form
    assert "GB82WEST12345698765432" not in form

    # Saving the form again with the box left empty keeps the account; a new name replaces the old.
    operator_client.post(
        f"/admin/accounts/user/{merchant.pk}/change/", change_form(merchant, new_payout_account_name="Shop Two Ltd")
    )
    merchant.refresh_from_db()
    assert (merchant.payout_account, merchant.payout_account_name) == ("GB82WEST12345698765432", "Shop Two Ltd")

    operator_client.post(
        f"/admin/accounts/user/{merchant.pk}/change/", change_form(merchant, remove_payout_account="on")
    )
    merchant.refresh_from_db()
    assert (merchant.payout_account, merchant.payout_account_kind, merchant.payout_account_name) == ("", "", "")


def _typed(account: str | None = None, name: str | None = None) -> dict:
    typed = {"new_payout_account": account, "new_payout_account_name": name}
    return {key: value for key, value in typed.items() if value is not None}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (_typed("GB82WEST12345698765433", "Shop"), "new_payout_account", "check digits"),
        (_typed("US89370400440532013000", "Shop"), "new_payout_account", "US is not"),
        (_typed("DE893704004405320130", "Shop"), "new_payout_account", "has 20"),
        (_typed("1234 5", "Shop"), "new_payout_account", "6 to 34 digits"),
        (_typed("DE89370400440532013000"), "new_payout_account_name", "name of the account holder"),
        (_typed(name="Shop"), "new_payout_account_name", "no payout account"),
    ],
)
def test_the_admin_refuses_an_invalid_payout_account_without_showing_it_again(operator_client, changes, field, message):
    merchant = MerchantFactory()

    response = operator_client.post(f"/admin/accounts/user/{merchant.pk}/change/", change_form(merchant, **changes))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    assert message in " ".join(errors[field])
    assert changes.get("new_payout_account", "\x00") not in response.content.decode()
    merchant.refresh_from_db()
    assert merchant.payout_account == ""


def test_the_admin_gives_no_payout_account_to_a_customer(operator_client, customer):
    response = operator_client.post(
        f"/admin/accounts/user/{customer.pk}/change/",
        change_form(customer, new_payout_account="DE89370400440532013000", new_payout_account_name="Someone"),
    )

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["new_payout_account"]
    customer.refresh_from_db()
    assert customer.payout_account == ""
