from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.api.serializers import PlanOut, plan_out
from bnpl.models import Installment, Plan
from bnpl.selectors import plan_get_for, plan_list_for
from ledger.models import JournalEntry

pytestmark = pytest.mark.django_db

PLANS = "/api/v1/plans/"
INSTALLMENTS = "/api/v1/installments/"


def test_merchant_offers_a_plan_the_customer_confirms(as_user, merchant, customer):
    response = as_user(merchant).post(
        PLANS,
        {"user_id": customer.user_id, "total_amount": "500.00", "installment_count": 3, "merchant_reference": "o-1"},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["user_id"] == customer.user_id
    assert body["merchant_id"] == merchant.user_id
    assert body["total_amount"] == body["authorized_amount"] == "500.00"
    assert body["status"] == "PENDING"
    assert body["checkout_url"].endswith(f"/checkout/{Plan.objects.get().checkout_token}/")
    assert body["installments"] == []
    assert [i["amount_due"] for i in body["schedule"]] == ["166.67", "166.67", "166.66"]
    assert not JournalEntry.objects.filter(plan_id=body["id"]).exists()

    confirmed = as_user(customer).post(f"{PLANS}{body['id']}/confirm/", format="json")

    assert confirmed.status_code == 200, confirmed.content
    plan = confirmed.json()
    assert plan["status"] == "ACTIVE"
    assert plan["checkout_url"] is None
    assert plan["amount_remaining"] == "500.00"
    assert [i["amount_due"] for i in plan["installments"]] == ["166.67", "166.67", "166.66"]
    assert [i["amount_due"] for i in plan["schedule"]] == ["166.67", "166.67", "166.66"]
    assert JournalEntry.objects.filter(plan_id=body["id"], kind="ORIGINATION").count() == 1


def test_customers_cannot_create_plans(as_user, customer, merchant):
    response = as_user(customer).post(
        PLANS, {"user_id": customer.user_id, "merchant_id": merchant.user_id, "total_amount": "120"}, format="json"
    )

    assert response.status_code == 403
    assert not Plan.objects.exists()


def test_operator_names_both_parties(as_user, operator, customer, merchant):
    response = as_user(operator).post(
        PLANS,
        {"user_id": customer.user_id, "merchant_id": merchant.user_id, "total_amount": "99.99", "currency": "eur"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["currency"] == "EUR"
    assert response.json()["status"] == "ACTIVE"
    assert Plan.objects.get().created_by == operator
    assert JournalEntry.objects.filter(kind="ORIGINATION").count() == 1


@pytest.mark.parametrize(
    ("who", "body", "field"),
    [
        ("merchant", {"total_amount": "10.00"}, "user_id"),
        ("merchant", {"user_id": "CUSTOMER", "merchant_id": "mch-other", "total_amount": "10.00"}, "merchant_id"),
        ("operator", {"user_id": "CUSTOMER", "merchant_id": "CUSTOMER", "total_amount": "10.00"}, "merchant_id"),
        ("operator", {"user_id": "CUSTOMER", "total_amount": "10.00"}, "merchant_id"),
        (
            "operator",
            {"user_id": "CUSTOMER", "merchant_id": "MERCHANT", "total_amount": "10", "capture_mode": "manual"},
            "capture_mode",
        ),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "10", "capture_mode": "later"}, "capture_mode"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "0"}, "total_amount"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "-5"}, "total_amount"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "100000.01"}, "total_amount"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "10.005"}, "total_amount"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "0.03"}, "total_amount"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "ten"}, "total_amount"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "10", "installment_count": 1}, "installment_count"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "10", "installment_count": 25}, "installment_count"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "10", "installment_count": "x"}, "installment_count"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "10", "frequency": "DAILY"}, "frequency"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "10", "currency": "XXX"}, "currency"),
        ("merchant", {"user_id": "CUSTOMER", "total_amount": "10", "currency": "US"}, "currency"),
        (
            "merchant",
            {"user_id": "CUSTOMER", "total_amount": "10", "merchant_reference": "r" * 129},
            "merchant_reference",
        ),
    ],
)
def test_plan_create_bad_input_names_the_field(as_user, customer, merchant, operator, who, body, field):
    names = {"CUSTOMER": customer.user_id, "MERCHANT": merchant.user_id}
    body = {k: names.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    creator = {"customer": customer, "merchant": merchant, "operator": operator}[who]

    response = as_user(creator).post(PLANS, body, format="json")

    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert field in response.json()["errors"]
    assert not Plan.objects.exists()


def test_debt_user_gets_403_with_the_documented_detail(as_user, merchant):
    debtor = UserFactory(status=User.Status.DEBT_USER)

    response = as_user(merchant).post(PLANS, {"user_id": debtor.user_id, "total_amount": "50.00"}, format="json")

    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "debt_user_forbidden"
    assert body["detail"] == "Users with DEBT_USER status cannot create new BNPL plans"


def test_credit_declined_tells_the_merchant_nothing_about_the_customer(as_user, merchant):
    customer = UserFactory(credit_limit=Decimal("100.00"))

    response = as_user(merchant).post(PLANS, {"user_id": customer.user_id, "total_amount": "100.01"}, format="json")

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "credit_declined"
    assert set(body) == {"type", "title", "status", "detail", "code"}


@pytest.mark.parametrize("who", ["nobody", "a merchant", "an operator", "inactive"])
def test_a_user_id_that_names_no_customer_gets_the_same_answer_as_a_decline(as_user, merchant, operator, who):
    declined = UserFactory(credit_limit=Decimal("1.00"))
    target = {
        "nobody": "usr-nobody",
        "a merchant": MerchantFactory().user_id,
        "an operator": operator.user_id,
        "inactive": UserFactory(is_active=False).user_id,
    }[who]

    refused = as_user(merchant).post(PLANS, {"user_id": target, "total_amount": "10.00"}, format="json")
    real = as_user(merchant).post(PLANS, {"user_id": declined.user_id, "total_amount": "10.00"}, format="json")

    assert refused.status_code == real.status_code == 422
    assert refused.json() == real.json()
    assert not Plan.objects.exists()


def test_plan_scoping(as_user, make_plan, customer, other_customer, merchant, operator):
    mine = make_plan(customer=customer, merchant=merchant)
    theirs = make_plan(customer=other_customer)

    assert {p["id"] for p in as_user(customer).get(PLANS).json()["results"]} == {mine.pk}
    assert as_user(customer).get(f"{PLANS}{theirs.pk}/").status_code == 404
    assert {p["id"] for p in as_user(merchant).get(PLANS).json()["results"]} == {mine.pk}
    assert as_user(merchant).get(f"{PLANS}{theirs.pk}/").status_code == 404
    assert {p["id"] for p in as_user(operator).get(PLANS).json()["results"]} == {mine.pk, theirs.pk}


def test_plan_filters(as_user, make_plan, operator, customer, other_customer):
    first = make_plan(customer=customer)
    make_plan(customer=other_customer)
    Plan.objects.filter(pk=first.pk).update(status=Plan.Status.COMPLETED)
    client = as_user(operator)

    assert [p["id"] for p in client.get(PLANS, {"user_id": customer.user_id}).json()["results"]] == [first.pk]
    assert [p["id"] for p in client.get(PLANS, {"status": "COMPLETED"}).json()["results"]] == [first.pk]
    assert client.get(PLANS, {"status": "BOGUS"}).status_code == 400


def test_a_page_of_50_plans_with_12_installments_takes_a_fixed_number_of_queries(
    as_user, make_plan, merchant, django_assert_max_num_queries
):
    customer = UserFactory(credit_limit=Decimal("100000.00"))
    for _ in range(50):
        make_plan(customer=customer, merchant=merchant, total="120.00", count=12)
    client = as_user(merchant)

    with django_assert_max_num_queries(4):  # token user, count, plans + parties, installments
        response = client.get(PLANS, {"page_size": 50})

    assert len(response.json()["results"]) == 50
    assert all(len(p["installments"]) == 12 for p in response.json()["results"])


def test_installments_list_filters_and_scope(as_user, make_plan, customer, other_customer):
    make_plan(customer=customer, count=4, purchase_date=date(2026, 1, 15))
    make_plan(customer=other_customer)
    client = as_user(customer)

    everything = client.get(INSTALLMENTS).json()
    assert everything["count"] == 4
    window = client.get(INSTALLMENTS, {"due_after": "2026-03-01", "due_before": "2026-04-15"}).json()
    assert [row["due_date"] for row in window["results"]] == ["2026-03-15", "2026-04-15"]
    assert client.get(INSTALLMENTS, {"status": "OVERDUE"}).json()["count"] == 0
    assert client.get(INSTALLMENTS, {"due_before": "not-a-date"}).status_code == 400
    other_installment = other_customer.plans.get().installments.first()
    assert client.get(f"{INSTALLMENTS}{other_installment.pk}/").status_code == 404


def test_plan_create_needs_authentication(api_client):
    assert api_client.post(PLANS, {"total_amount": "10"}, format="json").status_code == 401


def test_plans_with_far_future_dates_are_listed(as_user, make_plan, customer):
    plan = make_plan(customer=customer, purchase_date=date.today() + timedelta(days=400), count=24)
    assert as_user(customer).get(f"{PLANS}{plan.pk}/").json()["installment_count"] == 24


def test_plan_is_created_for_an_active_merchant_only(as_user, operator, customer):
    inactive = MerchantFactory(is_active=False)
    response = as_user(operator).post(
        PLANS, {"user_id": customer.user_id, "merchant_id": inactive.user_id, "total_amount": "10"}, format="json"
    )
    assert response.status_code == 400
    assert "merchant_id" in response.json()["errors"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('{"total_amount": {"a": 1}, "installment_count": [], "frequency": 5, "currency": null}', "application/json"),
        ("total_amount=10", "application/x-www-form-urlencoded"),
        ("", "application/json"),
        ('{"pad": "' + "x" * (2 * 1024 * 1024) + '"}', "application/json"),
    ],
    ids=["malformed", "array", "wrong-types", "form", "empty", "2MiB"],
)
@pytest.mark.parametrize(
    "path", [PLANS, "/api/v1/late-fees/1/waive/", "/api/v1/plans/1/pay/", "/api/v1/installments/1/pay/"]
)
def test_bad_body_to_authenticated_posts_is_a_4xx_problem(as_user, operator, path, body, content_type):
    response = as_user(operator).post(path, data=body, content_type=content_type, HTTP_IDEMPOTENCY_KEY="k")

    assert 400 <= response.status_code < 500, response.content[:300]
    assert response["Content-Type"].startswith("application/problem+json")
    assert not Plan.objects.exists()


