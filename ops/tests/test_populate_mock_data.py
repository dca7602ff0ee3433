from decimal import Decimal

import pytest
from django.core.management import call_command

from accounts.models import User
from bnpl.models import Installment, LateFee, Plan
from bnpl.schedule import business_today
from events.models import Event, Notification
from payments.models import Payment
from refunds.models import Refund
from settlements.models import Payout, Settlement, SettlementRun

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_development(settings):
    settings.DEBUG = True  # pytest-django runs with DEBUG off; demo data is for local use


def test_populate_mock_data_is_idempotent_and_makes_the_documented_users(api_client):
    call_command("populate_mock_data")
    snapshot = sorted(User.objects.values_list("user_id", "role", "status", "credit_limit", "card_last4"))
    plans = sorted(Plan.objects.values_list("merchant_reference", "total_amount", "status", "updated_at"))
    rows = (Installment.objects.count(), Event.objects.count(), Notification.objects.count())
    call_command("populate_mock_data")

    assert sorted(User.objects.values_list("user_id", "role", "status", "credit_limit", "card_last4")) == snapshot
    assert sorted(Plan.objects.values_list("merchant_reference", "total_amount", "status", "updated_at")) == plans
    assert (Installment.objects.count(), Event.objects.count(), Notification.objects.count()) == rows
    assert dict(Plan.objects.filter(customer__user_id="usr-001").values_list("merchant_reference", "status")) == {
        "demo-laptop": "ACTIVE",
        "demo-headphones": "ACTIVE",
        "demo-watch": "PENDING",
        "demo-camera": "AUTHORIZED",
    }
    debtor_plan = Plan.objects.get(customer__user_id="debt-user-001")
    assert debtor_plan.installments.get(sequence=1).status == "OVERDUE"
    assert LateFee.objects.filter(plan=debtor_plan).count() == 1
    assert sorted(Payment.objects.values_list("status", flat=True)) == ["FAILED", "SUCCEEDED"]
    assert dict(Refund.objects.values_list("transaction_id", "status")) == {
        "rf-demo-approved": "APPROVED",
        "rf-demo-pending": "PENDING",
    }
    usr = User.objects.get(user_id="usr-001")
    assert (usr.role, usr.status, str(usr.credit_limit)) == ("CUSTOMER", "NORMAL", "10000.00")
    assert (usr.phone_number, usr.passport_number, usr.masked_card) == (
        "+998901234567",
        "AA1234567",
        "4111 **** **** 1111",
    )
    assert User.objects.get(user_id="debt-user-001").status == User.Status.DEBT_USER
    assert User.objects.get(user_id="merchant-001").role == User.Role.MERCHANT
    admin = User.objects.get(username="admin")
    assert admin.role == User.Role.OPERATOR
    assert admin.is_staff
    assert admin.is_superuser


def test_demo_plans_of_merchant_001_went_through_the_customers_consent():
    call_command("populate_mock_data")
    merchant_plans = Plan.objects.filter(merchant__user_id="merchant-001")

    offer = merchant_plans.get(merchant_reference="demo-watch")
    assert (offer.status, offer.capture_mode, offer.installments.count()) == ("PENDING", "automatic", 0)
    assert offer.checkout_token
    assert offer.expires_at
    assert offer.confirmed_at is None
    assert Notification.objects.filter(customer=offer.customer, kind="OFFER", cause=f"plan:{offer.pk}").exists()
    camera = merchant_plans.get(merchant_reference="demo-camera")
    assert (camera.status, camera.capture_mode, str(camera.authorized_amount)) == ("AUTHORIZED", "manual", "900.00")
    assert camera.confirmed_at is not None
    assert camera.installments.count() == 0
    for reference in ("demo-laptop", "demo-headphones", "demo-tablet"):
        plan = merchant_plans.get(merchant_reference=reference)
        assert (plan.status, plan.created_by_id) == ("ACTIVE", None)
        assert plan.confirmed_at is not None
        assert plan.activated_at is not None
        types = set(Event.objects.filter(data__plan_id=plan.pk).values_list("type", flat=True))
        assert {"plan.pending", "plan.confirmed"} <= types
    debtor_plan = merchant_plans.get(merchant_reference="demo-phone")
    assert (debtor_plan.status, debtor_plan.created_by.username) == ("ACTIVE", "admin")
    assert not Event.objects.filter(type="plan.pending", data__plan_id=debtor_plan.pk).exists()


@pytest.mark.parametrize(("username", "password"), [("admin", "admin123"), ("usr-001", "demo12345")])
def test_demo_users_can_log_in(api_client, username, password):
    call_command("populate_mock_data")

    response = api_client.post("/api/v1/auth/token/", {"username": username, "password": password}, format="json")

    assert response.status_code == 200
    assert "access" in response.json()


def test_scale_creates_customers_with_plans_in_bulk_idempotently():
    call_command("populate_mock_data", "--scale", "40")
    call_command("populate_mock_data", "--scale", "50")

    assert User.objects.filter(user_id__startswith="scale-").count() == 50
    assert Plan.objects.filter(merchant_reference__startswith="scale-").count() == 50
    assert Installment.objects.filter(plan__merchant_reference__startswith="scale-").count() == 200
    assert Installment.objects.filter(status="OVERDUE").count() > 1
    assert set(Plan.objects.filter(merchant_reference__startswith="scale-").values_list("status", flat=True)) == {
        "ACTIVE"
    }


def test_merchant_001_has_a_settled_day_paid_out_once(as_user):
    call_command("populate_mock_data")
    call_command("populate_mock_data")

    merchant = User.objects.get(user_id="merchant-001")
    settlement = Settlement.objects.get(merchant=merchant)
    # Gross: 1200.00 + 180.00 + 800.00 + 300.00 captured, less the 20.00 refund approved (the
    # pending one waits); fees 4.00 % + 0.30 each: 48.30 + 7.50 + 32.30 + 12.30.
    assert (settlement.business_date, settlement.gross, settlement.fees, settlement.net) == (
        business_today(),
        Decimal("2460.00"),
        Decimal("100.40"),
        Decimal("2359.60"),
    )
    assert sorted(settlement.lines.values_list("type", flat=True)) == ["capture"] * 4 + ["refund"]
    payout = Payout.objects.get()
    assert (payout.settlement_id, payout.status, payout.amount, payout.account_masked) == (
        settlement.pk,
        "PAID",
        Decimal("2359.60"),
        "DE89**************3000",
    )
    assert not payout.account_masked.endswith("0002")  # the fake gateway's failing accounts
    assert SettlementRun.objects.count() == 1
    client = as_user(merchant)
    assert client.get("/api/v1/settlements/").json()["count"] == 1
    assert client.get("/api/v1/payouts/").json()["results"][0]["status"] == "PAID"
    assert client.get("/api/v1/analytics/dashboard/").json()["payouts_total"] == "2359.60"


def test_scale_data_is_left_unsettled():
    call_command("populate_mock_data", "--scale", "5")

    assert not Settlement.objects.filter(lines__plan__merchant_reference__startswith="scale-").exists()
    assert Settlement.objects.count() == 1
