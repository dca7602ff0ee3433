"""Analytics against a fixture whose figures were worked out by hand (see the comments)."""

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Plan
from bnpl.schedule import business_today
from bnpl.services.checkout import Offer, plan_decline, plan_offer
from bnpl.services.sweep import overdue_sweep
from payments.services import payment_collect
from refunds.services import refund_request, refund_status_apply

pytestmark = pytest.mark.django_db

DASHBOARD = "/api/v1/analytics/dashboard/"
MONEY = (
    "total_revenue",
    "outstanding",
    "overdue_amount",
    "refunds_total",
    "processed_total",
    "merchant_fees_total",
    "late_fees_total",
    "payouts_total",
)
TOTALS = (
    "total_revenue",
    "processed_total",
    "refunds_total",
    "merchant_fees_total",
    "late_fees_total",
    "payouts_total",
)


@pytest.fixture
def books(make_plan, operator):
    today = business_today()
    merchant = MerchantFactory()
    # Plan A, 400.00 in 4: installment 1 paid the day before it was due (on time).
    plan_a = make_plan(merchant=merchant, total="400.00", purchase_date=today - timedelta(days=40))
    first_a = plan_a.installments.get(sequence=1)
    with time_machine.travel(datetime.combine(first_a.due_date - timedelta(days=1), time(12)), tick=False):
        payment_collect(plan_id=plan_a.pk, installment_id=first_a.pk, payer=plan_a.customer)
    # Plan B, 100.00 in 4: installments 1 and 2 past due; 1 paid late, 2 still overdue.
    plan_b = make_plan(merchant=merchant, total="100.00", purchase_date=today - timedelta(days=75))
    overdue_sweep()
    payment_collect(plan_id=plan_b.pk, installment_id=plan_b.installments.get(sequence=1).pk, payer=plan_b.customer)
    # 50.00 refunded on A: taken off its last installment.
    refund, _ = refund_request(
        plan_id=plan_a.pk, transaction_id="a-1", amount=Decimal("50.00"), reason="", requester=merchant
    )
    refund_status_apply(refund_id=refund.pk, status="APPROVED", source="operator", actor=operator)
    # Another merchant's plan, which must not count.
    make_plan(total="999.00", purchase_date=today - timedelta(days=75))
    overdue_sweep()
    return merchant


def test_merchant_dashboard_matches_the_hand_computed_figures(as_user, books):
    body = as_user(books).get(DASHBOARD).json()

    usd = {
        "currency": "USD",
        "total_revenue": "125.00",  # 100.00 (A #1) + 25.00 (B #1)
        "outstanding": "325.00",  # A: 300.00 - 50.00 refunded; B: 75.00
        "overdue_installments": 1,  # B #2
        "overdue_amount": "25.00",
        "refunds_total": "50.00",
        "processed_total": "500.00",  # A and B
        "merchant_fees_total": "20.60",  # 16.30 + 4.30: the refund gave none back (BNPL_REFUND_RETURNS_FEE off)
        "late_fees_total": "0.00",
        "payouts_total": "0.00",  # nothing settled
    }
    assert body == {
        **usd,  # one currency: the top-level amounts are its own
        "overdue_by_bucket": {"1-30": 1, "31-60": 0, "61-90": 0, "90+": 0},
        "success_rate": 0.3333,  # due: A #1 (on time), B #1 (late), B #2 (unpaid)
        "plans_by_status": dict.fromkeys(Plan.Status.values, 0) | {"ACTIVE": 2},
        "by_currency": [usd],
    }


