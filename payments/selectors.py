"""Read queries of payments worth a name."""

from django.db import connection
from django.db.models import QuerySet

from accounts.models import User
from bnpl.models import Installment, LateFee
from bnpl.selectors import plan_scope
from core.db import model_columns, postgresql
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
    "SELECT {payment}, u.user_id AS customer__user_id FROM {payments} p JOIN {users} u ON u.id = p.customer_id"
    " WHERE p.id = %s"
).format(
    payment=model_columns(Payment, "p"),
    payments=Payment._meta.db_table,
    users=User._meta.db_table,
)


def payment_with_customer(*, payment_id: int) -> Payment:
    """The payment with its customer's public id (``payment.customer`` holds that field alone).
    Raises Payment.DoesNotExist."""
    if not postgresql():
        fields = (*(field.name for field in Payment._meta.concrete_fields), "customer__user_id")
        return Payment.objects.select_related("customer").only(*fields).get(pk=payment_id)
    payment = next(iter(Payment.objects.raw(_PAYMENT_WITH_CUSTOMER, [payment_id])), None)
    if payment is None:
        raise Payment.DoesNotExist(f"No payment {payment_id}.")
    user_id = payment.__dict__.pop("customer__user_id")
    payment.customer = User.from_db(connection.alias, ["id", "user_id"], [payment.customer_id, user_id])
    return payment


# A payment's allocations with the installment or the late fee each is for, read by every
# payment as it is settled: written out on PostgreSQL, as above.
_ALLOCATIONS_WITH_ROWS = (  # noqa: S608 - the models' own names  # nosec B608
    "SELECT {allocation}, {installment}, {fee} FROM {allocations} a"
    " LEFT JOIN {installments} i ON i.id = a.installment_id LEFT JOIN {fees} f ON f.id = a.late_fee_id"
    " WHERE a.payment_id = %s ORDER BY a.id"
).format(
    allocation=model_columns(PaymentAllocation, "a"),
    installment=model_columns(Installment, "i"),
    fee=model_columns(LateFee, "f"),
    allocations=PaymentAllocation._meta.db_table,
    installments=Installment._meta.db_table,
    fees=LateFee._meta.db_table,
)


def allocations_with_rows(*, payment_id: int) -> list[PaymentAllocation]:
    """The payment's allocations in order, each with its installment or late fee loaded."""
    if not postgresql():
        return list(PaymentAllocation.objects.filter(payment_id=payment_id).select_related("installment", "late_fee"))
    models = (PaymentAllocation, Installment, LateFee)
    names = [[field.attname for field in model._meta.concrete_fields] for model in models]
    with connection.cursor() as cursor:
        cursor.execute(_ALLOCATIONS_WITH_ROWS, [payment_id])
        rows = cursor.fetchall()
    allocations = []
    for row in rows:
        values, start = [], 0
        for fields in names:
            values.append(row[start : start + len(fields)])
            start += len(fields)
        allocation = PaymentAllocation.from_db(connection.alias, names[0], values[0])
        allocation.installment = (
            Installment.from_db(connection.alias, names[1], values[1]) if allocation.installment_id else None
        )
        allocation.late_fee = LateFee.from_db(connection.alias, names[2], values[2]) if allocation.late_fee_id else None
        allocations.append(allocation)
    return allocations


# Asked by every payment made with a key (an Idempotency-Key's, autopay's), written out on
# PostgreSQL as above.
_PAYMENT_UNDER_KEY = f"SELECT {model_columns(Payment)} FROM {Payment._meta.db_table} WHERE gateway_key = %s"  # noqa: S608  # nosec B608


def payment_under_key(*, gateway_key: str) -> Payment | None:
    """The payment made with ``gateway_key`` (unique), if any."""
    if not postgresql():
        return Payment.objects.filter(gateway_key=gateway_key).first()
    return next(iter(Payment.objects.raw(_PAYMENT_UNDER_KEY, [gateway_key])), None)


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
