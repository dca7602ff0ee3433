"""The one writer of installment and late-fee state (DESIGN §1, STYLE §9).

Installments are born with their plan (``origination``) and fees when the sweep charges
them (``late_fees``); every change after that is made here: what a payment may take and
reserves, settling or releasing that reservation, cancelling by refund, marking overdue,
waiving a fee, and closing the plan when nothing is left. Payments, refunds and the sweep
call these functions; none of them assigns a status or an amount itself.

Locks: every function but ``installments_mark_overdue`` runs under the plan's row lock
(``bnpl.selectors.plan_get_for_update``), taken by its caller (``late_fee_waive`` takes it
itself), and saves only the columns
it changed. The sweep marks installments OVERDUE under its chunk's transaction without the
plans' locks, so a status read under the plan's lock may be older than its mark; that is
why nothing here writes a status it did not change.

Reserved: the cents PENDING payments have claimed are kept on the rows
(``amount_reserved``), set by ``parts_reserve`` and cleared by ``reservation_settle`` or
``reservation_release``; a later payment can take only what is neither paid nor reserved.

The rule of DESIGN §6 (Payments), here and nowhere else: reserved cents are not yet
money received, so no decision pays them back or waives them until their payment ends.
A refund lowers what is owed, reserved cents included, and pays back only what exceeds
everything unpaid (money received); a waiver of a fee a payment is paying waits for that
payment (409). When a payment settles, each share is applied only to what is still owed
(an open installment's remainder, a fee still DUE); the rest of it goes to the customer's
credit balance (docs/DOMAIN.md, "Payments racing refunds and waivers").
"""

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from bnpl.errors import LateFeeNotWaivable, LateFeePaymentPending
from bnpl.event_data import installment_event_data, installment_event_sql, plan_event_data
from bnpl.models import Installment, LateFee, Plan
from bnpl.selectors import OPEN_STATUSES, plan_get_for_update
from core.db import KEYS, RowSaves, keys_match, model_columns, models_fetched, postgresql
from core.money import ZERO, to_money
from core.problems import FieldInvalid
from events.models import Event
from events.services import event_record, events_record_many, events_relay_after_commit
from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME
from ledger.models import JournalEntry
from ledger.services import Leg, ledger_post


@dataclass
class Part:
    """Cents of one installment or one late fee: what a payment may take of it, or took."""

    installment: Installment | None
    fee: LateFee | None
    amount: Decimal

    @property
    def row(self) -> Installment | LateFee:
        return self.installment if self.installment is not None else self.fee


@dataclass
class Settled:
    """What settling a payment's reservation did: of each part, the cents applied to what
    was still owed (``applied``, in the order of the parts); the rest (``surplus``) was no
    longer owed and goes to the customer's credit; the installments and fees it paid in full."""

    applied: list[Decimal] = field(default_factory=list)
    paid_installments: list[Installment] = field(default_factory=list)
    paid_fees: list[LateFee] = field(default_factory=list)

    @property
    def applied_total(self) -> Decimal:
        return sum(self.applied, ZERO)

    @property
    def paid_any(self) -> bool:
        """Whether an installment or a fee was paid in full: only then can the plan close."""
        return bool(self.paid_installments or self.paid_fees)

    def surplus(self, parts: list[Part]) -> Decimal:
        return sum((part.amount for part in parts), ZERO) - self.applied_total


def _free(row: Installment | LateFee) -> Decimal:
    """What a new payment may still take of ``row``: its remainder less what is reserved."""
    return row.amount_remaining - row.amount_reserved


