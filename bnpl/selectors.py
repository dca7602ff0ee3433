"""Reads of plans, installments and debt, scoped by who is asking; and the plan lock."""

import functools
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from accounts.models import User
from accounts.selectors import user_list_for
from bnpl.models import Installment, LateFee, Plan
from bnpl.schedule import business_today, days_past_due_bucket
from core.db import (
    KEYS,
    advisory_xact_lock_try,
    keys_match,
    model_columns,
    model_from_row,
    models_fetched,
    postgresql,
    row_by_key,
)
from core.money import ZERO, to_money

BUCKETS = ("1-30", "31-60", "61-90", "90+")
OPEN_STATUSES = (Installment.Status.UPCOMING, Installment.Status.OVERDUE)
PLAN_FIELDS = tuple(field.name for field in Plan._meta.concrete_fields)


def plan_scope(viewer: User, prefix: str = "") -> Q:
    """Operators see every plan, merchants the plans they sold, customers their own."""
    if viewer.is_operator:
        return Q()
    if viewer.is_merchant:
        return Q(**{f"{prefix}merchant": viewer})
    return Q(**{f"{prefix}customer": viewer})


def plan_list_for(*, viewer: User) -> QuerySet[Plan]:
    """Plans ``viewer`` may see, with parties and installments loaded in a fixed number of queries."""
    return (
        Plan.objects.filter(plan_scope(viewer))
        .select_related("customer", "merchant")
        # Of the parties only their public ids are shown: the rest of the user rows (an
        # encrypted passport among them) is neither read nor decrypted.
        .only(*PLAN_FIELDS, "customer__user_id", "merchant__user_id")
        .prefetch_related(Prefetch("installments", queryset=Installment.objects.order_by("sequence")))
    )


# The plan detail, the API's most frequent read, in two statements written out: composing
# them through the ORM took about 2 ms a request, three times what the database took.
_PLAN_COLUMN_COUNT = len(Plan._meta.concrete_fields)
# What is read of a plan's parties: their public ids (as rows, not built field by field).
_PARTY_FIELDS = ["id", "user_id"]
_PLAN_SQL = (  # noqa: S608 - composed of the models' own column names
    "SELECT {columns}, {user_id} = p.customer_id), {user_id} = p.merchant_id) FROM bnpl_plan p WHERE p.id = %s"  # nosec B608
).format(
    columns=model_columns(Plan, "p"),
    # Subqueries rather than joins (also SQLite's SQL): each party found through its key,
    # whatever the statistics say (core.db.row_by_key).
    user_id="(SELECT user_id FROM accounts_user WHERE id",
)
_INSTALLMENTS_SQL = f"SELECT {model_columns(Installment)} FROM bnpl_installment WHERE plan_id = %s ORDER BY sequence"  # noqa: S608  # nosec B608


def _in_plan_scope(viewer: User, sql: str, params: list) -> tuple[str, list]:
    """``sql``, a statement over plans named ``p`` that ends in its WHERE clause, limited to
    the plans ``viewer`` may see: plan_scope() written out."""
    if viewer.is_operator:
        return sql, params
    return sql + (" AND p.merchant_id = %s" if viewer.is_merchant else " AND p.customer_id = %s"), [*params, viewer.pk]


def _plan_with_parties(row, fields: tuple[str, ...] | None = None) -> Plan:
    """The plan of a row of the plan's columns (or of ``fields``, customer_id and merchant_id
    among them) then its customer's and merchant's user ids, with ``plan.customer`` and
    ``plan.merchant`` carrying those ids alone."""
    plan = model_from_row(Plan, row, fields=fields)
    count = _PLAN_COLUMN_COUNT if fields is None else len(fields)
    plan.customer = User.from_db(connection.alias, _PARTY_FIELDS, [plan.customer_id, row[count]])
    plan.merchant = User.from_db(connection.alias, _PARTY_FIELDS, [plan.merchant_id, row[count + 1]])
    return plan


