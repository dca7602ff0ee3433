from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import LateFee
from bnpl.schedule import business_today
from bnpl.services.sweep import overdue_sweep
from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME
from ledger.models import JournalEntry
from ledger.tests.books import balance, entries, money_state

pytestmark = pytest.mark.django_db


@pytest.fixture
def debtor_with_fee(make_plan, merchant):
    customer = UserFactory()
    today = business_today()
    plan = make_plan(customer=customer, merchant=merchant, total="400.00", purchase_date=today - timedelta(days=75))
    overdue_sweep(late_fees=True)
    return customer, plan


def test_debt_status_shows_overdue_days_bucket_and_fees(as_user, debtor_with_fee):
    customer, plan = debtor_with_fee
    today = business_today()

    body = as_user(customer).get(f"/api/v1/debt/{customer.user_id}/").json()

    assert body["user_id"] == customer.user_id
    assert body["user_status"] == "DEBT_USER"
    assert body["has_overdue"] is True
    assert body["overdue_amount"] == "200.00"
    assert body["fees_due"] == "20.00"
    assert body["total_debt"] == "420.00"
    rows = body["overdue_installments"]
    assert [r["plan_id"] for r in rows] == [plan.pk, plan.pk]
    first = plan.installments.get(sequence=1)
    assert rows[0]["days_overdue"] == (today - first.due_date).days
    assert rows[0]["bucket"] == ("31-60" if rows[0]["days_overdue"] > 30 else "1-30")
    assert set(rows[0]) == {"id", "plan_id", "amount_due", "amount_remaining", "due_date", "days_overdue", "bucket"}
    assert sum(Decimal(v) for v in body["overdue_by_bucket"].values()) == Decimal("200.00")


def test_debt_status_of_a_customer_without_plans(as_user, customer):
    body = as_user(customer).get(f"/api/v1/debt/{customer.user_id}/").json()
    assert body == {
        "user_id": customer.user_id,
        "user_status": "NORMAL",
        "has_overdue": False,
        "total_debt": "0.00",
        "overdue_amount": "0.00",
        "fees_due": "0.00",
        "overdue_by_bucket": {"1-30": "0.00", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"},
        "overdue_installments": [],
    }


def test_debt_status_is_scoped_like_users(as_user, debtor_with_fee, merchant, other_customer, operator):
    customer, _ = debtor_with_fee
    path = f"/api/v1/debt/{customer.user_id}/"

    assert as_user(other_customer).get(path).status_code == 404
    assert as_user(MerchantFactory()).get(path).status_code == 404
    assert as_user(merchant).get(path).status_code == 200
    assert as_user(operator).get(path).status_code == 200
    assert as_user(operator).get("/api/v1/debt/usr-nobody/").status_code == 404
    assert as_user(operator).get(f"/api/v1/debt/{merchant.user_id}/").status_code == 404


def test_operator_waives_a_fee_with_a_reason(as_user, debtor_with_fee, operator):
    customer, plan = debtor_with_fee
    fee = LateFee.objects.filter(plan__customer=customer).first()
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == Decimal("420.00")  # 400.00 and two fees of 10.00

    response = as_user(operator).post(f"/api/v1/late-fees/{fee.pk}/waive/", {"reason": "Hospital stay"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "WAIVED"
    fee.refresh_from_db()
    assert (fee.waived_by, fee.waived_reason) == (operator, "Hospital stay")
    assert (fee.status, fee.amount, fee.amount_paid) == (LateFee.Status.WAIVED, Decimal("10.00"), Decimal("0.00"))
    assert entries(JournalEntry.Kind.FEE_WAIVER, plan=plan) == [
        [(CUSTOMER_RECEIVABLE, Decimal("-10.00")), (FEE_INCOME, Decimal("10.00"))]
    ]
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == Decimal("410.00")
    assert as_user(customer).get(f"/api/v1/debt/{customer.user_id}/").json()["fees_due"] == "10.00"
    before = money_state()
    again = as_user(operator).post(f"/api/v1/late-fees/{fee.pk}/waive/", {"reason": "Again"}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "late_fee_not_waivable"
    assert money_state() == before, "a refused waiver changes nothing"
    fee.refresh_from_db()
    assert fee.waived_reason == "Hospital stay"


def test_waiver_needs_an_operator_and_a_reason(as_user, debtor_with_fee, merchant, operator):
    customer, _ = debtor_with_fee
    fee = LateFee.objects.filter(plan__customer=customer).first()
    path = f"/api/v1/late-fees/{fee.pk}/waive/"
    before = money_state()

    assert as_user(customer).post(path, {"reason": "please"}, format="json").status_code == 403
    assert as_user(merchant).post(path, {"reason": "please"}, format="json").status_code == 403
    missing = as_user(operator).post(path, {}, format="json")
    assert missing.status_code == 400
    assert "reason" in missing.json()["errors"]
    blank = as_user(operator).post(path, {"reason": "   "}, format="json")
    assert blank.status_code == 400
    fee.refresh_from_db()
    assert fee.status == LateFee.Status.DUE
    assert (fee.waived_by, fee.waived_at, fee.waived_reason) == (None, None, "")
    assert money_state() == before, "the refusals changed no amount and posted nothing"


def test_late_fees_are_listed_in_scope(as_user, debtor_with_fee, other_customer):
    customer, _ = debtor_with_fee
    assert as_user(customer).get("/api/v1/late-fees/").json()["count"] == 2
    assert as_user(other_customer).get("/api/v1/late-fees/").json()["count"] == 0


@pytest.mark.parametrize("user_id", ["usr%00001", "a%20b", "%C3%A9"])
def test_debt_status_of_an_id_no_user_can_have_is_a_404(as_user, operator, user_id):
    # A NUL would otherwise reach PostgreSQL, which refuses it in a text parameter (a 500).
    answer = as_user(operator).get(f"/api/v1/debt/{user_id}/")

    assert answer.status_code == 404
    assert answer["Content-Type"] == "application/problem+json"