class Payables:
    """The open installments and the late fees due of some plans, read once under their
    locks (taken by the caller), from which payments are reserved one after the other: each
    ``parts`` is what a new payment may take now, after the reservations made before it."""

    def __init__(self, plan_ids, *, fees_of=()) -> None:
        """Read the open installments of ``plan_ids``, and the late fees due of ``fees_of``
        (the plans a payment of the whole plan may be made of)."""
        self._installments = _open_installments(plan_ids)
        self._fees = _due_fees(fees_of) if fees_of else {}

    def parts(self, plan: Plan, installment_id: int | None = None) -> list[Part]:
        """What a new payment may take of ``plan`` now, in the order it is taken: overdue
        installments oldest first, then late fees due, then upcoming installments (only the
        installment ``installment_id`` when given)."""
        installments = self._installments.get(plan.pk, [])
        if installment_id is not None:
            installments = [i for i in installments if i.pk == installment_id]
            fees = []
        else:
            fees = self._fees.get(plan.pk, [])
        ordered = [i for i in installments if i.status == Installment.Status.OVERDUE]
        ordered += fees
        ordered += [i for i in installments if i.status == Installment.Status.UPCOMING]
        parts = [
            Part(row if isinstance(row, Installment) else None, row if isinstance(row, LateFee) else None, _free(row))
            for row in ordered
        ]
        return [part for part in parts if part.amount > 0]


# What every payment reads under the plans' locks, written out on PostgreSQL: the ORM spent
# longer composing these than the database took to run them (bnpl/tests/test_hand_written_sql.py
# holds them equal to the ORM's, which SQLite keeps).
_SELECT = "SELECT {columns} FROM {table} WHERE plan_id {keys} AND status {condition}"


def _select(model, condition: str) -> str:
    """A select of ``model``'s every column (the models' own names) of some plans' rows."""
    return _SELECT.format(columns=model_columns(model), table=model._meta.db_table, condition=condition, keys=KEYS)


_OPEN_INSTALLMENTS = _select(Installment, "= ANY(%s) ORDER BY plan_id, due_date, sequence")
_DUE_FEES = _select(LateFee, "= %s ORDER BY plan_id, id")


def _by_plan(rows) -> dict[int, list]:
    grouped: dict[int, list] = {}
    for row in rows:
        grouped.setdefault(row.plan_id, []).append(row)
    return grouped


def _open_installments(plan_ids) -> dict[int, list[Installment]]:
    """The UPCOMING and OVERDUE installments of each of ``plan_ids``, by due date and sequence."""
    if postgresql():
        sql, plans = keys_match(_OPEN_INSTALLMENTS, plan_ids)
        return _by_plan(models_fetched(Installment, sql, [plans, list(OPEN_STATUSES)]))
    installments = Installment.objects.filter(plan_id__in=plan_ids, status__in=OPEN_STATUSES)
    return _by_plan(installments.order_by("plan_id", "due_date", "sequence"))


def _due_fees(plan_ids) -> dict[int, list[LateFee]]:
    """The late fees still DUE of each of ``plan_ids``, oldest first."""
    if postgresql():
        sql, plans = keys_match(_DUE_FEES, plan_ids)
        return _by_plan(models_fetched(LateFee, sql, [plans, LateFee.Status.DUE]))
    return _by_plan(LateFee.objects.filter(plan_id__in=plan_ids, status=LateFee.Status.DUE).order_by("plan_id", "id"))


def _saved(saves: RowSaves | None, changed: list[tuple[Installment | LateFee, list[str]]]) -> None:
    """Add the ``changed`` rows to the caller's ``saves``, or save them now when it has none."""
    own = saves if saves is not None else RowSaves()
    for row, fields in changed:
        own.add(row, fields)
    if saves is None:
        own.save()


def parts_reserve(parts: list[Part], amount: Decimal, *, saves: RowSaves | None = None) -> list[Part]:
    """Reserve ``amount`` of ``parts`` (from ``Payables.parts``, in their order) for a PENDING
    payment; returns what it took of each, to be recorded as the payment's allocations. The
    rows are saved into ``saves`` (a batch's, saved by the caller), else at once."""
    taken, left, changed = [], amount, []
    for part in parts:
        if left <= 0:
            break
        cut = min(left, part.amount)
        left -= cut
        part.row.amount_reserved += cut
        changed.append((part.row, ["amount_reserved"]))
        taken.append(Part(part.installment, part.fee, cut))
    _saved(saves, changed)
    return taken


