"""A merchant's payout account through ``/api/v1/auth/me/``: set, read back masked, refused
by name when invalid or from another role."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.tests.factories import MerchantFactory
from accounts.tests.test_api_auth import ME, assert_problem

pytestmark = pytest.mark.django_db


def test_a_merchant_sets_its_payout_iban_and_reads_it_back_masked(as_user, merchant, raw_rows):
    client = as_user(merchant)

    response = client.patch(
        ME, {"payout_account": "gb82 west 1234 5698 7654 32", "payout_account_name": "Example Shop LLC"}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["payout_account"] == "GB82**************5432"
    assert body["payout_account_kind"] == "IBAN"
    assert body["payout_account_name"] == "Example Shop LLC"
    assert client.get(ME).json()["payout_account"] == "GB82**************5432"
    merchant.refresh_from_db()
    assert merchant.payout_account == "GB82WEST12345698765432"
    assert not [row for row in raw_rows("accounts_user") if "12345698765432" in row]


def test_a_merchant_sets_a_plain_account_number_keeping_the_name_on_file(as_user):
    merchant = MerchantFactory(payout=True)

    response = as_user(merchant).patch(ME, {"payout_account": "4000 1234 5678"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["payout_account"], body["payout_account_kind"]) == ("4000****5678", "ACCOUNT_NUMBER")
    assert body["payout_account_name"] == merchant.full_name


def test_a_merchant_removes_its_payout_account(as_user):
    merchant = MerchantFactory(payout=True)

    body = as_user(merchant).patch(ME, {"payout_account": ""}, format="json").json()

    assert (body["payout_account"], body["payout_account_kind"], body["payout_account_name"]) == ("", "", "")
    merchant.refresh_from_db()
    assert merchant.payout_account == ""


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"payout_account": "GB82WEST12345698765433", "payout_account_name": "Shop"}, "payout_account", "check digits"),
        ({"payout_account": "US89370400440532013000", "payout_account_name": "Shop"}, "payout_account", "US is not"),
        ({"payout_account": "DE8937040044053201300", "payout_account_name": "Shop"}, "payout_account", "has 22"),
        ({"payout_account": "12345", "payout_account_name": "Shop"}, "payout_account", "6 to 34 digits"),
        ({"payout_account": "x" * 65, "payout_account_name": "Shop"}, "payout_account", "64 characters"),
        ({"payout_account": 12, "payout_account_name": "Shop"}, "payout_account", "6 to 34 digits"),
        ({"payout_account": "DE89370400440532013000"}, "payout_account_name", "holder's name"),
        ({"payout_account": "DE89370400440532013000", "payout_account_name": " "}, "payout_account_name", "name"),
        ({"payout_account_name": "Shop"}, "payout_account_name", "no payout account"),
        ({"payout_account": "DE89370400440532013000", "payout_account_name": "x" * 71}, "payout_account_name", "70"),
    ],
)
def test_an_invalid_payout_account_is_a_400_naming_the_field(as_user, merchant, body, field, message):
    response = as_user(merchant).patch(ME, body, format="json")

    problem = assert_problem(response, 400, "validation_error")
    assert list(problem["errors"]) == [field]
    assert message in " ".join(problem["errors"][field])
    merchant.refresh_from_db()
    assert merchant.payout_account == ""


@pytest.mark.parametrize("role", ["customer", "operator"])
@pytest.mark.parametrize(
    "body",
    [
        {"payout_account": "DE89370400440532013000", "payout_account_name": "Someone"},
        {"payout_account": "DE89370400440532013000"},
        {"payout_account_name": "Someone"},
    ],
)
def test_customers_and_operators_sending_payout_fields_get_a_400_naming_them(request, as_user, role, body):
    user = request.getfixturevalue(role)

    problem = assert_problem(as_user(user).patch(ME, body, format="json"), 400, "validation_error")

    assert set(problem["errors"]) == set(body)
    user.refresh_from_db()
    assert user.payout_account == ""


def test_me_shows_no_payout_account_to_a_customer(as_user, customer):
    body = as_user(customer).get(ME).json()

    assert (body["payout_account"], body["payout_account_kind"], body["payout_account_name"]) == ("", "", "")


def test_me_reads_a_merchants_account_once_and_a_customers_never(as_user, customer):
    merchant = MerchantFactory(payout=True)
    as_merchant, as_customer = as_user(merchant), as_user(customer)
    column = re.compile(r'"accounts_user"\."payout_account"')  # the quote ends it: not its _kind or _name

    # The token's user row leaves the encrypted columns out: the merchant's account is read
    # (one query) when the profile shows it, a customer's (none: no kind) not at all.
    with CaptureQueriesContext(connection) as queries:
        assert as_merchant.get(ME).json()["payout_account"] == "DE89**************3000"
    assert len([q for q in queries if column.search(q["sql"])]) == 1
    with CaptureQueriesContext(connection) as queries:
        assert as_customer.get(ME).json()["payout_account"] == ""
    assert not [q for q in queries if column.search(q["sql"])]


def test_the_pii_guard_catches_a_plain_account_number_in_a_response():
    """The guard every test client runs: a saved account's clear number in any answer fails."""
    from conftest import assert_no_pii

    MerchantFactory(payout_account="77001234", payout_account_kind="ACCOUNT_NUMBER", payout_account_name="Shop")

    with pytest.raises(AssertionError, match="77001234"):
        assert_no_pii('{"note": "pay 77001234"}', "a response")
    with pytest.raises(AssertionError, match="GB82WEST12345698765432"):
        assert_no_pii('{"note": "GB82WEST12345698765432"}', "a response")
    assert_no_pii('{"payout_account": "****1234"}', "a response")
    assert User.objects.filter(payout_account_kind="ACCOUNT_NUMBER").count() == 1