def test_the_plan_detail_read_gives_what_the_list_query_gives_in_every_scope(make_plan, as_user):
    customer, merchant, other_merchant = UserFactory(), MerchantFactory(), MerchantFactory()
    operator = UserFactory(role=User.Role.OPERATOR)
    plan = make_plan(customer=customer, merchant=merchant, total="100.01", count=3)
    as_user(customer).post(f"/api/v1/installments/{plan.installments.get(sequence=1).pk}/pay/", {}, format="json")

    for viewer in (customer, merchant, operator):
        detail = plan_get_for(viewer=viewer, pk=plan.pk)
        assert PlanOut(detail).data == PlanOut(plan_list_for(viewer=viewer).get(pk=plan.pk)).data
        assert as_user(viewer).get(f"/api/v1/plans/{plan.pk}/").json()["amount_paid"] == "33.34"
    assert plan_get_for(viewer=other_merchant, pk=plan.pk) is None
    assert plan_get_for(viewer=UserFactory(), pk=plan.pk) is None
    assert as_user(other_merchant).get(f"/api/v1/plans/{plan.pk}/").status_code == 404


@pytest.mark.parametrize("pk", ["²", "1²", "9" * 30, "abc"])
def test_a_plan_id_that_is_no_id_is_a_404(as_user, pk):
    assert as_user(UserFactory(role=User.Role.OPERATOR)).get(f"/api/v1/plans/{pk}/").status_code == 404


