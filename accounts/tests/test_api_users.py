import pytest

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.tests.factories import plan_originated

pytestmark = pytest.mark.django_db

USERS = "/api/v1/users/"


def ids(response) -> set[str]:
    return {row["user_id"] for row in response.json()["results"]}


def test_users_list_unauthenticated_is_401_problem(api_client):
    response = api_client.get(USERS)

    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/problem+json")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] == "not_authenticated"


def test_customer_sees_only_itself(as_user, customer, other_customer):
    client = as_user(customer)

    assert ids(client.get(USERS)) == {customer.user_id}
    assert client.get(f"{USERS}{customer.user_id}/").status_code == 200
    hidden = client.get(f"{USERS}{other_customer.user_id}/")
    assert hidden.status_code == 404
    assert hidden.json()["code"] == "not_found"


def test_merchant_sees_itself_and_its_customers_only(as_user, merchant, customer, other_customer):
    plan_originated(merchant=merchant, customer=customer)
    plan_originated(merchant=merchant, customer=customer)  # two plans, still one row
    other_merchant = MerchantFactory()
    plan_originated(merchant=other_merchant, customer=other_customer)
    client = as_user(merchant)

    assert ids(client.get(USERS)) == {merchant.user_id, customer.user_id}
    assert client.get(USERS).json()["count"] == 2
    assert client.get(f"{USERS}{customer.user_id}/").status_code == 200
    assert client.get(f"{USERS}{other_customer.user_id}/").status_code == 404
    assert client.get(f"{USERS}{other_merchant.user_id}/").status_code == 404


def test_operator_sees_everyone_and_filters_by_role(as_user, operator, merchant, customer, other_customer):
    client = as_user(operator)

    assert ids(client.get(USERS)) == {operator.user_id, merchant.user_id, customer.user_id, other_customer.user_id}
    assert ids(client.get(USERS, {"role": "MERCHANT"})) == {merchant.user_id}
    assert client.get(f"{USERS}{customer.user_id}/").status_code == 200


def test_user_rows_are_masked_with_the_documented_fields(as_user, operator):
    UserFactory(
        user_id="usr-mask",
        phone_number="+998901234567",
        passport_number="AA1234567",
        card_number="4111111111111111",
    )

    row = as_user(operator).get(f"{USERS}usr-mask/").json()

    assert set(row) == {
        "user_id",
        "full_name",
        "phone_number",
        "passport_number",
        "card_number",
        "status",
        "role",
        "created_at",
    }
    assert row["phone_number"] == "+998****4567"
    assert row["passport_number"] == "AA*******"
    assert row["card_number"] == "4111 **** **** 1111"


def test_users_list_is_paginated_with_a_capped_page_size(as_user, operator):
    UserFactory.create_batch(120)
    client = as_user(operator)

    page = client.get(USERS, {"page_size": 500}).json()
    assert page["count"] == 121
    assert len(page["results"]) == 100
    assert page["next"] is not None
    assert page["previous"] is None
    assert len(client.get(USERS, {"page": 2, "page_size": 100}).json()["results"]) == 21
    assert client.get(USERS, {"page": 9}).status_code == 404


def test_users_list_runs_a_fixed_number_of_queries(as_user, merchant, django_assert_max_num_queries):
    for _ in range(30):
        plan_originated(merchant=merchant)
    client = as_user(merchant)

    with django_assert_max_num_queries(3):  # user for the token, count, page
        response = client.get(USERS, {"page_size": 100})
    assert response.json()["count"] == 31


def test_write_methods_on_users_are_405(as_user, operator, customer):
    response = as_user(operator).delete(f"{USERS}{customer.user_id}/")

    assert response.status_code == 405
    assert response["Content-Type"].startswith("application/problem+json")
    assert "GET" in response["Allow"]