def test_amounts_in_two_currencies_are_never_added_together(as_user, books, make_plan):
    today = business_today()
    # A euro plan of the same merchant, 800.00 in 4 bought 40 days ago: #1 (due ten days ago) paid late.
    euros = make_plan(merchant=books, total="800.00", currency="EUR", purchase_date=today - timedelta(days=40))
    payment_collect(plan_id=euros.pk, installment_id=euros.installments.get(sequence=1).pk, payer=euros.customer)
    overdue_sweep()

    body = as_user(books).get(DASHBOARD).json()

    # No figure adds dollars to euros: the top-level amounts exist for one currency only.
    assert {name: body[name] for name in ("currency", *MONEY)} == dict.fromkeys(("currency", *MONEY))
    assert body["by_currency"] == [
        {
            "currency": "EUR",
            "total_revenue": "200.00",
            "outstanding": "600.00",
            "overdue_installments": 0,  # #2 falls due in about twenty days
            "overdue_amount": "0.00",
            "refunds_total": "0.00",
            "processed_total": "800.00",
            "merchant_fees_total": "32.30",
            "late_fees_total": "0.00",
            "payouts_total": "0.00",
        },
        {
            "currency": "USD",
            "total_revenue": "125.00",
            "outstanding": "325.00",
            "overdue_installments": 1,
            "overdue_amount": "25.00",
            "refunds_total": "50.00",
            "processed_total": "500.00",
            "merchant_fees_total": "20.60",
            "late_fees_total": "0.00",
            "payouts_total": "0.00",
        },
    ]
    # Counts are not money: they cover both currencies.
    assert body["plans_by_status"]["ACTIVE"] == 3
    assert body["overdue_installments"] == sum(row["overdue_installments"] for row in body["by_currency"])
    assert body["success_rate"] == 0.25  # due: A #1 (on time), B #1 (late), B #2 (unpaid), the euro #1 (late)


def test_offers_never_taken_count_by_status_but_bring_no_currency(as_user, books, operator):
    customer = UserFactory()
    offered, _ = plan_offer(
        customer=customer, merchant=books, offer=Offer(total_amount=Decimal("90.00"), currency="EUR")
    )
    declined, _ = plan_offer(
        customer=customer,
        merchant=books,
        offer=Offer(total_amount=Decimal("60.00"), currency="UZS", merchant_reference="declined"),
    )
    plan_decline(plan_id=declined.pk)

    body = as_user(books).get(DASHBOARD).json()

    assert body["plans_by_status"] == dict.fromkeys(Plan.Status.values, 0) | {"ACTIVE": 2, "PENDING": 1, "DECLINED": 1}
    assert body["currency"] == "USD"  # the EUR and UZS plans, only offered, hold no money
    assert [row["currency"] for row in body["by_currency"]] == ["USD"]
    assert offered.status == Plan.Status.PENDING


def test_a_merchant_without_plans_sees_the_default_currency_at_zero(as_user, settings):
    settings.BNPL_DEFAULT_CURRENCY = "EUR"

    body = as_user(MerchantFactory()).get(DASHBOARD).json()

    zero = {"currency": "EUR", **dict.fromkeys(MONEY, "0.00"), "overdue_installments": 0}
    assert {name: body[name] for name in ("currency", *MONEY)} == {"currency": "EUR", **dict.fromkeys(MONEY, "0.00")}
    assert body["by_currency"] == [zero]
    assert body["plans_by_status"] == dict.fromkeys(Plan.Status.values, 0)


def test_operator_sees_all_or_one_merchant(as_user, books, operator):
    everyone = as_user(operator).get(DASHBOARD).json()
    one = as_user(operator).get(DASHBOARD, {"merchant_id": books.user_id}).json()

    assert everyone["plans_by_status"]["ACTIVE"] == 3
    assert everyone["overdue_installments"] == 3  # the other merchant's plan adds two
    assert one["total_revenue"] == "125.00"
    assert as_user(operator).get(DASHBOARD, {"merchant_id": "nobody"}).status_code == 404


def test_customers_may_not_see_analytics(as_user):
    assert as_user(UserFactory()).get(DASHBOARD).status_code == 403


def test_dashboard_takes_a_fixed_number_of_queries(as_user, books, make_plan, django_assert_max_num_queries):
    with django_assert_max_num_queries(9):
        as_user(books).get(DASHBOARD)
    for currency in ("EUR", "UZS"):
        make_plan(merchant=books, total="100.00", currency=currency)

    with django_assert_max_num_queries(9):
        body = as_user(books).get(DASHBOARD).json()

    assert [row["currency"] for row in body["by_currency"]] == ["EUR", "USD", "UZS"]


