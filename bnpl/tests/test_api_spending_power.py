"""GET /api/v1/auth/me/spending-power/: a customer's own credit, per currency, never added across."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import resolve

from accounts.models import User
from accounts.tests.factories import UserFactory
from bnpl.schedule import business_today
from bnpl.services.checkout import Offer, plan_offer
from bnpl.services.sweep import overdue_sweep

pytestmark = pytest.mark.django_db

SPENDING_POWER = "/api/v1/auth/me/spending-power/"


def test_spending_power_is_per_currency_and_adds_nothing_across(as_user, make_plan, merchant):
    customer = UserFactory(credit_limit=Decimal("1000.00"))
    make_plan(customer=customer, merchant=merchant, total="600.00", currency="USD")  # owed
    plan_offer(customer=customer, merchant=merchant, offer=Offer(total_amount=Decimal("250.00"), currency="EUR"))
    plan_offer(customer=customer, merchant=merchant, offer=Offer(total_amount=Decimal("100.00"), currency="USD"))

    answer = as_user(customer).get(SPENDING_POWER)

    assert answer.status_code == 200, answer.content
    assert answer.json() == {
        "user_status": "NORMAL",
        "by_currency": [
            {
                "currency": "EUR",
                "credit_limit": "1000.00",
                "outstanding": "0.00",
                "reserved": "250.00",
                "available": "750.00",
            },
            {
                "currency": "USD",
                "credit_limit": "1000.00",
                "outstanding": "600.00",
                "reserved": "100.00",
                "available": "300.00",
            },
        ],
    }


def test_a_customer_with_nothing_sees_the_default_currency_whole(as_user, customer, settings):
    settings.BNPL_DEFAULT_CURRENCY = "EUR"

    body = as_user(customer).get(SPENDING_POWER).json()

    limit = f"{customer.credit_limit:.2f}"
    assert body["by_currency"] == [
        {"currency": "EUR", "credit_limit": limit, "outstanding": "0.00", "reserved": "0.00", "available": limit}
    ]


def test_late_fees_count_and_a_debt_user_is_told_so(as_user, make_plan, merchant):
    customer = UserFactory(credit_limit=Decimal("1000.00"))
    make_plan(customer=customer, merchant=merchant, total="400.00", purchase_date=business_today() - timedelta(days=75))
    overdue_sweep(late_fees=True)  # two installments overdue, a fee of 10.00 on each

    body = as_user(customer).get(SPENDING_POWER).json()

    assert body["user_status"] == User.Status.DEBT_USER
    assert body["by_currency"] == [
        {
            "currency": "USD",
            "credit_limit": "1000.00",
            "outstanding": "420.00",
            "reserved": "0.00",
            "available": "580.00",
        }
    ]


def test_only_customers_see_their_spending_power(as_user, api_client, merchant, operator):
    assert api_client.get(SPENDING_POWER).status_code == 401
    for user in (merchant, operator):
        answer = as_user(user).get(SPENDING_POWER)
        assert answer.status_code == 403
        assert answer["Content-Type"] == "application/problem+json"
        assert answer.json()["code"] == "permission_denied"


def test_spending_power_takes_a_fixed_number_of_queries(as_user, make_plan, merchant):
    customer = UserFactory(credit_limit=Decimal("5000.00"))
    client = as_user(customer)
    make_plan(customer=customer, merchant=merchant, total="100.00")
    client.get(SPENDING_POWER)  # the token's user read once (then kept a while): not what is counted
    with CaptureQueriesContext(connection) as one_plan:
        few = client.get(SPENDING_POWER)
    for currency in ("USD", "EUR", "UZS"):
        make_plan(customer=customer, merchant=merchant, total="100.00", currency=currency)
        plan_offer(customer=customer, merchant=merchant, offer=Offer(total_amount=Decimal("50.00"), currency=currency))

    with CaptureQueriesContext(connection) as seven_plans:
        many = client.get(SPENDING_POWER)

    assert len(seven_plans) == len(one_plan) == 1  # the positions, in one statement
    assert len(few.json()["by_currency"]) == 1
    assert [row["currency"] for row in many.json()["by_currency"]] == ["EUR", "USD", "UZS"]


def test_the_route_sits_beside_the_profile_without_hiding_it():
    assert resolve(SPENDING_POWER).url_name == "auth-me-spending-power"
    assert resolve("/api/v1/auth/me/").url_name == "auth-me"