def plan_get_for(*, viewer: User, pk: int) -> Plan | None:
    """One plan ``viewer`` may see, with its parties' public ids and its installments loaded
    (as ``plan_list_for`` gives them); None when out of scope or absent. Two queries."""
    sql, params = _in_plan_scope(viewer, _PLAN_SQL, [pk])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        cursor.execute(_INSTALLMENTS_SQL, [pk])
        installment_rows = cursor.fetchall()
    return plan_installments_loaded(_plan_with_parties(row), [model_from_row(Installment, r) for r in installment_rows])


def plan_installments_loaded(plan: Plan, installments: list[Installment]) -> Plan:
    """Give ``plan`` the installments just written or read (``plan.installments_in_order``):
    a plan that was just created is shown without being read back."""
    plan.schedule = sorted(installments, key=lambda installment: installment.sequence)
    return plan


def installment_list_for(*, viewer: User) -> QuerySet[Installment]:
    """Installments of the plans ``viewer`` may see."""
    return Installment.objects.filter(plan_scope(viewer, "plan__")).select_related("plan").order_by("due_date", "id")


# The plan of an installment the viewer may see, asked before every installment's payment:
# written out on PostgreSQL (bnpl/tests/test_hand_written_sql.py holds it equal to the ORM's).
_INSTALLMENT_PLAN = (
    f"SELECT i.plan_id FROM {Installment._meta.db_table} i"  # noqa: S608  # nosec B608
    f" {row_by_key(Plan, 'p', 'i.plan_id', 'customer_id, merchant_id')} WHERE i.id = %s"
)
_BIGINT_MAX = 2**63 - 1


def installment_plan_for(*, viewer: User, installment_id: int) -> int | None:
    """The plan of installment ``installment_id`` if ``viewer`` may see it (plan_scope), else None."""
    if not postgresql():
        found = installment_list_for(viewer=viewer).filter(pk=installment_id).values_list("plan_id", flat=True)
        return found.first()
    if not 0 < installment_id <= _BIGINT_MAX:
        return None  # no such row, as the ORM answers for an id past the column's range
    sql, params = _in_plan_scope(viewer, _INSTALLMENT_PLAN, [installment_id])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


# Whether the caller may pay a plan, asked before every plan payment: written out (plain SQL,
# SQLite's too), as the ORM took longer composing it than the database took to answer.
_PLAN_EXISTS = f"SELECT 1 FROM {Plan._meta.db_table} p WHERE p.id = %s"  # noqa: S608  # nosec B608


def plan_visible(*, viewer: User, pk: int) -> bool:
    """Whether plan ``pk`` exists and ``viewer`` may see it (plan_scope)."""
    if not 0 < pk <= _BIGINT_MAX:
        return False  # no such row, as the ORM answers for an id past the column's range
    sql, params = _in_plan_scope(viewer, _PLAN_EXISTS, [pk])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


# Keys of the advisory locks: one job of each kind at a time across all workers.
SWEEP_LOCK_KEY = 0x424E504C01
REMINDERS_LOCK_KEY = 0x424E504C02


def sweep_lock_try() -> bool:
    """Take the sweep's lock until the transaction ends; False when another sweep holds it."""
    return advisory_xact_lock_try(SWEEP_LOCK_KEY)


def reminders_lock_try() -> bool:
    """Take the reminders job's lock until the transaction ends; False when another run holds it."""
    return advisory_xact_lock_try(REMINDERS_LOCK_KEY)


def plan_get_for_update(**lookup) -> Plan:
    """The plan matching ``lookup``, row-locked until the transaction ends (lock the parent first)."""
    if postgresql() and lookup.keys() == {"pk"}:
        return _plan_locked_by_id(lookup["pk"])
    # of=("self",): a lookup through a relation must not lock the related rows too.
    # no_key: the lock serialises changes to the plan's money, not its key, so the foreign-key
    # checks of rows pointing at the plan (a sweep chunk's fees and postings, checked when it
    # commits) do not wait for it, and cannot close a deadlock with the chunk's row locks.
    return Plan.objects.select_for_update(of=("self",), no_key=True).get(**lookup)


