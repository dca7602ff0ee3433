"""A settlement chunk is set-based: the same number of queries whatever its merchants,
plans, refunds, remainders of earlier settlements and payouts (what bench/settle.py relies
on to settle 100,000 plans in a few statements a chunk)."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import merchant_payout_account_set
from accounts.tests.factories import MerchantFactory
from bnpl.models import Plan
from bnpl.schedule import business_today
from bnpl.tests.factories import plan_originated
from refunds.models import Refund
from refunds.tests.factories import refund_requested
from settlements.models import Payout, SettlementChunk, SettlementLine, SettlementRun
from settlements.services.settle import settlement_chunk
from settlements.tests.factories import settled

# The chunk locked, its merchants locked; the settlements (INSERT … RETURNING), their
# capture, refund, fee and carried/adjustment lines, their totals, empty ones dropped, read
# back; the payable, the payouts on their way, the payouts, the events; the chunk saved,
# the run locked and saved. On PostgreSQL the settlements and their capture lines are one
# statement, and the foreign keys are checked as each statement writes (SET CONSTRAINTS).
QUERIES_PER_CHUNK = 17


def _merchants_with_a_day_to_settle(size: int) -> SettlementChunk:
    """``size`` merchants with ``size`` plans each captured yesterday and settled then (half
    of them paid out, below the day's net: a refund since; half refused by the bank), and
    today ``size`` plans each and an approved refund giving back its fee: today's chunk has
    capture, refund, fee, carried and adjustment lines and a payout per merchant."""
    merchants = []
    for number in range(size):
        merchant = MerchantFactory(payout=True)
        plans = [plan_originated(total="100.00", merchant=merchant) for _ in range(size)]
        Plan.objects.filter(pk__in=[plan.pk for plan in plans]).update(activated_at=timezone.now() - timedelta(days=1))
        if number % 2:
            with transaction.atomic():
                merchant_payout_account_set(merchant=merchant, account="123450002", name="Shop", changed_by=merchant)
        else:  # approved after yesterday's end, before its settlement: that payout is capped
            refund_requested(plans[0], "60.00", transaction_id=f"rf-{merchant.pk}", status=Refund.Status.APPROVED)
        merchants.append(merchant)
    settled(day=business_today() - timedelta(days=1))
    for merchant in merchants:
        for _ in range(size):
            plan = plan_originated(total="100.00", merchant=merchant)
        refund_requested(plan, "50.00", transaction_id=f"rf-today-{merchant.pk}", status=Refund.Status.APPROVED)
    run = SettlementRun.objects.create(business_date=business_today(), started_at=timezone.now(), chunks_total=1)
    return SettlementChunk.objects.create(run=run, first_merchant_id=merchants[0].pk, last_merchant_id=merchants[-1].pk)


@pytest.mark.django_db
@pytest.mark.usefixtures("eager_tasks")
@pytest.mark.parametrize("size", [2, 6])
def test_a_chunk_takes_the_same_queries_whatever_it_settles(size, settings, django_capture_on_commit_callbacks):
    settings.BNPL_REFUND_RETURNS_FEE = True
    with django_capture_on_commit_callbacks(execute=True):  # yesterday's payouts are sent
        chunk = _merchants_with_a_day_to_settle(size)
    assert Payout.objects.filter(status=Payout.Status.FAILED).count() == size // 2

    # The test's transaction never commits: the payouts' sending after the chunk is not counted.
    with CaptureQueriesContext(connection) as queries:
        assert settlement_chunk(chunk_id=chunk.pk)

    lines = SettlementLine.objects.filter(settlement__business_date=business_today())
    assert sorted(set(lines.values_list("type", flat=True))) == ["adjustment", "capture", "carried", "fee", "refund"]
    assert lines.filter(type="capture").count() == size * size
    assert Payout.objects.filter(settlement__business_date=business_today()).count() == size
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) == QUERIES_PER_CHUNK, "\n".join(statements)