def _owed(row: Installment | LateFee) -> Decimal:
    """What is still owed on ``row``: an open installment's remainder, a DUE fee's; else 0
    (an installment a refund cancelled or that is paid, a fee waived or paid)."""
    if isinstance(row, Installment):
        return row.amount_remaining if row.status in OPEN_STATUSES else ZERO
    return row.amount_remaining  # zero unless DUE


def reservation_settle(*, parts: list[Part], now, saves: RowSaves | None = None) -> Settled:
    """A PENDING payment's charge succeeded: what it reserved (``parts``, its rows read under
    the plan's lock) is paid, as far as it is still owed (a refund or a waiver may have
    lowered it meanwhile); an installment or fee paid in full is PAID. The caller books the
    rest (``Settled.surplus``) as the customer's credit. Rows are saved as ``parts_reserve`` says."""
    settled, changed = Settled(), []
    for part in parts:
        row = part.row
        applied = min(part.amount, _owed(row))
        row.amount_reserved -= part.amount
        row.amount_paid += applied
        settled.applied.append(applied)
        fields = ["amount_reserved", "amount_paid"]
        if part.installment is not None:
            fields.append("updated_at")
            if applied and row.amount_paid == row.amount_due:
                row.status, row.paid_at = Installment.Status.PAID, now
                fields += ["status", "paid_at"]
                settled.paid_installments.append(row)
        elif applied and row.amount_paid == row.amount:
            row.status = LateFee.Status.PAID
            fields.append("status")
            settled.paid_fees.append(row)
        changed.append((row, fields))
    _saved(saves, changed)
    return settled


def reservation_release(*, parts: list[Part], saves: RowSaves | None = None) -> None:
    """A PENDING payment failed: what it reserved is free again; nothing is paid. Rows are
    saved as ``parts_reserve`` says."""
    for part in parts:
        part.row.amount_reserved -= part.amount
    _saved(saves, [(part.row, ["amount_reserved"]) for part in parts])


def installments_cancel_by_refund(*, plan: Plan, amount: Decimal) -> Decimal:
    """Lower the unpaid installments of ``plan`` by up to ``amount``, from the last one
    backwards; one left with nothing to pay is CANCELLED. Returns the amount taken off: what
    the refund may pay back is only the rest. Call under the plan's lock.

    Cents a PENDING payment reserved are unpaid, so they are lowered too (never paid back):
    if that payment succeeds, its share no longer owed goes to the customer's credit
    (``reservation_settle``); if it fails, nothing was received and nothing was paid back."""
    installments = plan.installments.filter(status__in=OPEN_STATUSES).order_by("-sequence")
    left = amount
    for installment in installments:
        removable = installment.amount_remaining
        if left <= 0 or removable <= 0:
            continue
        cut = min(left, removable)
        left -= cut
        installment.amount_due -= cut
        changed = ["amount_due", "updated_at"]
        if installment.amount_due == installment.amount_paid:
            installment.status = Installment.Status.CANCELLED
            changed.append("status")
        installment.save(update_fields=changed)
    return amount - left


# Whether each plan has anything left to pay, and whether anything was ever paid on it, asked
# by every payment that pays a row in full: one statement of plain SQL, where the ORM composed
# three per plan.
_PLANS_STANDING = (
    "SELECT p.id,"  # noqa: S608  # nosec B608
    f" EXISTS (SELECT 1 FROM {Installment._meta.db_table} i WHERE i.plan_id = p.id AND i.status IN (%s, %s)),"
    f" EXISTS (SELECT 1 FROM {LateFee._meta.db_table} f WHERE f.plan_id = p.id AND f.status = %s),"
    f" EXISTS (SELECT 1 FROM {Installment._meta.db_table} i WHERE i.plan_id = p.id AND i.amount_paid > 0)"
    f" FROM {Plan._meta.db_table} p WHERE p.id IN ({{plans}})"
)


