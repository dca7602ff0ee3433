"""The hosted checkout page, ``/checkout/<token>/``: who sees it, what it shows, and what
confirming or declining does, refusals included (each with its status, never a 500)."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import MerchantFactory, OperatorFactory, UserFactory
from bnpl.models import Plan
from bnpl.schedule import business_today
from bnpl.services.checkout import Offer, plan_offer
from bnpl.services.sweep import overdue_sweep
from config.tests.test_security_headers import assert_allowed_by_its_csp

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(db):
    return MerchantFactory(full_name="Demo Electronics LLC")


def offered(customer, merchant, total="400.00", **terms) -> Plan:
    plan, created = plan_offer(customer=customer, merchant=merchant, offer=Offer(total_amount=Decimal(total), **terms))
    assert created
    assert plan.status == Plan.Status.PENDING
    return plan


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def url(plan: Plan) -> str:
    return f"/checkout/{plan.checkout_token}/"


def answer(client: Client, plan: Plan, action: str, token: str | None = None):
    return client.post(f"/checkout/{token or plan.checkout_token}/", {"action": action, "plan": plan.pk})


def test_a_signed_out_visitor_is_sent_to_sign_in_and_back(customer, shop):
    plan = offered(customer, shop)

    response = Client().get(url(plan))

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next=/checkout/{plan.checkout_token}/"


def test_the_customer_sees_the_merchant_the_total_the_schedule_and_the_expiry(customer, shop):
    plan = offered(customer, shop, "500.00", installment_count=3, merchant_reference="order-77")

    response = signed_in(customer).get(url(plan))

    assert response.status_code == 200
    page = response.content.decode()
    assert "<h1>Your offer from Demo Electronics LLC</h1>" in page
    assert '<strong id="total">500.00 USD</strong>' in page
    assert "order-77" in page
    for row in plan.schedule_shown:  # 166.67, 166.67, 166.66 on the dates the plan would have
        assert f'<td>{row["sequence"]}</td><td><time datetime="{row["due_date"]:%Y-%m-%d}">' in page
        assert f"{row['amount_due']} USD</td>" in page
    assert [str(r["amount_due"]) for r in plan.schedule_shown] == ["166.67", "166.67", "166.66"]
    assert 'data-capture-mode="automatic"' in page
    assert f'datetime="{plan.expires_at.isoformat()}"' in page
    assert re.search(r'id="available">2000.00 USD<', page)  # this offer's own reservation not counted
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'value="confirm"' in page
    assert 'value="decline"' in page
    assert "no-store" in response["Cache-Control"]
    assert_allowed_by_its_csp(response, "/checkout/")


def test_a_manual_capture_offer_says_the_merchant_captures_it(customer, shop):
    plan = offered(customer, shop, capture_mode=Plan.CaptureMode.MANUAL)

    page = signed_in(customer).get(url(plan)).content.decode()

    assert 'data-capture-mode="manual"' in page
    assert "the merchant captures it" in page


@pytest.mark.parametrize("who", ["other customer", "the merchant", "an operator"])
def test_anyone_but_the_plans_customer_gets_404(customer, shop, who):
    plan = offered(customer, shop)
    viewer = {"other customer": UserFactory, "the merchant": lambda: shop, "an operator": OperatorFactory}[who]()

    response = signed_in(viewer).get(url(plan))

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "This checkout link is not valid" in response.content.decode()
    assert answer(signed_in(viewer), plan, "confirm").status_code == 404
    plan.refresh_from_db()
    assert plan.status == Plan.Status.PENDING


def test_an_unknown_a_spent_and_a_lapsed_token_get_404(customer, shop):
    client = signed_in(customer)
    spent = offered(customer, shop)
    token = spent.checkout_token
    assert answer(client, spent, "decline").status_code == 302
    lapsed = offered(customer, shop, "100.00")
    Plan.objects.filter(pk=lapsed.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    for path in ("/checkout/no-such-token/", f"/checkout/{token}/", url(lapsed)):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "This checkout link is not valid" in response.content.decode()


def test_confirming_makes_the_plan_active_and_the_portal_says_so(customer, shop):
    plan = offered(customer, shop, "400.00")
    client = signed_in(customer)

    response = answer(client, plan, "confirm")

    assert response.status_code == 302
    assert response["Location"] == "/"
    plan.refresh_from_db()
    assert plan.status == Plan.Status.ACTIVE
    assert plan.checkout_token is None
    assert plan.installments.count() == 4
    portal = client.get("/").content.decode()
    first = plan.installments.order_by("sequence").first()
    assert f"Confirmed: plan #{plan.pk} with Demo Electronics LLC is active." in portal
    assert f"{first.amount_due} USD, is due on {first.due_date:%Y-%m-%d}" in portal


def test_confirming_a_manual_capture_offer_authorizes_it(customer, shop):
    plan = offered(customer, shop, capture_mode=Plan.CaptureMode.MANUAL)
    client = signed_in(customer)

    assert answer(client, plan, "confirm").status_code == 302

    plan.refresh_from_db()
    assert plan.status == Plan.Status.AUTHORIZED
    assert "Nothing is due until the merchant captures it" in client.get("/").content.decode()


def test_declining_releases_the_offer(customer, shop):
    plan = offered(customer, shop)
    client = signed_in(customer)

    assert answer(client, plan, "decline").status_code == 302

    plan.refresh_from_db()
    assert plan.status == Plan.Status.DECLINED
    assert plan.installments.count() == 0
    assert "Declined: you owe nothing" in client.get("/").content.decode()


def test_a_second_submit_of_the_form_goes_to_the_portal_saying_it_was_answered(customer, shop):
    plan = offered(customer, shop)
    client = signed_in(customer)
    token = plan.checkout_token
    assert answer(client, plan, "confirm").status_code == 302

    response = answer(client, plan, "confirm", token=token)

    assert response.status_code == 302
    assert f"Plan #{plan.pk} was answered already: it is active." in client.get("/").content.decode()
    assert plan.installments.count() == 4


def test_a_second_submit_naming_someone_elses_plan_is_404(customer, shop):
    others = offered(UserFactory(), shop)
    others_token = others.checkout_token
    mine = offered(customer, shop)
    assert answer(signed_in(customer), mine, "decline").status_code == 302

    response = signed_in(customer).post(f"/checkout/{mine.pk}-spent/", {"action": "confirm", "plan": others.pk})

    assert response.status_code == 404
    assert others_token
    assert Plan.objects.get(pk=others.pk).status == Plan.Status.PENDING


def test_confirming_needs_the_csrf_token(customer, shop):
    plan = offered(customer, shop)

    response = signed_in(customer, enforce_csrf_checks=True).post(url(plan), {"action": "confirm"})

    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
    assert "This form has expired" in response.content.decode()
    assert_allowed_by_its_csp(response, "CSRF failure")
    plan.refresh_from_db()
    assert plan.status == Plan.Status.PENDING


@pytest.mark.parametrize("action", ["", "accept", "CONFIRM"])
def test_an_unknown_action_is_400_naming_it(customer, shop, action):
    plan = offered(customer, shop)

    response = signed_in(customer).post(url(plan), {"action": action})

    assert response.status_code == 400
    assert 'data-code="validation_error" data-field="action"' in response.content.decode()
    plan.refresh_from_db()
    assert plan.status == Plan.Status.PENDING


def test_a_debt_user_confirming_gets_403_on_the_page(customer, shop, make_plan):
    plan = offered(customer, shop, "100.00")
    make_plan(customer=customer, total="200.00", purchase_date=business_today() - timedelta(days=45))
    overdue_sweep()
    customer.refresh_from_db()
    assert customer.status == User.Status.DEBT_USER

    response = answer(signed_in(customer), plan, "confirm")

    assert response.status_code == 403
    page = response.content.decode()
    assert 'data-code="debt_user_forbidden"' in page
    assert "Users with DEBT_USER status cannot create new BNPL plans" in page
    plan.refresh_from_db()
    assert plan.status == Plan.Status.PENDING


def test_confirming_above_the_credit_left_gets_422_with_the_customers_own_figures(customer, shop, make_plan):
    plan = offered(customer, shop, "1500.00")
    make_plan(customer=customer, total="300.00")  # owed since the offer
    User.objects.filter(pk=customer.pk).update(credit_limit=Decimal("1500.00"))  # an operator lowered it

    response = answer(signed_in(customer), plan, "confirm")

    assert response.status_code == 422
    page = response.content.decode()
    assert 'data-code="credit_declined"' in page
    figures = dict(
        re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", page.split('id="credit-figures"')[1].split("</dl>")[0])
    )
    assert figures == {
        "Credit limit": "1500.00 USD",
        "You owe": "300.00 USD",
        "Reserved by other offers": "0.00 USD",
        "Available": "1200.00 USD",
    }
    plan.refresh_from_db()
    assert plan.status == Plan.Status.PENDING


def test_confirming_a_lapsed_offer_is_409_on_the_page(customer, shop):
    plan = offered(customer, shop)
    Plan.objects.filter(pk=plan.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = answer(signed_in(customer), plan, "confirm")

    assert response.status_code == 409
    page = response.content.decode()
    assert 'data-code="plan_not_pending"' in page
    assert "This plan is EXPIRED" in page
    assert 'value="confirm"' not in page  # nothing left to answer


def test_the_checkout_page_is_not_in_the_openapi_schema(api_client):
    paths = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]

    assert not [path for path in paths if not path.startswith("/api/v1/") and path != "/webhook/refund-status/"]
