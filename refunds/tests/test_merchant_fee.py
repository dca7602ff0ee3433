"""A refund and the merchant's fee: kept by default; with BNPL_REFUND_RETURNS_FEE the refund's
proportional share goes back to the merchant in the refund's own entry (DESIGN §6)."""

from decimal import Decimal as D

import pytest

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.analytics import merchant_dashboard
from bnpl.models import Plan
from ledger.accounts import CUSTOMER_RECEIVABLE, MERCHANT_FEE_INCOME, MERCHANT_PAYABLE
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.tests.books import balance, entries
from refunds.models import Refund
from refunds.tests.factories import refund_requested

pytestmark = pytest.mark.django_db


@pytest.fixture
def plan(make_plan):
    # 100.00 at the default 4 % + 0.30: a fee of 4.30.
    merchant = MerchantFactory()
    return make_plan(customer=UserFactory(), merchant=merchant, total="100.00", count=4)


def approved(plan: Plan, amount: str, transaction_id: str) -> Refund:
    refund = refund_requested(plan, amount, transaction_id=transaction_id, status=Refund.Status.APPROVED)
    assert refund.status == Refund.Status.APPROVED
    return refund


def assert_books_clean() -> None:
    report = ledger_check(record=False)
    assert report.ok, report.breaches


def test_a_refund_keeps_the_fee_by_default(plan, settings):
    assert settings.BNPL_REFUND_RETURNS_FEE is False
    assert plan.merchant_fee == D("4.30")

    refund = approved(plan, "40.00", "rf-1")

    assert refund.merchant_fee_returned == D("0.00")
    assert entries(JournalEntry.Kind.REFUND_APPLIED, plan=plan) == [
        [(CUSTOMER_RECEIVABLE, D("-40.00")), (MERCHANT_PAYABLE, D("40.00"))]
    ]
    assert balance(MERCHANT_FEE_INCOME, plan=plan) == D("-4.30")
    # The merchant is owed the total less the fee less what was refunded.
    assert balance(MERCHANT_PAYABLE, party=plan.merchant) == -(D("100.00") - D("4.30") - D("40.00"))
    assert merchant_dashboard(plans=Plan.objects.filter(pk=plan.pk))["refunds_total"] == D("40.00")
    assert_books_clean()


def test_with_the_setting_a_refund_returns_its_share_of_the_fee_and_the_last_one_the_rest(plan, settings):
    settings.BNPL_REFUND_RETURNS_FEE = True

    first = approved(plan, "40.00", "rf-1")

    assert first.merchant_fee_returned == D("1.72")  # 4.30 * 40 / 100
    assert Refund.objects.get(pk=first.pk).merchant_fee_returned == D("1.72")
    assert entries(JournalEntry.Kind.REFUND_APPLIED, plan=plan) == [
        [
            (CUSTOMER_RECEIVABLE, D("-40.00")),
            (MERCHANT_FEE_INCOME, D("1.72")),
            (MERCHANT_PAYABLE, D("-1.72")),
            (MERCHANT_PAYABLE, D("40.00")),
        ]
    ]
    assert balance(MERCHANT_FEE_INCOME, plan=plan) == D("-2.58")
    assert_books_clean()

    second = approved(plan, "33.33", "rf-2")
    assert second.merchant_fee_returned == D("1.43")  # 1.433190 rounds to 1.43
    third = approved(plan, "26.67", "rf-3")
    # 1.14681 would round to 1.15: the plan is refunded whole, so the rest of the fee, 1.15, goes back.
    assert third.merchant_fee_returned == D("4.30") - D("1.72") - D("1.43")

    assert balance(MERCHANT_FEE_INCOME, plan=plan) == D("0.00")
    assert balance(MERCHANT_PAYABLE, party=plan.merchant) == D("0.00")
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == D("0.00")
    # What the merchant refunded is the refunds' amounts, not less the fee given back.
    assert merchant_dashboard(plans=Plan.objects.filter(pk=plan.pk))["refunds_total"] == D("100.00")
    assert_books_clean()


# A stand-in for a plan made before fees were: its row says no fee while its books hold the
# fee posted when it was made today, which invariant 7 rightly reports.
@pytest.mark.breaks_ledger
def test_with_the_setting_a_plan_charged_no_fee_returns_none(make_plan, settings):
    settings.BNPL_REFUND_RETURNS_FEE = True
    plan = make_plan(customer=UserFactory(), merchant=MerchantFactory(), total="100.00", count=4)
    # A plan made before fees were: no fee stored, none posted.
    Plan.objects.filter(pk=plan.pk).update(merchant_fee=None)
    free = make_plan(
        customer=UserFactory(), merchant=MerchantFactory(fee_percent=D("0"), fee_fixed=D("0")), total="50.00", count=2
    )
    assert free.merchant_fee == D("0.00")

    for refunded, transaction_id in ((plan, "rf-old"), (free, "rf-free")):
        refund = approved(refunded, "10.00", transaction_id)
        assert refund.merchant_fee_returned == D("0.00")
        assert [code for code, _ in entries(JournalEntry.Kind.REFUND_APPLIED, plan=refunded)[0]] == [
            CUSTOMER_RECEIVABLE,
            MERCHANT_PAYABLE,
        ]
