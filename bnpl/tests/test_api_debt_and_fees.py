from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.api.serializers import DebtStatusOut, debt_status_out
from bnpl.models import LateFee
from bnpl.schedule import business_today
from bnpl.selectors import debt_status_for
from bnpl.services.sweep import overdue_sweep
from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME
from ledger.models import JournalEntry
from ledger.tests.books import balance, entries, money_state

pytestmark = pytest.mark.django_db

NO_BUCKETS = {"1-30": "0.00", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"}
# The figures of one currency: at the top level only when the customer owes in one currency.
TOP_LEVEL = ("currency", "total_debt", "overdue_amount", "fees_due", "overdue_by_bucket")
NULL_BUCKETS = dict.fromkeys(("1-30", "31-60", "61-90", "90+"))  # no sum across currencies, bucket by bucket


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
    assert set(rows[0]) == {
        "id",
        "plan_id",
        "currency",
        "amount_due",
        "amount_remaining",
        "due_date",
        "days_overdue",
        "bucket",
    }
    assert {r["currency"] for r in rows} == {"USD"}
    assert sum(Decimal(v) for v in body["overdue_by_bucket"].values()) == Decimal("200.00")
    # One currency: the top-level figures are its figures, the same as its by_currency entry.
    assert body["currency"] == "USD"
    assert body["by_currency"] == [{key: body[key] for key in TOP_LEVEL}]


def test_debt_status_of_a_customer_without_plans(as_user, customer):
    body = as_user(customer).get(f"/api/v1/debt/{customer.user_id}/").json()
    assert body == {
        "user_id": customer.user_id,
        "user_status": "NORMAL",
        "has_overdue": False,
        "currency": "USD",  # the default currency, nothing owed in it
        "total_debt": "0.00",
        "overdue_amount": "0.00",
        "fees_due": "0.00",
        "overdue_by_bucket": NO_BUCKETS,
        "by_currency": [
            {
                "currency": "USD",
                "total_debt": "0.00",
                "overdue_amount": "0.00",
                "fees_due": "0.00",
                "overdue_by_bucket": NO_BUCKETS,
            }
        ],
        "overdue_installments": [],
    }


def test_debt_in_two_currencies_is_never_added_together(as_user, make_plan, merchant):
    customer = UserFactory()
    long_ago = business_today() - timedelta(days=75)
    usd_plan = make_plan(customer=customer, merchant=merchant, total="400.00", purchase_date=long_ago)
    eur_plan = make_plan(customer=customer, merchant=merchant, total="300.00", count=3, currency="EUR")
    overdue_sweep(late_fees=True)  # USD: 400.00, 200.00 of it overdue, two fees of 10.00

    body = as_user(customer).get(f"/api/v1/debt/{customer.user_id}/").json()

    # No top-level sum exists: 400.00 + 20.00 + 300.00 would add dollars to euros.
    assert {key: body[key] for key in TOP_LEVEL} == dict.fromkeys(TOP_LEVEL) | {"overdue_by_bucket": NULL_BUCKETS}
    assert body["has_overdue"] is True
    eur, usd = body["by_currency"]
    assert eur == {
        "currency": "EUR",
        "total_debt": "300.00",
        "overdue_amount": "0.00",
        "fees_due": "0.00",
        "overdue_by_bucket": NO_BUCKETS,
    }
    assert (usd["currency"], usd["total_debt"], usd["overdue_amount"], usd["fees_due"]) == (
        "USD",
        "420.00",
        "200.00",
        "20.00",
    )
    assert sum(Decimal(v) for v in usd["overdue_by_bucket"].values()) == Decimal("200.00")
    assert {(r["plan_id"], r["currency"]) for r in body["overdue_installments"]} == {(usd_plan.pk, "USD")}
    assert not eur_plan.installments.filter(status="OVERDUE").exists()


def test_overdue_in_two_currencies_stays_in_each(as_user, make_plan, merchant):
    customer = UserFactory(credit_limit=Decimal("5000.00"))
    long_ago = business_today() - timedelta(days=75)
    make_plan(customer=customer, merchant=merchant, total="400.00", purchase_date=long_ago, currency="USD")
    make_plan(customer=customer, merchant=merchant, total="800.00", purchase_date=long_ago, currency="EUR")
    overdue_sweep()

    body = as_user(customer).get(f"/api/v1/debt/{customer.user_id}/").json()

    assert {key: body[key] for key in TOP_LEVEL} == dict.fromkeys(TOP_LEVEL) | {"overdue_by_bucket": NULL_BUCKETS}
    by = {row["currency"]: row for row in body["by_currency"]}
    assert (by["USD"]["total_debt"], by["USD"]["overdue_amount"]) == ("400.00", "200.00")
    assert (by["EUR"]["total_debt"], by["EUR"]["overdue_amount"]) == ("800.00", "400.00")
    for currency, row in by.items():
        listed = [r for r in body["overdue_installments"] if r["currency"] == currency]
        assert sum(Decimal(r["amount_remaining"]) for r in listed) == Decimal(row["overdue_amount"])
        assert sum(Decimal(v) for v in row["overdue_by_bucket"].values()) == Decimal(row["overdue_amount"])


def test_debt_status_takes_a_fixed_number_of_queries(as_user, make_plan, merchant, operator):
    long_ago = business_today() - timedelta(days=75)
    light, heavy = UserFactory(), UserFactory(credit_limit=Decimal("50000.00"))
    make_plan(customer=light, merchant=merchant, total="400.00", purchase_date=long_ago)
    for currency in ("USD", "EUR", "UZS", "EUR", "USD"):
        make_plan(customer=heavy, merchant=merchant, total="400.00", purchase_date=long_ago, currency=currency)
    overdue_sweep(late_fees=True)
    client = as_user(operator)
    client.get(f"/api/v1/debt/{light.user_id}/")  # the token's user read once (then kept a while)

    with CaptureQueriesContext(connection) as one_plan:
        client.get(f"/api/v1/debt/{light.user_id}/")
    with CaptureQueriesContext(connection) as five_plans:
        body = client.get(f"/api/v1/debt/{heavy.user_id}/").json()

    assert len(body["by_currency"]) == 3
    assert len(body["overdue_installments"]) == 10
    # The customer, the sums per currency, the overdue installments: whatever the plans and
    # currencies (on PostgreSQL the customer and its sums are read in one statement).
    assert len(five_plans) == len(one_plan) == (2 if connection.vendor == "postgresql" else 3)


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


def test_the_debt_status_is_written_out_as_its_serializer_writes_it(make_plan, merchant):
    long_ago = business_today() - timedelta(days=75)
    nothing, one, two = UserFactory(), UserFactory(), UserFactory(credit_limit=Decimal("5000.00"))
    make_plan(customer=one, merchant=merchant, total="400.00", purchase_date=long_ago)
    make_plan(customer=two, merchant=merchant, total="400.00", purchase_date=long_ago)
    make_plan(customer=two, merchant=merchant, total="300.00", purchase_date=long_ago, currency="EUR")
    overdue_sweep(late_fees=True)

    for customer in (nothing, one, two):
        customer.refresh_from_db()
        status = debt_status_for(customer=customer)
        assert debt_status_out(status) == DebtStatusOut(status).data
    assert debt_status_out(status)["overdue_installments"]
    assert debt_status_out(status)["currency"] is None