# The lock of every payment and refund, twice per payment, written out: the ORM spent longer
# composing it than PostgreSQL took to run it. The same row and lock as the ORM's
# (bnpl/tests/test_hand_written_sql.py holds them equal).
_PLAN_LOCK_BY_ID = f"SELECT {model_columns(Plan)} FROM {Plan._meta.db_table} WHERE id = %s FOR NO KEY UPDATE"  # noqa: S608  # nosec B608


def _plan_locked_by_id(pk: int) -> Plan:
    plans = models_fetched(Plan, _PLAN_LOCK_BY_ID, [pk])
    if not plans:
        raise Plan.DoesNotExist(f"No plan {pk}.")
    return plans[0]


_PLANS_LOCK_BY_IDS = (
    f"SELECT {model_columns(Plan)} FROM {Plan._meta.db_table} WHERE id {KEYS} ORDER BY id FOR NO KEY UPDATE"  # noqa: S608  # nosec B608
)


def plans_get_for_update(*, ids) -> dict[int, Plan]:
    """The plans of ``ids`` that exist, by id, row-locked until the transaction ends, in the
    order of their ids (two batches locking plans in common cannot deadlock on them)."""
    if not postgresql():
        plans = Plan.objects.select_for_update(of=("self",), no_key=True).filter(pk__in=ids).order_by("pk")
        return {plan.pk: plan for plan in plans}
    sql, keys = keys_match(_PLANS_LOCK_BY_IDS, sorted(set(ids)))
    return {plan.pk: plan for plan in models_fetched(Plan, sql, [keys])}


# What a customer owes per currency (unpaid installments, late fees due), in one statement.
# Written out because it runs on every debt read, and the ORM spent about 3 ms building its
# subqueries, for a 0.6 ms query. Grouped by the plans' currency: amounts in two currencies
# are never added together.
_OWED_SQL = """
SELECT currency, SUM(installments), SUM(fees) FROM (
  SELECT p.currency, i.amount_due - i.amount_paid AS installments, 0 AS fees
  FROM bnpl_installment i JOIN bnpl_plan p ON p.id = i.plan_id
  WHERE p.customer_id = %s AND i.status IN (%s, %s)
  UNION ALL
  SELECT p.currency, 0, f.amount - f.amount_paid FROM bnpl_latefee f JOIN bnpl_plan p ON p.id = f.plan_id
  WHERE p.customer_id = %s AND f.status = %s
) owed GROUP BY currency
"""


def _summed(value) -> Decimal:
    # SQLite sums lose the scale (and are floats); an empty sum is NULL.
    return to_money(Decimal(str(value or 0)))


def customer_owed(*, customer_id: int) -> dict[str, tuple[Decimal, Decimal]]:
    """``{currency: (installments, fees)}``: what the customer owes on unpaid installments and
    in late fees due, in each currency it owes anything in (none: empty). One query."""
    with connection.cursor() as cursor:
        cursor.execute(_OWED_SQL, [customer_id, *OPEN_STATUSES, customer_id, LateFee.Status.DUE])
        rows = cursor.fetchall()
    return {currency: (_summed(installments), _summed(fees)) for currency, installments, fees in sorted(rows)}


OPEN_PLAN_STATUSES = (Plan.Status.PENDING, Plan.Status.AUTHORIZED)


@dataclass(frozen=True)
class CreditPosition:
    """A customer's credit in one currency: the limit, what is owed (unpaid installments and
    late fees due), what open offers and authorizations reserve, and what is left."""

    currency: str
    credit_limit: Decimal
    outstanding: Decimal
    reserved: Decimal

    @property
    def available(self) -> Decimal:
        return max(self.credit_limit - self.outstanding - self.reserved, ZERO)


