"""Read queries of payments worth a name."""

from django.db import connection
from django.db.models import QuerySet

from accounts.models import User
from bnpl.models import Installment, LateFee
from bnpl.selectors import plan_scope
from core.db import KEYS, keys_match, model_columns, model_from_row, models_fetched, postgresql, row_by_key
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


def _matching(sql: str, keys) -> tuple[str, list]:
    """``sql`` (its ``{keys}`` matched to ``keys``) and its one parameter, for ``execute``."""
    matched, parameter = keys_match(sql, keys)
    return matched, [parameter]


# Read by every payment as it is settled, written out on PostgreSQL: the ORM's join took
# longer to compose than to run (payments/tests/test_hand_written_sql.py holds the two equal).
_PAYMENTS_WITH_CUSTOMERS = (  # noqa: S608 - the models' own names  # nosec B608
    "SELECT {payment}, u.user_id AS customer__user_id FROM {payments} p {customer} WHERE p.id {keys}"
).format(
    keys=KEYS,
    payment=model_columns(Payment, "p"),
    payments=Payment._meta.db_table,
    customer=row_by_key(User, "u", "p.customer_id", "user_id"),
)


def payment_with_customer(*, payment_id: int) -> Payment:
    """The payment with its customer's public id (``payment.customer`` holds that field alone).
    Raises Payment.DoesNotExist."""
    found = payments_with_customers(ids=[payment_id])
    if payment_id not in found:
        raise Payment.DoesNotExist(f"No payment {payment_id}.")
    return found[payment_id]


def payments_with_customers(*, ids) -> dict[int, Payment]:
    """The payments of ``ids`` that exist, by id, as ``payment_with_customer`` reads each."""
    if not postgresql():
        fields = (*(field.name for field in Payment._meta.concrete_fields), "customer__user_id")
        payments = Payment.objects.select_related("customer").only(*fields).filter(pk__in=ids)
        return {payment.pk: payment for payment in payments}
    with connection.cursor() as cursor:
        cursor.execute(*_matching(_PAYMENTS_WITH_CUSTOMERS, ids))
        rows = cursor.fetchall()
    found = {}
    for row in rows:
        payment = model_from_row(Payment, row)
        payment.customer = User.from_db(connection.alias, ["id", "user_id"], [payment.customer_id, row[-1]])
        found[payment.pk] = payment
    return found


# The allocations of payments with the installment or the late fee each is for, read by every
# payment as it is settled: written out on PostgreSQL, as above.
_ALLOCATIONS_WITH_ROWS = (  # noqa: S608 - the models' own names  # nosec B608
    "SELECT {allocation}, {installment}, {fee} FROM {allocations} a {installment_row} {fee_row}"
    " WHERE a.payment_id {keys} ORDER BY a.id"
).format(
    keys=KEYS,
    allocation=model_columns(PaymentAllocation, "a"),
    installment=model_columns(Installment, "i"),
    fee=model_columns(LateFee, "f"),
    allocations=PaymentAllocation._meta.db_table,
    installment_row=row_by_key(Installment, "i", "a.installment_id", outer=True),
    fee_row=row_by_key(LateFee, "f", "a.late_fee_id", outer=True),
)


def allocations_with_rows(*, payment_id: int) -> list[PaymentAllocation]:
    """The payment's allocations in order, each with its installment or late fee loaded."""
    return allocations_with_rows_of(payment_ids=[payment_id]).get(payment_id, [])


def allocations_with_rows_of(*, payment_ids) -> dict[int, list[PaymentAllocation]]:
    """The allocations of each of ``payment_ids`` in order, as ``allocations_with_rows``
    reads them; allocations of one installment or fee share one instance of it, so that
    settling them one after the other sees what the one before changed."""
    if not postgresql():
        allocations = PaymentAllocation.objects.filter(payment_id__in=payment_ids).select_related(
            "installment", "late_fee"
        )
        allocations = list(allocations.order_by("id"))
    else:
        with connection.cursor() as cursor:
            cursor.execute(*_matching(_ALLOCATIONS_WITH_ROWS, payment_ids))
            rows = cursor.fetchall()
        installment_at = len(PaymentAllocation._meta.concrete_fields)
        fee_at = installment_at + len(Installment._meta.concrete_fields)
        allocations = []
        for row in rows:
            allocation = model_from_row(PaymentAllocation, row)
            allocation.installment = (
                model_from_row(Installment, row, installment_at) if allocation.installment_id else None
            )
            allocation.late_fee = model_from_row(LateFee, row, fee_at) if allocation.late_fee_id else None
            allocations.append(allocation)
    shared: dict[tuple[type, int], object] = {}
    by_payment: dict[int, list[PaymentAllocation]] = {}
    for allocation in allocations:
        if allocation.installment is not None:
            allocation.installment = shared.setdefault((Installment, allocation.installment_id), allocation.installment)
        if allocation.late_fee is not None:
            allocation.late_fee = shared.setdefault((LateFee, allocation.late_fee_id), allocation.late_fee)
        by_payment.setdefault(allocation.payment_id, []).append(allocation)
    return by_payment


# Asked by every payment made with a key (an Idempotency-Key's, autopay's), written out on
# PostgreSQL as above.
_PAYMENTS_UNDER_KEYS = f"SELECT {model_columns(Payment)} FROM {Payment._meta.db_table} WHERE gateway_key {KEYS}"  # noqa: S608  # nosec B608


def payment_under_key(*, gateway_key: str) -> Payment | None:
    """The payment made with ``gateway_key`` (unique), if any."""
    return payments_under_keys(gateway_keys=[gateway_key]).get(gateway_key)


def payments_under_keys(*, gateway_keys) -> dict[str, Payment]:
    """The payments made with any of ``gateway_keys``, by key."""
    keys = list(gateway_keys)
    if not keys:
        return {}
    if not postgresql():
        return {payment.gateway_key: payment for payment in Payment.objects.filter(gateway_key__in=keys)}
    return {payment.gateway_key: payment for payment in models_fetched(Payment, *_matching(_PAYMENTS_UNDER_KEYS, keys))}


_PAYERS_LOCK = f"SELECT id, card_token FROM {User._meta.db_table} WHERE id {KEYS} ORDER BY id FOR NO KEY UPDATE"  # noqa: S608  # nosec B608


def payer_locked(*, customer_id: int) -> User:
    """The customer who pays, row-locked until the transaction ends (``id`` and ``card_token``
    alone). Raises User.DoesNotExist."""
    found = payers_locked(customer_ids=[customer_id])
    if customer_id not in found:
        raise User.DoesNotExist(f"No user {customer_id}.")
    return found[customer_id]


def payers_locked(*, customer_ids) -> dict[int, User]:
    """``payer_locked`` for each of ``customer_ids`` that exists, by id, locked in the order of their ids."""
    ids = sorted(set(customer_ids))
    if not postgresql():
        payers = User.objects.select_for_update(no_key=True).only("id", "card_token").filter(pk__in=ids).order_by("pk")
        return {payer.pk: payer for payer in payers}
    with connection.cursor() as cursor:
        cursor.execute(*_matching(_PAYERS_LOCK, ids))
        rows = cursor.fetchall()
    return {pk: User.from_db(connection.alias, ["id", "card_token"], [pk, token]) for pk, token in rows}
