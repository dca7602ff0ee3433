"""A late fee waived while the overdue sweep charges fees on the same plans, on PostgreSQL
with real threads: asserts the fees' amounts and states, the journal entries, the plans'
receivable, and that nothing reached the gateway."""

from datetime import date
from decimal import Decimal

import pytest

from accounts.tests.factories import UserFactory
from bnpl.models import LateFee
from bnpl.services.installments import late_fee_waive
from bnpl.services.sweep import overdue_sweep
from bnpl.tests.factories import late_fee_charged
from bnpl.tests.test_concurrency import run_at_once, sweep_held_open
from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.tests.books import balance, entries
from payments.tests.gateways import RecordingGateway

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PURCHASE = date(2026, 1, 10)  # monthly: the first installment is due 2/10
SECOND_FEE_DAY = date(2026, 2, 19)  # overdue since 2/11: the second fee is due from 2/18 on
TEN, SEVEN = Decimal("10.00"), Decimal("7.00")


@pytest.mark.parametrize("order", ["at once", "sweep first"])
def test_a_fee_waived_while_the_sweep_charges_the_second_fee_is_waived_once_and_the_second_owed_once(
    make_plan, operator, settings, order
):
    """Plans of 100.00 (fee cap 25.00: both fees fit whatever the sweep reads) and of 40.00
    (cap 10.00: the first fee fills it; a second is charged only if the sweep saw the first
    one waived, since waived fees do not count toward the cap)."""
    settings.BNPL_GRACE_DAYS = 0
    settings.BNPL_LATE_FEES_ENABLED = True
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.clear()
    totals = ["100.00", "40.00", "100.00", "40.00"]
    plans = [make_plan(customer=UserFactory(), total=t, purchase_date=PURCHASE) for t in totals]
    firsts = [late_fee_charged(plan) for plan in plans]  # one sweep on 2/11 charges them all
    assert {(f.amount, f.status) for f in firsts} == {(TEN, LateFee.Status.DUE)}

    def waive(index):
        return late_fee_waive(fee_id=firsts[index].pk, operator=operator, reason="Hospital stay")

    if order == "at once":
        results = run_at_once(
            len(plans) + 1,
            lambda i: overdue_sweep(today=SECOND_FEE_DAY, late_fees=True, chunk_plans=1) if i == 0 else waive(i - 1),
        )
        assert [r for r in results if isinstance(r, Exception)] == []
    else:  # the sweep has priced the fees (the first ones still DUE to it), not yet committed
        sweep = sweep_held_open(today=SECOND_FEE_DAY, timeout=2)
        for index in range(len(plans)):
            waive(index)
        sweep.join()

    second_fees = Decimal("0.00")
    for plan, first in zip(plans, firsts, strict=True):
        first.refresh_from_db()
        assert (first.status, first.amount, first.amount_paid, first.waived_by) == (
            LateFee.Status.WAIVED,
            TEN,
            Decimal("0.00"),
            operator,
        )
        assert entries(JournalEntry.Kind.FEE_WAIVER, plan=plan) == [[(CUSTOMER_RECEIVABLE, -TEN), (FEE_INCOME, TEN)]]
        second = list(plan.late_fees.filter(kind=LateFee.Kind.SECOND).values_list("status", "amount", "amount_paid"))
        if plan.total_amount == Decimal("100.00"):
            assert second == [(LateFee.Status.DUE, SEVEN, Decimal("0.00"))]
        else:
            assert second in ([], [(LateFee.Status.DUE, SEVEN, Decimal("0.00"))]), second
        owed = sum((amount for _, amount, _ in second), Decimal("0.00"))
        second_fees += owed
        assert balance(CUSTOMER_RECEIVABLE, plan=plan) == plan.total_amount + owed
    # Late-fee income: the first fees and the second fees, each charged once.
    charged = [amount for entry in entries(JournalEntry.Kind.LATE_FEE) for code, amount in entry if code == FEE_INCOME]
    assert -sum(charged, Decimal("0.00")) == TEN * len(plans) + second_fees
    assert len(entries(JournalEntry.Kind.FEE_WAIVER)) == len(plans)
    assert RecordingGateway.charges == RecordingGateway.refunds == []
    assert ledger_check(record=False).ok