# Owed and reserved per currency, in one statement (never summed across currencies).
_POSITIONS_SQL = """
SELECT currency, SUM(owed), SUM(reserved) FROM (
  SELECT p.currency, i.amount_due - i.amount_paid AS owed, 0 AS reserved
  FROM bnpl_installment i JOIN bnpl_plan p ON p.id = i.plan_id
  WHERE p.customer_id = %s AND i.status IN (%s, %s)
  UNION ALL
  SELECT p.currency, f.amount - f.amount_paid, 0 FROM bnpl_latefee f JOIN bnpl_plan p ON p.id = f.plan_id
  WHERE p.customer_id = %s AND f.status = %s
  UNION ALL
  SELECT p.currency, 0, COALESCE(p.authorized_amount, p.total_amount) FROM bnpl_plan p
  WHERE p.customer_id = %s AND p.status IN (%s, %s) AND p.expires_at > %s AND p.id <> %s
) money GROUP BY currency
"""


def credit_positions(*, customer: User, excluding_plan_id: int = 0) -> dict[str, CreditPosition]:
    """``customer``'s credit per currency: every currency it owes or reserves in, and the
    default currency. ``excluding_plan_id``: a plan whose own reservation is not counted
    (the one being confirmed). An offer or authorization past its time reserves nothing,
    whether or not the expiry task has run yet. One query."""
    with connection.cursor() as cursor:
        cursor.execute(
            _POSITIONS_SQL,
            [
                customer.pk,
                *OPEN_STATUSES,
                customer.pk,
                LateFee.Status.DUE,
                customer.pk,
                *OPEN_PLAN_STATUSES,
                timezone.now(),
                excluding_plan_id,
            ],
        )
        rows = cursor.fetchall()
    positions = {
        currency: CreditPosition(
            currency=currency,
            credit_limit=customer.credit_limit,
            outstanding=_summed(owed),
            reserved=_summed(reserved),
        )
        for currency, owed, reserved in rows
    }
    default = settings.BNPL_DEFAULT_CURRENCY
    positions.setdefault(default, CreditPosition(default, customer.credit_limit, ZERO, ZERO))
    return dict(sorted(positions.items()))


def credit_position(*, customer: User, currency: str, excluding_plan_id: int = 0) -> CreditPosition:
    """``customer``'s credit in ``currency`` (see credit_positions)."""
    positions = credit_positions(customer=customer, excluding_plan_id=excluding_plan_id)
    return positions.get(currency) or CreditPosition(currency, customer.credit_limit, ZERO, ZERO)


@dataclass
class CurrencyDebt:
    """What a customer owes in one currency."""

    currency: str
    total_debt: Decimal = ZERO
    overdue_amount: Decimal = ZERO
    fees_due: Decimal = ZERO
    overdue_by_bucket: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(BUCKETS, ZERO))


@dataclass
class DebtStatus:
    """A customer's debt: per currency in ``by_currency`` (sorted by currency; the default
    currency alone, all zero, when nothing is owed). The top-level figures are those of the
    one currency when there is exactly one, and None when there are several: amounts in two
    currencies are never added together."""

    user_id: str
    user_status: str
    has_overdue: bool
    by_currency: list[CurrencyDebt]
    overdue_installments: list[dict] = field(default_factory=list)

    @property
    def single(self) -> CurrencyDebt | None:
        return self.by_currency[0] if len(self.by_currency) == 1 else None

    @property
    def currency(self) -> str | None:
        return self.single.currency if self.single else None

    @property
    def total_debt(self) -> Decimal | None:
        return self.single.total_debt if self.single else None

    @property
    def overdue_amount(self) -> Decimal | None:
        return self.single.overdue_amount if self.single else None

    @property
    def fees_due(self) -> Decimal | None:
        return self.single.fees_due if self.single else None

    @property
    def overdue_by_bucket(self) -> dict[str, Decimal | None]:
        return self.single.overdue_by_bucket if self.single else dict.fromkeys(BUCKETS)


def debt_status_for(*, customer: User, today: date | None = None) -> DebtStatus:
    """What ``customer`` owes now, per currency: everything unpaid, what is overdue (with days
    and bucket) and late fees due. Two queries, whatever the number of plans and currencies:
    the sums are made in SQL and only the overdue installments are read (through their
    partial index)."""
    overdue_rows = (
        Installment.objects.filter(customer_id=customer.pk, status=Installment.Status.OVERDUE)
        .order_by("due_date", "id")
        .values_list("pk", "plan_id", "plan__currency", "amount_due", "amount_paid", "due_date")
    )
    return _debt_status(
        user_id=customer.user_id,
        user_status=customer.status,
        owed=customer_owed(customer_id=customer.pk),
        overdue_rows=overdue_rows,
        today=today,
    )


