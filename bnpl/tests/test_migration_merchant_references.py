"""bnpl migration 0013 makes each merchant's references unique on a database with data: where
a merchant used one reference on several plans, the first keeps it and each later one gets
``#<its id>`` appended; the plans made before consent stay ACTIVE and reserve nothing."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django_celery_beat.models import PeriodicTask

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Plan
from bnpl.selectors import credit_position

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BEFORE = ("bnpl", "0012_late_fee_paid_or_waived")
LONG = "x" * 128  # the column's full width: the suffix must replace its end, not overflow it


def test_repeated_references_are_made_unique_and_plans_stay_active(make_plan):
    customer = UserFactory(credit_limit=Decimal("5000.00"))
    # Merchants charged no fee: going back before bnpl 0015 drops the plans' fee column, and a
    # fee posted but no longer on its plan would break invariant 7 after the way back.
    shop, other_shop = (MerchantFactory(fee_percent=Decimal("0"), fee_fixed=Decimal("0")) for _ in range(2))
    plans = [make_plan(customer=customer, merchant=shop, total="100.00") for _ in range(7)]
    elsewhere = make_plan(customer=customer, merchant=other_shop, total="100.00")
    call_command("migrate", *BEFORE, verbosity=0)
    try:
        references = {
            plans[0]: "order-1",
            plans[1]: "order-1",
            plans[2]: "order-2",
            plans[3]: "order-1",
            plans[4]: LONG,
            plans[5]: LONG,
            plans[6]: "",
            elsewhere: "order-1",
        }
        _references_written_before(references)
    finally:
        call_command("migrate", verbosity=0)

    after = dict(Plan.objects.values_list("pk", "merchant_reference"))
    assert after == {
        plans[0].pk: "order-1",
        plans[1].pk: f"order-1#{plans[1].pk}",
        plans[2].pk: "order-2",
        plans[3].pk: f"order-1#{plans[3].pk}",
        plans[4].pk: LONG,
        plans[5].pk: LONG[: 128 - len(f"#{plans[5].pk}")] + f"#{plans[5].pk}",
        plans[6].pk: "",
        elsewhere.pk: "order-1",  # another merchant's reference is its own
    }
    assert max(len(reference) for reference in after.values()) == 128
    rows = Plan.objects.values_list("status", "capture_mode", "authorized_amount", "checkout_token", "expires_at")
    assert set(rows) == {(Plan.Status.ACTIVE, Plan.CaptureMode.AUTOMATIC, None, None, None)}
    assert {plan.amount_authorized for plan in Plan.objects.all()} == {Decimal("100.00")}  # their total
    position = credit_position(customer=customer, currency="USD")
    assert (position.outstanding, position.reserved) == (Decimal("800.00"), Decimal("0.00"))
    # The constraint holds from now on, and the expiry job is back in the schedule.
    with pytest.raises(IntegrityError), transaction.atomic():
        Plan.objects.filter(pk=plans[1].pk).update(merchant_reference="order-1")
    assert PeriodicTask.objects.get(name="plans-expire").task == "bnpl.tasks.plans_expire_task"


def _references_written_before(references: dict) -> None:
    """Give the plans their references through the model of bnpl 0012 (no constraint yet)."""
    OldPlan = MigrationExecutor(connection).loader.project_state([BEFORE]).apps.get_model("bnpl", "Plan")
    for plan, reference in references.items():
        OldPlan.objects.filter(pk=plan.pk).update(merchant_reference=reference)
