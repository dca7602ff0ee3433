"""What a refund request reads of the refunds already made, written out on PostgreSQL."""

from decimal import Decimal

from django.db import connection
from django.db.models import Sum

from core.db import postgresql
from core.money import ZERO
from refunds.models import Refund

COUNTED = (Refund.Status.PENDING, Refund.Status.PROCESSING, Refund.Status.APPROVED)

# Read on every refund request, after the plan's lock (so a refund committed by the lock's
# previous holder is counted): whether the merchant's transaction id names a refund already,
# and what the plan's refunds in COUNTED states add up to. One statement on PostgreSQL, where
# the ORM took longer composing its two than the database took to run them
# (refunds/tests/test_hand_written_sql.py holds the two paths equal).
_STANDING_SQL = (
    f"SELECT EXISTS (SELECT 1 FROM {Refund._meta.db_table} WHERE merchant_id = %s AND transaction_id = %s),"  # noqa: S608  # nosec B608
    f" (SELECT SUM(amount) FROM {Refund._meta.db_table} WHERE plan_id = %s AND status = ANY(%s))"
)


def refund_request_standing(*, plan_id: int, merchant_id: int, transaction_id: str) -> tuple[bool, Decimal]:
    """``(taken, counted)``: whether ``transaction_id`` already names one of the merchant's
    refunds, and the sum of the plan's refunds PENDING, PROCESSING or APPROVED (0.00 for none)."""
    if not postgresql():
        taken = Refund.objects.filter(merchant_id=merchant_id, transaction_id=transaction_id).exists()
        refunds = Refund.objects.filter(plan_id=plan_id, status__in=COUNTED)
        return taken, refunds.aggregate(total=Sum("amount"))["total"] or ZERO
    with connection.cursor() as cursor:
        cursor.execute(_STANDING_SQL, [merchant_id, transaction_id, plan_id, [status.value for status in COUNTED]])
        taken, counted = cursor.fetchone()
    return taken, counted or ZERO