def plan_close_if_settled(plan: Plan) -> None:
    """Close a plan with nothing left to pay: CANCELLED when nothing was ever paid on it
    (refunded in full first), else COMPLETED. Call under the plan's lock. A plan already
    closed stays as it is (a refund on a completed plan does not complete it twice)."""
    plans_close_if_settled([plan])


def plans_close_if_settled(plans: list[Plan]) -> None:
    """``plan_close_if_settled`` for each of ``plans`` (distinct, all locked), asked in one statement."""
    active = {plan.pk: plan for plan in plans if plan.status == Plan.Status.ACTIVE}
    if not active:
        return
    with connection.cursor() as cursor:
        # One placeholder per plan: SQLite has no arrays.
        cursor.execute(
            _PLANS_STANDING.format(plans=", ".join(["%s"] * len(active))),
            [*OPEN_STATUSES, LateFee.Status.DUE, *active],
        )
        standing = cursor.fetchall()
    for plan_id, open_installments, fees_due, paid in sorted(standing):
        if open_installments or fees_due:
            continue
        plan = active[plan_id]
        plan.status = Plan.Status.COMPLETED if paid else Plan.Status.CANCELLED
        plan.save(update_fields=["status", "updated_at"])
        if plan.status == Plan.Status.COMPLETED:
            event_record(merchant_id=plan.merchant_id, type=Event.Type.PLAN_COMPLETED, data=plan_event_data(plan))


# Asked by every payment that pays a row in full: plain SQL (SQLite's too), as the ORM took
# longer composing it than the database took to run it. Only a DEBT_USER is looked into; the
# status is written in, so that a prepared statement's generic plan uses the partial index of
# overdue installments.
_CUSTOMERS_RESTORE = (
    f"UPDATE {User._meta.db_table} SET status = %s WHERE id IN ({{customers}}) AND status = %s"  # noqa: S608  # nosec B608
    f" AND NOT EXISTS (SELECT 1 FROM {Installment._meta.db_table} i"
    f" WHERE i.customer_id = {User._meta.db_table}.id AND i.status = '{Installment.Status.OVERDUE}')"
)


def customer_restore_if_clear(*, customer_id: int) -> None:
    """A DEBT_USER with nothing overdue any more is NORMAL again at once."""
    customers_restore_if_clear(customer_ids=[customer_id])


def customers_restore_if_clear(*, customer_ids) -> None:
    """``customer_restore_if_clear`` for each of ``customer_ids``, in one statement."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _CUSTOMERS_RESTORE.format(customers=", ".join(["%s"] * len(ids))),
            [User.Status.NORMAL, *ids, User.Status.DEBT_USER],
        )


@transaction.atomic
def late_fee_waive(*, fee_id: int, operator: User, reason: str) -> LateFee:
    """Waive what is still due of a late fee, recording who and why; reverses it in the
    ledger. Takes the plan's lock itself.

    Raises LateFee.DoesNotExist, LateFeeNotWaivable (409), LateFeePaymentPending (409: a
    payment of it is in progress; waive it once that payment has succeeded or failed),
    FieldInvalid (400, no reason).
    """
    reason = (reason or "").strip()
    if not reason:
        raise FieldInvalid("reason", "Say why the fee is waived.")
    plan = plan_get_for_update(late_fees__id=fee_id)
    fee = LateFee.objects.get(pk=fee_id)  # re-read under the plan's lock
    if fee.status != LateFee.Status.DUE:
        raise LateFeeNotWaivable()
    if fee.amount_reserved:
        raise LateFeePaymentPending()
    waived = fee.amount - fee.amount_paid
    fee.status = LateFee.Status.WAIVED
    fee.waived_by = operator
    fee.waived_reason = reason
    fee.waived_at = timezone.now()
    fee.save(update_fields=["status", "waived_by", "waived_reason", "waived_at"])
    ledger_post(
        kind=JournalEntry.Kind.FEE_WAIVER,
        plan_id=plan.pk,
        memo=f"Late fee {fee.pk} waived by {operator.user_id}",
        legs=[
            Leg(FEE_INCOME, waived, plan.currency, plan.pk, plan.customer_id),
            Leg(CUSTOMER_RECEIVABLE, -waived, plan.currency, plan.pk, plan.customer_id),
        ],
    )
    return fee


# --- Marking overdue (the sweep) -------------------------------------------------------------

_MARK_OVERDUE_SQL = """
    UPDATE bnpl_installment SET status = %s, overdue_since = %s, updated_at = %s
    WHERE status = %s AND due_date < %s AND amount_paid < amount_due AND plan_id BETWEEN %s AND %s
    RETURNING id, plan_id, sequence, amount_due, amount_paid, due_date, status