def _debt_status(
    *, user_id: str, user_status: str, owed: dict[str, tuple[Decimal, Decimal]], overdue_rows, today: date | None
) -> DebtStatus:
    """The DebtStatus of the sums ``owed`` (customer_owed's) and the overdue installments'
    rows ``(id, plan_id, currency, amount_due, amount_paid, due_date)``, oldest due first."""
    today = today or business_today()
    debts = {
        currency: CurrencyDebt(currency=currency, total_debt=installments + fees, fees_due=fees)
        for currency, (installments, fees) in owed.items()
    }
    overdue = []
    for pk, plan_id, currency, amount_due, amount_paid, due_date in overdue_rows:
        days = (today - due_date).days
        bucket = days_past_due_bucket(days)
        remaining = amount_due - amount_paid
        # setdefault: a payment committed between the two statements may leave an overdue row
        # whose currency the sums no longer have; it is still shown, in its own currency.
        debt = debts.setdefault(currency, CurrencyDebt(currency=currency))
        debt.overdue_amount += remaining
        if bucket in debt.overdue_by_bucket:
            debt.overdue_by_bucket[bucket] += remaining
        overdue.append(
            {
                "id": pk,
                "plan_id": plan_id,
                "currency": currency,
                "amount_due": amount_due,
                "amount_remaining": remaining,
                "due_date": due_date,
                "days_overdue": days,
                "bucket": bucket,
            }
        )
    if not debts:
        default = settings.BNPL_DEFAULT_CURRENCY
        debts[default] = CurrencyDebt(currency=default)
    return DebtStatus(
        user_id=user_id,
        user_status=user_status,
        has_overdue=bool(overdue),
        by_currency=[debts[currency] for currency in sorted(debts)],
        overdue_installments=overdue,
    )


# A refund request's lock: the plan within the requester's scope, with its parties' public ids
# (the answer shows them), in one statement on PostgreSQL. FOR NO KEY UPDATE OF the plan only,
# as plan_get_for_update; a plan outside the scope is neither returned nor locked.
# (refunds/tests/test_hand_written_sql.py holds it equal to the ORM's.)
@functools.cache
def _plan_lock_with_parties(fields: tuple[str, ...] | None) -> str:
    """The plan's columns (every one, or ``fields``'), then its parties' user ids, of plan ``%s``."""
    columns = (
        model_columns(Plan, "p")
        if fields is None
        else ", ".join(f"p.{Plan._meta.get_field(name).column}" for name in fields)
    )
    customer = row_by_key(User, "c", "p.customer_id", "user_id")
    merchant = row_by_key(User, "m", "p.merchant_id", "user_id")
    return f"SELECT {columns}, c.user_id, m.user_id FROM {Plan._meta.db_table} p {customer} {merchant} WHERE p.id = %s"  # noqa: S608  # nosec B608


def plan_get_for_update_with_parties(*, viewer: User, pk: int, fields: tuple[str, ...] | None = None) -> Plan:
    """Plan ``pk`` if ``viewer`` may see it (plan_scope), row-locked until the transaction ends
    as ``plan_get_for_update`` locks it, with ``plan.customer`` and ``plan.merchant`` carrying
    their public ``user_id`` (the rest of the user rows is not read). ``fields`` (attribute
    names in the model's order, customer_id and merchant_id among them): the plan's fields
    read, the others deferred. Raises Plan.DoesNotExist when absent or out of scope."""
    if not postgresql():
        names = PLAN_FIELDS if fields is None else [Plan._meta.get_field(name).name for name in fields]
        locked = Plan.objects.select_for_update(of=("self",), no_key=True).filter(plan_scope(viewer))
        with_parties = locked.select_related("customer", "merchant")
        return with_parties.only(*names, "customer__user_id", "merchant__user_id").get(pk=pk)
    if not 0 < pk <= _BIGINT_MAX:
        raise Plan.DoesNotExist(f"No plan {pk}.")  # as the ORM answers for an id past the column's range
    sql, params = _in_plan_scope(viewer, _plan_lock_with_parties(fields), [pk])
    with connection.cursor() as cursor:
        cursor.execute(sql + " FOR NO KEY UPDATE OF p", params)
        row = cursor.fetchone()
    if row is None:
        raise Plan.DoesNotExist(f"No plan {pk}.")
    return _plan_with_parties(row, fields)


