"""Read queries of payments worth a name."""

from django.db import connection
from django.db.models import QuerySet

from accounts.models import User
from bnpl.models import Installment, LateFee
from bnpl.selectors import plan_scope
from core.db import model_columns, model_from_row, models_fetched, postgresql, row_by_key
from ledger.accounts import CUSTOMER_CREDIT
from ledger.models import Posting
from payments.models import Payment, PaymentAllocation


def credit_transactions_for(*, viewer: User) -> QuerySet[Posting]:
    """Movements of credit balances ``viewer`` may see (own, on plans sold, or all), newest first."""
    return (
        Posting.objects.filter(plan_scope(viewer, "plan__"), account__code=CUSTOMER_CREDIT)
        .select_related("entry", "party")
        .order_by("-id")
    )


# Read by every payment as it is settled, written out on PostgreSQL: the ORM's join took
# longer to compose than to run (payments/tests/test_hand_written_sql.py holds the two equal).
_PAYMENT_WITH_CUSTOMER = (  # noqa: S608 - the models' own names  # nosec B608
    "SELECT {payment}, u.user_id AS customer__user_id FROM {payments} p {customer} WHERE p.id = %s"
).format(
    payment=model_columns(Payment, "p"),
    payments=Payment._meta.db_table,
    customer=row_by_key(User, "u", "p.customer_id", "user_id"),
)


def payment_with_customer(*, payment_id: int) -> Payment:
    """The payment with its customer's public id (``payment.customer`` holds that field alone).
    Raises Payment.DoesNotExist."""
    if not postgresql():
        fields = (*(field.name for field in Payment._meta.concrete_fields), "customer__user_id")
        return Payment.objects.select_related("customer").only(*fields).get(pk=payment_id)
    with connection.cursor() as cursor:
        cursor.execute(_PAYMENT_WITH_CUSTOMER, [payment_id])
        row = cursor.fetchone()
    if row is None:
        raise Payment.DoesNotExist(f"No payment {payment_id}.")
    payment = model_from_row(Payment, row)
    payment.customer = User.from_db(connection.alias, ["id", "user_id"], [payment.customer_id, row[-1]])
    return payment


# A payment's allocations with the installment or the late fee each is for, read by every
# payment as it is settled: written out on PostgreSQL, as above.
_ALLOCATIONS_WITH_ROWS = (  # noqa: S608 - the models' own names  # nosec B608
    "SELECT {allocation}, {installment}, {fee} FROM {allocations} a {installment_row} {fee_row}"
    " WHERE a.payment_id = %s ORDER BY a.id"
).format(
    allocation=model_columns(PaymentAllocation, "a"),
    installment=model_columns(Installment, "i"),
    fee=model_columns(LateFee, "f"),
    allocations=PaymentAllocation._meta.db_table,
    installment_row=row_by_key(Installment, "i", "a.installment_id", outer=True),
    fee_row=row_by_key(LateFee, "f", "a.late_fee_id", outer=True),
)


def allocations_with_rows(*, payment_id: int) -> list[PaymentAllocation]:
    """The payment's allocations in order, each with its installment or late fee loaded."""
    if not postgresql():
        return list(PaymentAllocation.objects.filter(payment_id=payment_id).select_related("installment", "late_fee"))
    with connection.cursor() as cursor:
        cursor.execute(_ALLOCATIONS_WITH_ROWS, [payment_id])
        rows = cursor.fetchall()
    installment_at = len(PaymentAllocation._meta.concrete_fields)
    fee_at = installment_at + len(Installment._meta.concrete_fields)
    allocations = []
    for row in rows:
        allocation = model_from_row(PaymentAllocation, row)
        allocation.installment = model_from_row(Installment, row, installment_at) if allocation.installment_id else None
        allocation.late_fee = model_from_row(LateFee, row, fee_at) if allocation.late_fee_id else None
        allocations.append(allocation)
    return allocations


# Asked by every payment made with a key (an Idempotency-Key's, autopay's), written out on
# PostgreSQL as above.
_PAYMENT_UNDER_KEY = f"SELECT {model_columns(Payment)} FROM {Payment._meta.db_table} WHERE gateway_key = %s"  # noqa: S608  # nosec B608


def payment_under_key(*, gateway_key: str) -> Payment | None:
    """The payment made with ``gateway_key`` (unique), if any."""
    if not postgresql():
        return Payment.objects.filter(gateway_key=gateway_key).first()
    found = models_fetched(Payment, _PAYMENT_UNDER_KEY, [gateway_key])
    return found[0] if found else None


_PAYER_LOCK = f"SELECT card_token FROM {User._meta.db_table} WHERE id = %s FOR NO KEY UPDATE"  # noqa: S608  # nosec B608


def payer_locked(*, customer_id: int) -> User:
    """The customer who pays, row-locked until the transaction ends (``id`` and ``card_token``
    alone). Raises User.DoesNotExist."""
    if not postgresql():
        return User.objects.select_for_update(no_key=True).only("id", "card_token").get(pk=customer_id)
    with connection.cursor() as cursor:
        cursor.execute(_PAYER_LOCK, [customer_id])
        row = cursor.fetchone()
    if row is None:
        raise User.DoesNotExist(f"No user {customer_id}.")
    return User.from_db(connection.alias, ["id", "card_token"], [customer_id, row[0]])