"""
# On PostgreSQL the marking and the events are one statement: the events are built from
# the rows the UPDATE returns, in SQL, from the same definition as installment_event_data().
# No row passes through Python, which is what keeps a sweep of 100,000 newly overdue
# installments within a few times one UPDATE.
_MARK_OVERDUE_PG_SQL = f"""
    WITH marked AS ({_MARK_OVERDUE_SQL})
    INSERT INTO events_event (public_id, merchant_id, type, data, created_at, delivery_status, attempts,
                              next_attempt_at, give_up_at)
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), p.merchant_id, %s,
           {installment_event_sql(installment="m", plan="p")}, %s, %s, 0, %s, %s
    -- The chunk's range again, on the plans: without it the join read every plan there is.
    FROM marked m JOIN bnpl_plan p ON p.id = m.plan_id AND p.id BETWEEN %s AND %s
    ORDER BY m.id
"""  # noqa: S608 - composed of constants only  # nosec B608


def installments_mark_overdue(*, cutoff: date, today: date, now, plans: tuple[int, int]) -> int:
    """Mark the unpaid installments of the plans ``plans`` (first and last id) due before
    ``cutoff`` OVERDUE since ``today``, with an ``installment.overdue`` event each, whatever
    the number of rows: one statement on PostgreSQL, an UPDATE … RETURNING and a bulk insert
    elsewhere. Runs in the sweep chunk's transaction, without the plans' locks."""
    marking = [Installment.Status.OVERDUE, today, now, Installment.Status.UPCOMING, cutoff, *plans]
    with connection.cursor() as cursor:
        if postgresql():
            give_up = now + timedelta(hours=settings.BNPL_WEBHOOK_RETRY_HOURS)
            event = [Event.Type.INSTALLMENT_OVERDUE, now, Event.Delivery.PENDING, now, give_up]
            cursor.execute(_MARK_OVERDUE_PG_SQL, [*marking, *event, *plans])
            marked = cursor.rowcount
            if marked:
                events_relay_after_commit()
            return marked
        cursor.execute(_MARK_OVERDUE_SQL, marking)
        marked = cursor.fetchall()
    # SQLite's RETURNING cannot see other tables: the plans are read afterwards.
    parties = {}
    plan_ids = sorted({row[1] for row in marked})
    for start in range(0, len(plan_ids), 10000):  # SQLite's limit on query parameters
        chunk = plan_ids[start : start + 10000]
        parties |= {
            pk: rest
            for pk, *rest in Plan.objects.filter(pk__in=chunk).values_list(
                "pk", "merchant_id", "merchant_reference", "currency"
            )
        }
    events = []
    for installment_id, plan_id, sequence, due, paid, due_date, status in marked:
        merchant_id, reference, currency = parties[plan_id]
        installment = Installment(
            pk=installment_id,
            sequence=sequence,
            amount_due=to_money(due),
            amount_paid=to_money(paid),
            due_date=date.fromisoformat(due_date) if isinstance(due_date, str) else due_date,  # SQLite: text
            status=status,
        )
        plan = Plan(pk=plan_id, merchant_reference=reference, currency=currency)
        events.append((merchant_id, Event.Type.INSTALLMENT_OVERDUE, installment_event_data(installment, plan)))
    events_record_many(events=events)
    return len(marked)
