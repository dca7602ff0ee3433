"""Reads of refunds written out on PostgreSQL beside the ORM path SQLite keeps: what a refund
request reads of the refunds already made, and the merchant's refund-status webhook's two
reads (composing them through the ORM, and reading and decrypting the merchant's whole row,
cost more than the rest of the call). refunds/tests/test_hand_written_sql.py and
refunds/tests/test_selectors.py hold each equal to its ORM path.
"""

from decimal import Decimal

from django.db import connection
from django.db.models import Sum

from accounts.models import User
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
    # The states as a FILTER, not in the WHERE clause: the plan's index is then the only one
    # the sum can be found by, whatever the statistics say of the states.
    f" (SELECT SUM(amount) FILTER (WHERE status = ANY(%s)) FROM {Refund._meta.db_table} WHERE plan_id = %s)"
)


def refund_request_standing(*, plan_id: int, merchant_id: int, transaction_id: str) -> tuple[bool, Decimal]:
    """``(taken, counted)``: whether ``transaction_id`` already names one of the merchant's
    refunds, and the sum of the plan's refunds PENDING, PROCESSING or APPROVED (0.00 for none)."""
    if not postgresql():
        taken = Refund.objects.filter(merchant_id=merchant_id, transaction_id=transaction_id).exists()
        refunds = Refund.objects.filter(plan_id=plan_id, status__in=COUNTED)
        return taken, refunds.aggregate(total=Sum("amount"))["total"] or ZERO
    with connection.cursor() as cursor:
        cursor.execute(_STANDING_SQL, [merchant_id, transaction_id, [status.value for status in COUNTED], plan_id])
        taken, counted = cursor.fetchone()
    return taken, counted or ZERO


# Of the merchant only what the signature needs: its id and webhook secret (still encrypted).
_MERCHANT = (
    f"SELECT id, webhook_secret FROM {User._meta.db_table}"  # noqa: S608 - the model's own table  # nosec B608
    " WHERE user_id = %s AND role = %s AND is_active"
)
_SECRET = User._meta.get_field("webhook_secret")
# Of the refund what the webhook answers from and decides on; the rest is read if asked for.
_REFUND_FIELDS = ["id", "transaction_id", "status", "merchant_reference"]
_REFUND = (
    f"SELECT {', '.join(_REFUND_FIELDS)} FROM {Refund._meta.db_table}"  # noqa: S608 - the model's own columns  # nosec B608
    " WHERE merchant_id = %s AND transaction_id = %s"
)


def webhook_merchant(*, user_id: str) -> User | None:
    """The active merchant ``user_id`` with its webhook secret (decrypted) and pk loaded, or
    None. On PostgreSQL a User with its pk, user_id, role and secret only: it is for checking
    the signature and naming the merchant in further reads, not for saving."""
    if not postgresql():
        return User.objects.filter(user_id=user_id, role=User.Role.MERCHANT, is_active=True).first()
    with connection.cursor() as cursor:
        cursor.execute(_MERCHANT, [user_id, User.Role.MERCHANT])
        row = cursor.fetchone()
    if row is None:
        return None
    secret = _SECRET.from_db_value(row[1], None, connection)
    return User(pk=row[0], user_id=user_id, role=User.Role.MERCHANT, webhook_secret=secret)


def merchant_refund(*, merchant_id: int, transaction_id: str) -> Refund | None:
    """Merchant ``merchant_id``'s refund ``transaction_id`` (unique per merchant), or None. On
    PostgreSQL with its id, transaction_id, status and merchant_reference loaded, the other
    fields deferred (read from the database if used)."""
    if not postgresql():
        return Refund.objects.filter(merchant_id=merchant_id, transaction_id=transaction_id).first()
    with connection.cursor() as cursor:
        cursor.execute(_REFUND, [merchant_id, transaction_id])
        row = cursor.fetchone()
    return None if row is None else Refund.from_db(connection.alias, _REFUND_FIELDS, row)