def test_a_merchant_id_with_a_nul_is_a_400_naming_it(as_user, operator):
    answer = as_user(operator).get(DASHBOARD, {"merchant_id": "merchant\x00-001"})

    assert answer.status_code == 400
    assert answer["Content-Type"] == "application/problem+json"
    assert list(answer.json()["errors"]) == ["merchant_id"]


def test_a_blank_merchant_id_still_means_every_merchant(as_user, operator):
    assert as_user(operator).get(DASHBOARD, {"merchant_id": ""}).status_code == 200


@pytest.fixture
def money_moved(make_plan, operator, settings, eager_tasks, django_capture_on_commit_callbacks):
    """A merchant's plans through capture, payment, a credited refund giving its fee share back,
    late fees (one waived) and a settlement paid out; another merchant's settled plan beside."""
    from bnpl.models import LateFee
    from bnpl.services.installments import late_fee_waive
    from settlements.tests.factories import settled

    settings.BNPL_REFUND_RETURNS_FEE = True
    today = business_today()
    merchant, other = MerchantFactory(payout=True), MerchantFactory(payout=True)
    first = make_plan(merchant=merchant, total="400.00")  # fee 16.30
    make_plan(merchant=other, total="200.00")  # fee 8.30
    with django_capture_on_commit_callbacks(execute=True):  # the payouts go once the settlement commits
        settled()  # paid out: 400.00 - 16.30 = 383.70, and 200.00 - 8.30 = 191.70
    # Settled before these: two plans bought 45 days ago, each overdue with late fees.
    late = [make_plan(merchant=merchant, total="100.00", purchase_date=today - timedelta(days=45)) for _ in range(2)]
    overdue_sweep(late_fees=True)
    waived = LateFee.objects.filter(plan=late[1]).first()
    late_fee_waive(fee_id=waived.pk, operator=operator, reason="Goodwill")
    payment_collect(plan_id=first.pk, installment_id=first.installments.get(sequence=1).pk, payer=first.customer)
    # 350.00 refunded on the 400.00 plan, 100.00 paid: 300.00 off the unpaid, 50.00 credited.
    refund, _ = refund_request(
        plan_id=first.pk,
        transaction_id="credit-1",
        amount=Decimal("350.00"),
        reason="",
        requester=merchant,
        payout_method="credit",
    )
    refund_status_apply(refund_id=refund.pk, status="APPROVED", source="operator", actor=operator)
    return merchant


def test_money_totals_are_the_books_per_merchant_and_for_the_platform(as_user, money_moved, operator):
    from bnpl.models import LateFee

    merchant = money_moved
    assert sorted(LateFee.objects.filter(plan__merchant=merchant).values_list("amount", "status")) == [
        (Decimal("10.00"), "DUE"),
        (Decimal("10.00"), "WAIVED"),
    ]

    mine = as_user(merchant).get(DASHBOARD).json()
    everyone = as_user(operator).get(DASHBOARD).json()

    assert {name: mine["by_currency"][0][name] for name in TOTALS} == {
        "total_revenue": "100.00",  # the first plan's first installment
        "processed_total": "600.00",  # 400.00 + 100.00 + 100.00
        "refunds_total": "350.00",  # 300.00 applied + 50.00 credited
        # 16.30 + 4.30 + 4.30 less the refund's share of 16.30: 16.30 * 350 / 400 = 14.26
        "merchant_fees_total": "10.64",
        # A first fee of 10.00 on each late plan, less the one waived; never among the merchant fees.
        "late_fees_total": "10.00",
        "payouts_total": "383.70",  # the first plan, settled and paid; the other merchant's is not here
    }
    assert {name: mine[name] for name in TOTALS} == {name: mine["by_currency"][0][name] for name in TOTALS}
    assert everyone["processed_total"] == "800.00"
    assert everyone["merchant_fees_total"] == "18.94"  # 10.64 + 8.30
    assert everyone["payouts_total"] == "575.40"  # 383.70 + 191.70
    one = as_user(operator).get(DASHBOARD, {"merchant_id": merchant.user_id}).json()
    assert {name: one[name] for name in TOTALS} == {name: mine[name] for name in TOTALS}
