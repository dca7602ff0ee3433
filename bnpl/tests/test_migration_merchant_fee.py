"""The merchant fee's migrations (accounts 0008, bnpl 0015, refunds 0003) on a database with
data: plans originated before them keep an empty fee (none was charged), their refunds have
returned none, merchants have no price of their own (the defaults); the books stay clean, and
a plan activated afterwards is charged the fee."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Plan
from bnpl.services.origination import plan_create
from ledger.checks import ledger_check
from refunds.models import Refund
from refunds.tests.factories import refund_requested

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BEFORE = [
    ("bnpl", "0014_plan_expiry_job"),
    ("refunds", "0002_refund_payout_method"),
    ("accounts", "0007_outstanding_tokens_prune_job"),
]


def test_rows_made_before_the_fee_keep_no_fee_and_new_plans_are_charged(make_plan):
    customer = UserFactory(credit_limit=Decimal("5000.00"))
    # Priced at nothing, so the plan's books are those of a plan made before fees were.
    merchant = MerchantFactory(fee_percent=Decimal("0"), fee_fixed=Decimal("0"))
    old = make_plan(customer=customer, merchant=merchant, total="100.00")
    refund = refund_requested(old, "10.00", status=Refund.Status.APPROVED)
    for app, name in BEFORE:
        call_command("migrate", app, name, verbosity=0)
    call_command("migrate", verbosity=0)

    old.refresh_from_db()
    refund.refresh_from_db()
    merchant.refresh_from_db()
    assert old.merchant_fee is None
    assert refund.merchant_fee_returned == Decimal("0.00")
    assert (merchant.fee_percent, merchant.fee_fixed) == (None, None)
    assert ledger_check(record=False).ok
    new = plan_create(customer=customer, merchant=merchant, total_amount=Decimal("100.00"))
    assert Plan.objects.get(pk=new.pk).merchant_fee == Decimal("4.30")