# The debt read (GET /api/v1/debt/{user_id}/) written out on PostgreSQL in two statements:
# the user in the viewer's scope (accounts.selectors.user_list_for's, spelt out) with what it
# owes per currency (customer_owed's sums, for a customer only), then its overdue
# installments. Composing the ORM's user lookup and overdue query cost about as much as the
# rest of the request. bnpl/tests/test_hand_written_sql.py holds the answers equal to the
# ORM path's, which SQLite keeps.
_DEBT_USER_OWED = """
SELECT u.id, u.user_id, u.role, u.status, o.currency, o.installments, o.fees
FROM accounts_user u LEFT JOIN LATERAL (
  SELECT currency, SUM(installments) AS installments, SUM(fees) AS fees FROM (
    SELECT p.currency, i.amount_due - i.amount_paid AS installments, 0 AS fees
    FROM bnpl_installment i JOIN bnpl_plan p ON p.id = i.plan_id
    WHERE p.customer_id = u.id AND i.status IN (%s, %s)
    UNION ALL
    SELECT p.currency, 0, f.amount - f.amount_paid FROM bnpl_latefee f JOIN bnpl_plan p ON p.id = f.plan_id
    WHERE p.customer_id = u.id AND f.status = %s
  ) owed GROUP BY currency
) o ON u.role = %s
WHERE u.user_id = %s
"""
_DEBT_SCOPE_CUSTOMER = " AND u.id = %s"
_DEBT_SCOPE_MERCHANT = (
    " AND (u.id = %s OR EXISTS (SELECT 1 FROM bnpl_plan s WHERE s.customer_id = u.id AND s.merchant_id = %s))"
)
# The plan's currency by a subquery on its key, not a join (core.db.row_by_key says why).
_DEBT_OVERDUE = """
SELECT i.id, i.plan_id, (SELECT p.currency FROM bnpl_plan p WHERE p.id = i.plan_id), i.amount_due, i.amount_paid,
       i.due_date
FROM bnpl_installment i
WHERE i.customer_id = %s AND i.status = %s ORDER BY i.due_date, i.id
"""


def debt_status_get_for(*, viewer: User, user_id: str, today: date | None = None) -> DebtStatus | None:
    """The debt status (debt_status_for's) of the customer ``user_id`` if ``viewer`` may see
    that user (accounts.selectors.user_list_for); None when out of scope, absent, or not a
    customer."""
    if not postgresql():
        user = user_list_for(viewer=viewer).filter(user_id=user_id).first()
        return debt_status_for(customer=user, today=today) if user is not None and user.is_customer else None
    sql = _DEBT_USER_OWED
    params = [*OPEN_STATUSES, LateFee.Status.DUE, User.Role.CUSTOMER, user_id]
    if viewer.is_merchant:
        sql, params = sql + _DEBT_SCOPE_MERCHANT, [*params, viewer.pk, viewer.pk]
    elif not viewer.is_operator:
        sql, params = sql + _DEBT_SCOPE_CUSTOMER, [*params, viewer.pk]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        if not rows or rows[0][2] != User.Role.CUSTOMER:
            return None
        pk, public_id, _, status = rows[0][:4]
        cursor.execute(_DEBT_OVERDUE, [pk, Installment.Status.OVERDUE])
        overdue_rows = cursor.fetchall()
    owed = {
        currency: (_summed(installments), _summed(fees))
        for *_, currency, installments, fees in sorted(rows, key=lambda row: row[4] or "")
        if currency is not None
    }
    return _debt_status(user_id=public_id, user_status=status, owed=owed, overdue_rows=overdue_rows, today=today)