@pytest.mark.breaks_ledger  # the installments are set by hand, not paid or refunded
def test_plan_out_gives_what_the_plan_serializer_gives(make_plan):
    """Plan answers are built by plan_out() rather than PlanOut: the same document, whatever
    the plan's state (paid, partly paid, overdue, cancelled; odd totals and references)."""
    plan = make_plan(total="1000.01", count=3, frequency="WEEKLY", purchase_date=date(2024, 2, 29))
    first, second, third = plan.installments.order_by("sequence")
    Installment.objects.filter(pk=first.pk).update(
        amount_paid=first.amount_due, status=Installment.Status.PAID, paid_at=timezone.now()
    )
    Installment.objects.filter(pk=second.pk).update(amount_paid=Decimal("0.10"), status=Installment.Status.OVERDUE)
    Installment.objects.filter(pk=third.pk).update(amount_due=Decimal("0.00"), status=Installment.Status.CANCELLED)
    Plan.objects.filter(pk=plan.pk).update(merchant_reference='ß "x" ✓', currency="UZS")
    fresh = make_plan(total="0.04", count=4)

    read = plan_get_for(viewer=plan.merchant, pk=plan.pk)
    listed = plan_list_for(viewer=plan.merchant).get(pk=plan.pk)
    for shown in (read, listed, fresh):  # fresh: as created, the rows just written, not read back
        assert plan_out(shown) == PlanOut(shown).data
    assert plan_out(read)["installments"][0]["paid_at"].endswith("Z")
