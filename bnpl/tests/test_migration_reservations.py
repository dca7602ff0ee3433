"""bnpl migration 0011 fills ``amount_reserved`` from the allocations of PENDING payments."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.tests.factories import MerchantFactory
from bnpl.models import Installment, LateFee
from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME, GATEWAY_CLEARING
from ledger.models import JournalEntry
from ledger.services import Leg, ledger_post

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BEFORE = ("bnpl", "0010_installment_sweep_index_with_plan")
PAYMENTS = ("payments", "0012_idempotency_key_moves_to_core")  # not taken back: it does not depend on bnpl 0011


def test_pending_allocations_become_reservations(make_plan, customer):
    # A merchant charged no fee: going back before bnpl 0015 drops the plans' fee column, and a
    # fee posted but no longer on its plan would break invariant 7 after the way back.
    free = MerchantFactory(fee_percent=Decimal("0"), fee_fixed=Decimal("0"))
    # Through today's services, books and all.
    plan = make_plan(customer=customer, merchant=free, total="90.00", count=3)
    call_command("migrate", *BEFORE, verbosity=0)
    try:
        _pending_payments_written_before(plan, customer)
    finally:
        call_command("migrate", verbosity=0)

    reserved = dict(Installment.objects.filter(plan_id=plan.pk).values_list("sequence", "amount_reserved"))
    assert reserved == {1: Decimal("15.00"), 2: Decimal("30.00"), 3: Decimal("0.00")}
    assert LateFee.objects.get(plan_id=plan.pk).amount_reserved == Decimal("10.00")


def _pending_payments_written_before(plan, customer) -> None:
    """A late fee and four payments on ``plan``, written through the models of bnpl 0010."""
    old = MigrationExecutor(connection).loader.project_state([BEFORE, PAYMENTS]).apps
    OldInstallment, OldFee = old.get_model("bnpl", "Installment"), old.get_model("bnpl", "LateFee")
    first, second, third = OldInstallment.objects.filter(plan_id=plan.pk).order_by("sequence")
    fee = OldFee.objects.create(installment=first, plan_id=plan.pk, kind="FIRST", amount=Decimal("10.00"))
    ledger_post(
        kind=JournalEntry.Kind.LATE_FEE,
        plan_id=plan.pk,
        legs=[
            Leg(CUSTOMER_RECEIVABLE, Decimal("10.00"), "USD", plan.pk, customer.pk),
            Leg(FEE_INCOME, Decimal("-10.00"), "USD"),
        ],
    )
    OldPayment, OldAllocation = old.get_model("payments", "Payment"), old.get_model("payments", "PaymentAllocation")

    def payment(status: str, key: str, *allocations):
        made = OldPayment.objects.create(
            plan_id=plan.pk,
            customer_id=customer.pk,
            created_by_id=customer.pk,
            amount=sum(amount for _, _, amount in allocations),
            currency="USD",
            status=status,
            gateway_key=key,
        )
        for installment, late_fee, amount in allocations:
            OldAllocation.objects.create(payment=made, installment=installment, late_fee=late_fee, amount=amount)

    payment("PENDING", "k1", (first, None, Decimal("12.00")), (None, fee, Decimal("10.00")))
    payment("PENDING", "k2", (first, None, Decimal("3.00")), (second, None, Decimal("30.00")))
    payment("FAILED", "k3", (third, None, Decimal("30.00")))  # released: reserves nothing
    payment("SUCCEEDED", "k4", (third, None, Decimal("5.00")))  # settled: reserves nothing, paid 5.00
    OldInstallment.objects.filter(pk=third.pk).update(amount_paid=Decimal("5.00"))
    ledger_post(
        kind=JournalEntry.Kind.PAYMENT,
        plan_id=plan.pk,
        legs=[
            Leg(GATEWAY_CLEARING, Decimal("5.00"), "USD", plan.pk, customer.pk),
            Leg(CUSTOMER_RECEIVABLE, Decimal("-5.00"), "USD", plan.pk, customer.pk),
        ],
    )
