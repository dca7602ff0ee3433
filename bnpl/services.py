"""Every change to plans, installments and late fees goes through here."""

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Exists, F, Max, Min, OuterRef, Sum
from django.utils import timezone

from accounts.models import User
from bnpl.errors import CreditLimitExceeded, DebtUserForbidden, LateFeeNotWaivable
from bnpl.models import Installment, LateFee, Plan, Reminder, SweepChunk, SweepRun
from bnpl.schedule import build_schedule, business_today
from bnpl.selectors import OPEN_STATUSES, customer_owed, plan_get_for_update, plan_installments_loaded
from core.money import ZERO, floor_money, to_money
from core.problems import FieldInvalid
from core.tasks import enqueue_many
from events.models import Event, Notification, generate_event_id
from events.notifications import notifications_queue, notifications_send
from events.services import (
    event_dispatch_after_commit,
    event_record,
    events_record_many,
    events_relay_after_commit,
)
from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME, MERCHANT_PAYABLE, ledger_account_ids
from ledger.models import JournalEntry
from ledger.services import Leg, ledger_post, ledger_post_many
from ledger.sql import ledger_post_ctes

logger = logging.getLogger(__name__)

# Keys for pg_try_advisory_xact_lock: one job of each kind at a time across all workers.
SWEEP_LOCK_KEY = 0x424E504C01
REMINDERS_LOCK_KEY = 0x424E504C02


def customer_outstanding(*, customer_id: int) -> Decimal:
    """What the customer still owes: unpaid installments of every plan plus late fees due."""
    return sum(customer_owed(customer_id=customer_id), ZERO)


def plan_parties_resolve(*, creator: User, user_id: str | None, merchant_id: str | None) -> tuple[User, User]:
    """Who the plan is for and who sold it, by the creator's role (DESIGN §5).

    A customer buys for itself, a merchant sells as itself, an operator names both.
    Raises FieldInvalid naming the field that is missing or wrong.
    """
    customer = _plan_party(creator, user_id, User.Role.CUSTOMER, "user_id", "A customer can only buy for itself.")
    merchant = _plan_party(
        creator, merchant_id, User.Role.MERCHANT, "merchant_id", "A merchant can only sell as itself."
    )
    return customer, merchant


# What plan creation uses of a party; the rest of the row (encrypted columns too) stays
# unread. These two statements run on every plan creation and are written out: the ORM
# spent more time composing each (about 0.5 ms) than PostgreSQL takes to answer it.
_PARTY_SQL = """
SELECT id, user_id, role, status, credit_limit FROM accounts_user
WHERE user_id = %s AND role = %s AND is_active
"""
_CUSTOMER_LOCK_SQL = "SELECT id, status, credit_limit FROM accounts_user WHERE id = %s"


def _plan_party(creator: User, given_id: str | None, role: str, field: str, not_yourself: str) -> User:
    """The party of ``role``: the creator itself when it has that role, else the active user named."""
    if creator.role == role:
        if given_id and given_id != creator.user_id:
            raise FieldInvalid(field, not_yourself)
        return creator
    if not given_id:
        raise FieldInvalid(field, "This field is required.")
    party = next(iter(User.objects.raw(_PARTY_SQL, [given_id, role])), None)
    if party is None:
        raise FieldInvalid(field, f"No active {role.lower()} has this user_id.")
    return party


def _customer_lock(customer_id: int) -> User:
    """The customer's status and credit limit, its row locked until the transaction ends
    (FOR NO KEY UPDATE: rows pointing at the customer are still checked without waiting)."""
    sql = _CUSTOMER_LOCK_SQL
    if connection.features.has_select_for_update:  # SQLite serialises writers by itself
        sql += " " + connection.ops.for_update_sql(no_key=True)
    return next(iter(User.objects.raw(sql, [customer_id])))


@transaction.atomic
def plan_create(
    *,
    customer: User,
    merchant: User,
    total_amount: Decimal,
    installment_count: int = 4,
    frequency: str = Plan.Frequency.MONTHLY,
    currency: str | None = None,
    merchant_reference: str = "",
    purchase_date: date | None = None,
) -> Plan:
    """Originate a plan: its installments by the split rule and its ledger entry, at once.
    The plan returned carries its parties and installments (no read needed to show it).

    Raises DebtUserForbidden (403), CreditLimitExceeded (422), FieldInvalid (400).
    """
    if total_amount < Decimal("0.01") * installment_count:
        raise FieldInvalid(
            "total_amount",
            f"Must be at least {Decimal('0.01') * installment_count} for {installment_count} installments.",
        )
    # Lock the customer: two plans created at once must not both fit under one limit. What it
    # owes is read after the lock is held, in a statement of its own: a subquery of the locking
    # statement would read the snapshot taken before the wait, missing the plan just committed.
    locked = _customer_lock(customer.pk)
    customer.status, customer.credit_limit = locked.status, locked.credit_limit
    if customer.status == User.Status.DEBT_USER:
        raise DebtUserForbidden()
    outstanding = customer_outstanding(customer_id=customer.pk)
    if outstanding + total_amount > customer.credit_limit:
        raise CreditLimitExceeded(
            credit_limit=str(customer.credit_limit),
            outstanding=str(outstanding),
            available=str(max(customer.credit_limit - outstanding, ZERO)),
        )
    currency = currency or settings.BNPL_DEFAULT_CURRENCY
    purchase_date = purchase_date or business_today()
    plan = Plan(
        customer=customer,
        merchant=merchant,
        total_amount=total_amount,
        currency=currency,
        installment_count=installment_count,
        frequency=frequency,
        merchant_reference=merchant_reference,
        purchase_date=purchase_date,
    )
    schedule = build_schedule(
        total=total_amount, count=installment_count, frequency=frequency, purchase_date=purchase_date
    )
    originate = _originate_pg if connection.vendor == "postgresql" else _originate_orm
    return plan_installments_loaded(plan, originate(plan, schedule))


def _originate_orm(plan: Plan, schedule: list[tuple[int, Decimal, date]]) -> list[Installment]:
    """Write a new plan, its installments, its origination entry and its ``plan.created``
    event through the ORM; returns the installments."""
    plan.save(force_insert=True)
    installments = Installment.objects.bulk_create(
        Installment(plan=plan, customer=plan.customer, sequence=sequence, amount_due=amount, due_date=due)
        for sequence, amount, due in schedule
    )
    ledger_post(
        kind=JournalEntry.Kind.ORIGINATION,
        plan_id=plan.pk,
        memo=f"Plan {plan.pk} originated",
        legs=origination_legs(plan),
    )
    # The merchant's webhook URL is read by event_record, not taken from ``plan.merchant``:
    # that row may be the requester's, kept for a few seconds by the authentication, and an
    # event recorded as having no endpoint is never delivered.
    event_record(merchant_id=plan.merchant_id, type=Event.Type.PLAN_CREATED, data=plan_event_data(plan, plan.customer))
    return installments


# The same rows as _originate_orm() in one PostgreSQL statement (a test holds the two equal;
# the entry and its postings are written by the ledger's SQL, ledger.sql):
# plan creation is the API's hottest write, and composing its six statements through the
# ORM cost more than PostgreSQL took to run them. The event's data is built in Python
# (plan_event_data) with the plan's id filled in here; its delivery status is decided from
# the merchant's row as committed, as event_record() decides it.
_ORIGINATE_PG_SQL = """
WITH plan AS (
  INSERT INTO bnpl_plan (customer_id, merchant_id, total_amount, currency, installment_count, frequency, status,
                         merchant_reference, purchase_date, created_at, updated_at)
  VALUES (%(customer)s, %(merchant)s, %(total)s, %(currency)s, %(count)s, %(frequency)s, %(plan_status)s,
          %(reference)s, %(purchase_date)s, %(now)s, %(now)s)
  RETURNING id
), installments AS (
  INSERT INTO bnpl_installment (plan_id, customer_id, sequence, amount_due, amount_paid, due_date, status,
                                created_at, updated_at)
  SELECT plan.id, %(customer)s, s.sequence, s.amount, 0, s.due_date, %(installment_status)s, %(now)s, %(now)s
  FROM plan, unnest(%(sequences)s::integer[], %(amounts)s::numeric[], %(due_dates)s::date[])
       AS s(sequence, amount, due_date)
  ORDER BY s.sequence
  RETURNING id, sequence
), entry AS (
  SELECT plan.id AS entry_key, %(entry_kind)s AS kind, 'Plan ' || plan.id || ' originated' AS memo,
         plan.id AS plan_id, %(now)s::timestamptz AS created_at
  FROM plan
), legs AS (
  SELECT plan.id AS entry_key, leg.account_id, leg.amount, %(currency)s::varchar AS currency, plan.id AS plan_id,
         leg.party_id, leg.leg_order
  FROM plan, (VALUES (%(receivable)s::bigint, %(total)s::numeric, %(customer)s::bigint, 1),
                     (%(payable)s::bigint, -%(total)s::numeric, %(merchant)s::bigint, 2))
       AS leg(account_id, amount, party_id, leg_order)
), {ledger_post}, event AS (
  INSERT INTO events_event (public_id, merchant_id, type, data, created_at, delivery_status, attempts,
                            next_attempt_at, give_up_at)
  SELECT %(event_id)s, m.id, %(event_type)s, %(event_data)s::jsonb || jsonb_build_object('plan_id', plan.id),
         %(now)s, CASE WHEN m.webhook_url <> '' THEN %(pending)s ELSE %(no_endpoint)s END, 0, %(now)s, %(give_up)s
  FROM plan, accounts_user m WHERE m.id = %(merchant)s
  RETURNING id, delivery_status
)
SELECT plan.id, (SELECT array_agg(id ORDER BY sequence) FROM installments), event.id, event.delivery_status
FROM plan, event
""".replace("{ledger_post}", ledger_post_ctes(entries="entry", legs="legs"))  # constants and the ledger's CTEs  # nosec B608


def _originate_pg(plan: Plan, schedule: list[tuple[int, Decimal, date]]) -> list[Installment]:
    """``_originate_orm`` in one statement; returns the installments."""
    now = timezone.now()
    accounts = ledger_account_ids()
    event_data = json.dumps(plan_event_data(plan, plan.customer), cls=DjangoJSONEncoder)
    with connection.cursor() as cursor:
        cursor.execute(
            _ORIGINATE_PG_SQL,
            {
                "customer": plan.customer_id,
                "merchant": plan.merchant_id,
                "total": plan.total_amount,
                "currency": plan.currency,
                "count": plan.installment_count,
                "frequency": plan.frequency,
                "plan_status": plan.status,
                "reference": plan.merchant_reference,
                "purchase_date": plan.purchase_date,
                "now": now,
                "sequences": [sequence for sequence, _, _ in schedule],
                "amounts": [amount for _, amount, _ in schedule],
                "due_dates": [due for _, _, due in schedule],
                "installment_status": Installment.Status.UPCOMING,
                "entry_kind": JournalEntry.Kind.ORIGINATION,
                "receivable": accounts[CUSTOMER_RECEIVABLE],
                "payable": accounts[MERCHANT_PAYABLE],
                "event_id": generate_event_id(),
                "event_type": Event.Type.PLAN_CREATED,
                "event_data": event_data,
                "pending": Event.Delivery.PENDING,
                "no_endpoint": Event.Delivery.NO_ENDPOINT,
                "give_up": now + timedelta(hours=settings.BNPL_WEBHOOK_RETRY_HOURS),
            },
        )
        plan_id, installment_ids, event_id, delivery = cursor.fetchone()
    plan.pk, plan.created_at, plan.updated_at = plan_id, now, now
    plan._state.adding, plan._state.db = False, connection.alias
    installments = []
    for pk, (sequence, amount, due) in zip(installment_ids, schedule, strict=True):
        installment = Installment(
            pk=pk,
            plan=plan,
            customer=plan.customer,
            sequence=sequence,
            amount_due=amount,
            due_date=due,
            created_at=now,
            updated_at=now,
        )
        installment._state.adding, installment._state.db = False, connection.alias
        installments.append(installment)
    if delivery == Event.Delivery.PENDING:
        event_dispatch_after_commit(event_id)
    return installments


def plan_event_data(plan: Plan, customer: User | None = None) -> dict:
    """What a merchant event says about a plan."""
    customer_id = (customer or User.objects.only("user_id").get(pk=plan.customer_id)).user_id
    return {
        "plan_id": plan.pk,
        "customer_id": customer_id,
        "merchant_reference": plan.merchant_reference,
        "total_amount": plan.total_amount,
        "currency": plan.currency,
        "installment_count": plan.installment_count,
        "frequency": plan.frequency,
        "status": plan.status,
    }


def installment_event_data(installment: Installment, plan: Plan) -> dict:
    """What a merchant event says about an installment."""
    return {
        "installment_id": installment.pk,
        "plan_id": plan.pk,
        "merchant_reference": plan.merchant_reference,
        "sequence": installment.sequence,
        "amount_due": installment.amount_due,
        "amount_paid": installment.amount_paid,
        "currency": plan.currency,
        "due_date": installment.due_date,
        "status": installment.status,
    }


def origination_legs(plan: Plan) -> list[Leg]:
    """The customer owes the plan total; the platform owes it to the merchant."""
    return [
        Leg(CUSTOMER_RECEIVABLE, plan.total_amount, plan.currency, plan_id=plan.pk, party_id=plan.customer_id),
        Leg(MERCHANT_PAYABLE, -plan.total_amount, plan.currency, plan_id=plan.pk, party_id=plan.merchant_id),
    ]


def plan_close_if_settled(plan: Plan) -> None:
    """Close a plan with nothing left to pay: CANCELLED when nothing was ever paid on it
    (refunded in full first), else COMPLETED. Call under the plan's lock. A plan already
    closed stays as it is (a refund on a completed plan does not complete it twice)."""
    if plan.status != Plan.Status.ACTIVE:
        return
    if plan.installments.filter(status__in=OPEN_STATUSES).exists():
        return
    if plan.late_fees.filter(status=LateFee.Status.DUE).exists():
        return
    never_paid = not plan.installments.filter(amount_paid__gt=0).exists()
    plan.status = Plan.Status.CANCELLED if never_paid else Plan.Status.COMPLETED
    plan.save(update_fields=["status", "updated_at"])
    if plan.status == Plan.Status.COMPLETED:
        event_record(merchant_id=plan.merchant_id, type=Event.Type.PLAN_COMPLETED, data=plan_event_data(plan))


def customer_restore_if_clear(*, customer_id: int) -> None:
    """A DEBT_USER with nothing overdue any more is NORMAL again at once."""
    overdue = Installment.objects.filter(customer_id=customer_id, status=Installment.Status.OVERDUE)
    User.objects.filter(pk=customer_id, status=User.Status.DEBT_USER).exclude(Exists(overdue)).update(
        status=User.Status.NORMAL
    )


# --- The overdue sweep ---------------------------------------------------------------------


def _try_lock(key: int) -> bool:
    """Take a transaction-scoped advisory lock on PostgreSQL; False if another holder has it.

    SQLite serialises writers by itself, so there it always succeeds.
    """
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
        return bool(cursor.fetchone()[0])


def overdue_sweep(
    *, today: date | None = None, late_fees: bool | None = None, fan_out: bool = False, chunk_plans: int | None = None
) -> SweepRun:
    """Mark past-due installments OVERDUE and their customers DEBT_USER; charge late fees.
    Customers left with nothing overdue are set back to NORMAL.

    The plans are split into id ranges of ``chunk_plans`` (``BNPL_SWEEP_CHUNK_PLANS``), each
    swept set-based in its own transaction (a fixed number of queries whatever its rows).
    With ``fan_out`` the chunks are published to the workers as a group of tasks, so more
    workers finish sooner, and the run is returned at once (``finished_at`` empty); after
    the last chunk the customers are updated and the run is closed. Otherwise, or when the
    broker cannot be reached, the chunks run here, one after the other, and the closed run
    is returned.

    One run at a time, and nothing done twice: while a run is open (started less than
    ``BNPL_SWEEP_STALE_MINUTES`` ago and not closed) a sweep resumes it, sending its chunks
    not yet done again, instead of starting another; a chunk task that was lost or failed
    is so taken up by the next sweep. A sweep that finds another one starting records a skip.
    """
    from bnpl.tasks import sweep_chunk_task

    started_at = timezone.now()
    with transaction.atomic():
        if not _try_lock(SWEEP_LOCK_KEY):
            logger.info("Overdue sweep skipped: another sweep is starting")
            return SweepRun.objects.create(
                business_date=today or business_today(), started_at=started_at, finished_at=started_at, skipped=True
            )
        run = _sweep_open(started_at) or _sweep_start(
            today=today or business_today(),
            late_fees=settings.BNPL_LATE_FEES_ENABLED if late_fees is None else late_fees,
            size=chunk_plans or settings.BNPL_SWEEP_CHUNK_PLANS,
            started_at=started_at,
        )
        chunks = list(run.chunks.filter(done_at__isnull=True).values_list("pk", flat=True))
    if not chunks:
        _sweep_close(run.pk)  # no plans, or every chunk done and the closing lost
    elif not (fan_out and enqueue_many(sweep_chunk_task, [(chunk,) for chunk in chunks])):
        for chunk in chunks:
            sweep_chunk(chunk_id=chunk)
    run.refresh_from_db()
    return run


def _sweep_open(now) -> SweepRun | None:
    """The run still open, if it started recently (a stale one is left, and the work redone)."""
    since = now - timedelta(minutes=settings.BNPL_SWEEP_STALE_MINUTES)
    return SweepRun.objects.filter(skipped=False, finished_at__isnull=True, started_at__gte=since).first()


def _sweep_start(*, today: date, late_fees: bool, size: int, started_at) -> SweepRun:
    """A new run with its chunks: every plan, in id ranges of ``size``. Customers in debt
    with nothing overdue are restored first: before the chunks mark this run's debtors, so
    only the customers already in debt are looked at (in the usual run, few)."""
    run = SweepRun.objects.create(
        business_date=today,
        started_at=started_at,
        late_fees=late_fees,
        customers_restored=_customers_restore(started_at),
    )
    bounds = Plan.objects.aggregate(first=Min("id"), last=Max("id"))
    firsts = range(bounds["first"], bounds["last"] + 1, size) if bounds["first"] is not None else ()
    SweepChunk.objects.bulk_create(
        SweepChunk(run=run, first_plan_id=first, last_plan_id=min(first + size - 1, bounds["last"])) for first in firsts
    )
    run.chunks_total = len(firsts)
    run.save(update_fields=["chunks_total"])
    return run


def sweep_chunk(*, chunk_id: int) -> bool:
    """Sweep one chunk's plans: mark their past-due installments OVERDUE (with an event each)
    and charge their late fees, in one transaction; after the run's last chunk, update the
    customers and close the run. False when the chunk was done already, or is being done by
    another worker (a redelivered task does nothing twice)."""
    with transaction.atomic():
        # of=("self",): lock the chunk only; its run's row is shared by every chunk.
        chunk = (
            SweepChunk.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=chunk_id, done_at__isnull=True)
            .select_related("run")
            .first()
        )
        if chunk is None:
            return False
        run, now = chunk.run, timezone.now()
        plans = (chunk.first_plan_id, chunk.last_plan_id)
        cutoff = run.business_date - timedelta(days=settings.BNPL_GRACE_DAYS)
        chunk.installments_marked_overdue = _mark_overdue(cutoff=cutoff, today=run.business_date, now=now, plans=plans)
        chunk.late_fees_created = (
            late_fees_charge(
                today=run.business_date,
                plans=plans,
                memo=f"Late fees of sweep run {run.pk}, plans {plans[0]}-{plans[1]}",
            )
            if run.late_fees
            else 0
        )
        marked_debt = _customers_mark_debt(plans=plans, now=now) if chunk.installments_marked_overdue else 0
        chunk.done_at = now
        chunk.save(update_fields=["installments_marked_overdue", "late_fees_created", "done_at"])
        # The run's row is the meeting point: chunks ending together take turns here, so
        # exactly one of them sees every other chunk done.
        run = SweepRun.objects.select_for_update().get(pk=run.pk)
        run.installments_marked_overdue += chunk.installments_marked_overdue
        run.late_fees_created += chunk.late_fees_created
        run.customers_marked_debt += marked_debt
        run.save(update_fields=["installments_marked_overdue", "late_fees_created", "customers_marked_debt"])
        last = not run.chunks.filter(done_at__isnull=True).exists()
    if last:
        _sweep_close(run.pk)
    return True


def _customers_mark_debt(*, plans: tuple[int, int], now) -> int:
    """The customers of the plans ``plans`` (first and last id) with something overdue become
    DEBT_USER: each chunk its own, in its transaction, so more workers finish sooner.

    A customer whose row another transaction holds (a payment, or a chunk marking it too) is
    skipped rather than waited for: a chunk never waits on a customer while it holds its
    installments, so it cannot close a deadlock; the run's close marks any one left.
    """
    overdue = Installment.objects.filter(
        status=Installment.Status.OVERDUE, plan_id__gte=plans[0], plan_id__lte=plans[1]
    ).values("customer_id")
    free = (
        User.objects.select_for_update(no_key=True, skip_locked=True)
        .filter(status=User.Status.NORMAL, pk__in=overdue)
        .values_list("pk", flat=True)
    )
    return User.objects.filter(pk__in=list(free)).update(status=User.Status.DEBT_USER, updated_at=now)


def _sweep_close(run_id: int) -> None:
    """After the run's last chunk: update the customers and close the run, once."""
    with transaction.atomic():
        run = SweepRun.objects.select_for_update().get(pk=run_id)
        if run.finished_at is None and not run.chunks.filter(done_at__isnull=True).exists():
            _sweep_finish(run)


def _customers_restore(now) -> int:
    """Customers in debt with nothing overdue any more are NORMAL again (a payment restores
    its customer at once; this catches the rest, a refund's cancellation say)."""
    has_overdue = Exists(Installment.objects.filter(status=Installment.Status.OVERDUE, customer_id=OuterRef("pk")))
    return (
        User.objects.filter(status=User.Status.DEBT_USER)
        .exclude(has_overdue)
        .update(status=User.Status.NORMAL, updated_at=now)
    )


def _sweep_finish(run: SweepRun) -> None:
    """Customers with something overdue become DEBT_USER; the run is closed. Call with the
    run's row locked, after its last chunk."""
    now = timezone.now()
    # The chunks marked their own customers; this catches any other one with something
    # overdue (set back by hand, or skipped by a chunk while a payment held it).
    overdue_customers = Installment.objects.filter(status=Installment.Status.OVERDUE).values("customer_id")
    run.customers_marked_debt += User.objects.filter(status=User.Status.NORMAL, pk__in=overdue_customers).update(
        status=User.Status.DEBT_USER, updated_at=now
    )
    run.finished_at = now
    run.duration_ms = int((now - run.started_at).total_seconds() * 1000)
    run.save(update_fields=["customers_marked_debt", "finished_at", "duration_ms"])
    logger.info(
        "Overdue sweep done",
        extra={
            "marked_overdue": run.installments_marked_overdue,
            "marked_debt": run.customers_marked_debt,
            "restored": run.customers_restored,
            "late_fees": run.late_fees_created,
            "chunks": run.chunks_total,
        },
    )


_MARK_OVERDUE_SQL = """
    UPDATE bnpl_installment SET status = 'OVERDUE', overdue_since = %s, updated_at = %s
    WHERE status = 'UPCOMING' AND due_date < %s AND amount_paid < amount_due AND plan_id BETWEEN %s AND %s
    RETURNING id, plan_id, sequence, amount_due, amount_paid, due_date
"""
# On PostgreSQL the marking and the events are one statement: the events are built from
# the rows the UPDATE returns, in SQL, as installment_event_data() builds them in Python
# (DjangoJSONEncoder: decimals and dates as text). No row passes through Python, which is
# what keeps a sweep of 100,000 newly overdue installments within a few times one UPDATE.
_MARK_OVERDUE_PG_SQL = f"""
    WITH marked AS ({_MARK_OVERDUE_SQL})
    INSERT INTO events_event (public_id, merchant_id, type, data, created_at, delivery_status, attempts,
                              next_attempt_at, give_up_at)
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), p.merchant_id, %s,
           jsonb_build_object(
             'installment_id', m.id, 'plan_id', m.plan_id, 'merchant_reference', p.merchant_reference,
             'sequence', m.sequence, 'amount_due', m.amount_due::text, 'amount_paid', m.amount_paid::text,
             'currency', p.currency, 'due_date', to_char(m.due_date, 'YYYY-MM-DD'), 'status', 'OVERDUE'),
           %s, 'PENDING', 0, %s, %s
    -- The chunk's range again, on the plans: without it the join read every plan there is.
    FROM marked m JOIN bnpl_plan p ON p.id = m.plan_id AND p.id BETWEEN %s AND %s
    ORDER BY m.id
"""  # noqa: S608 - composed of constants only  # nosec B608


def _mark_overdue(*, cutoff: date, today: date, now, plans: tuple[int, int]) -> int:
    """Mark the past-due installments of the plans ``plans`` (first and last id) OVERDUE and
    record an ``installment.overdue`` event for each, whatever the number of rows: one
    statement on PostgreSQL, an UPDATE … RETURNING and a bulk insert elsewhere."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            give_up = now + timedelta(hours=settings.BNPL_WEBHOOK_RETRY_HOURS)
            cursor.execute(
                _MARK_OVERDUE_PG_SQL,
                [today, now, cutoff, *plans, Event.Type.INSTALLMENT_OVERDUE, now, now, give_up, *plans],
            )
            marked = cursor.rowcount
            if marked:
                events_relay_after_commit()
            return marked
        cursor.execute(_MARK_OVERDUE_SQL, [today, now, cutoff, *plans])
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
    for installment_id, plan_id, sequence, due, paid, due_date, *_ in marked:
        merchant_id, reference, currency = parties[plan_id]
        installment = Installment(
            pk=installment_id,
            sequence=sequence,
            amount_due=to_money(due),
            amount_paid=to_money(paid),
            due_date=date.fromisoformat(due_date) if isinstance(due_date, str) else due_date,  # SQLite: text
            status=Installment.Status.OVERDUE,
        )
        plan = Plan(pk=plan_id, merchant_reference=reference, currency=currency)
        events.append((merchant_id, Event.Type.INSTALLMENT_OVERDUE, installment_event_data(installment, plan)))
    events_record_many(events=events)
    return len(marked)


@dataclass(frozen=True)
class _FeeCandidate:
    installment_id: int
    plan_id: int
    customer_id: int
    currency: str
    total_amount: Decimal
    kind: str


def late_fee_cap(total_amount: Decimal) -> Decimal:
    """The most a plan may be charged in late fees: min(percent of its total, fixed amount)."""
    share = floor_money(total_amount * settings.BNPL_LATE_FEE_CAP_PERCENT / 100)
    return min(share, settings.BNPL_LATE_FEE_CAP_AMOUNT)


# The late fees of a chunk, their ledger entry and postings in one PostgreSQL statement.
# A plan's candidates are priced in the order late_fees_charge() takes them (first fees,
# then second fees, each by sequence): with ``room`` what the cap still allows and ``upto``
# the running sum of prices, a fee is what its price adds to min(room, upto), so the fee
# that meets the cap is cut to fit and those after it are not charged. The fees of a run
# are one journal entry per currency (late_fees_charge() says why), posted by the ledger's
# own SQL (ledger.sql) from the rows of this statement; a test holds it equal to the ORM path.
_LATE_FEES_PG_SQL = """
WITH overdue AS MATERIALIZED (
  SELECT i.id, i.plan_id, i.sequence, i.overdue_since, p.customer_id, p.currency, p.total_amount
  FROM bnpl_installment i JOIN bnpl_plan p ON p.id = i.plan_id
  WHERE i.status = 'OVERDUE' AND i.plan_id BETWEEN %(first)s AND %(last)s
), candidates AS MATERIALIZED (
  SELECT o.*, 'FIRST' AS kind, %(first_fee)s::numeric AS price, 0 AS kind_order FROM overdue o
  WHERE NOT EXISTS (SELECT 1 FROM bnpl_latefee f WHERE f.installment_id = o.id AND f.kind = 'FIRST')
  UNION ALL
  SELECT o.*, 'SECOND', %(second_fee)s::numeric, 1 FROM overdue o
  WHERE o.overdue_since <= %(second_day)s
    AND EXISTS (SELECT 1 FROM bnpl_latefee f WHERE f.installment_id = o.id AND f.kind = 'FIRST')
    AND NOT EXISTS (SELECT 1 FROM bnpl_latefee f WHERE f.installment_id = o.id AND f.kind = 'SECOND')
), used AS (
  SELECT plan_id, SUM(amount) AS amount FROM bnpl_latefee
  WHERE status <> 'WAIVED' AND plan_id BETWEEN %(first)s AND %(last)s GROUP BY plan_id
), priced AS (
  SELECT c.*,
    GREATEST(LEAST(%(cap_amount)s::numeric, floor(c.total_amount * %(cap_percent)s::numeric) / 100)
             - COALESCE(u.amount, 0), 0) AS room,
    SUM(c.price) OVER (PARTITION BY c.plan_id ORDER BY c.kind_order, c.sequence ROWS UNBOUNDED PRECEDING) AS upto
  FROM candidates c LEFT JOIN used u ON u.plan_id = c.plan_id
), charged AS MATERIALIZED (
  SELECT id AS installment_id, plan_id, sequence, kind, kind_order, customer_id, currency,
         LEAST(room, upto) - LEAST(room, upto - price) AS amount
  FROM priced WHERE LEAST(room, upto) - LEAST(room, upto - price) > 0
), currencies AS MATERIALIZED (
  SELECT currency AS entry_key, %(entry_kind)s AS kind, %(memo)s || ': ' || count(*) || ' in ' || currency AS memo,
         NULL::bigint AS plan_id, %(now)s::timestamptz AS created_at, SUM(amount) AS amount
  FROM charged GROUP BY currency
), fees AS (
  INSERT INTO bnpl_latefee (installment_id, plan_id, kind, amount, amount_paid, status, waived_reason, created_at)
  SELECT installment_id, plan_id, kind, amount, 0, 'DUE', '', %(now)s FROM charged
  ORDER BY plan_id, kind_order, sequence
), legs AS (
  SELECT currency AS entry_key, %(receivable)s::bigint AS account_id, amount, currency, plan_id,
         customer_id AS party_id, row_number() OVER (ORDER BY plan_id, kind_order, sequence) AS leg_order
  FROM charged
  UNION ALL
  SELECT entry_key, %(fee_income)s::bigint, -amount, entry_key, NULL, NULL, 9223372036854775807 FROM currencies
), {ledger_post}
SELECT count(*) FROM charged
""".replace("{ledger_post}", ledger_post_ctes(entries="currencies", legs="legs"))  # constants and the ledger's CTEs  # nosec B608


def late_fees_charge(*, today: date, plans: tuple[int, int] | None = None, memo: str = "Late fees") -> int:
    """Charge the first fee of newly overdue installments and the second of those still
    unpaid N days on, each at most once, within the plan's cap; post them to the ledger.
    ``plans`` (first and last id) limits it to a sweep chunk's plans. Returns the fees charged.

    The fees charged together are one journal entry per currency (``memo`` and the count):
    a line owed by each fee's customer on its plan, and one line of fee income. Income is
    not followed per plan, and an entry per fee cost the sweep an entry and a posting more
    per fee, with their checks, for nothing the books use.

    Runs inside a sweep chunk's transaction. A fixed number of queries: on PostgreSQL one
    statement, no row passing through Python.
    """
    if connection.vendor == "postgresql" and plans is not None:
        return _late_fees_charge_pg(today=today, plans=plans, memo=memo)
    fields = ("id", "plan_id", "plan__customer_id", "plan__currency", "plan__total_amount")
    overdue = Installment.objects.filter(status=Installment.Status.OVERDUE)
    if plans is not None:
        overdue = overdue.filter(plan__gte=plans[0], plan__lte=plans[1])
    firsts = overdue.exclude(late_fees__kind=LateFee.Kind.FIRST).values_list(*fields)
    second_day = today - timedelta(days=settings.BNPL_LATE_FEE_SECOND_AFTER_DAYS)
    seconds = (
        overdue.filter(overdue_since__lte=second_day, late_fees__kind=LateFee.Kind.FIRST)
        .exclude(late_fees__kind=LateFee.Kind.SECOND)
        .values_list(*fields)
    )
    candidates = [_FeeCandidate(*row, kind=LateFee.Kind.FIRST) for row in firsts.order_by("plan_id", "sequence")]
    candidates += [_FeeCandidate(*row, kind=LateFee.Kind.SECOND) for row in seconds.order_by("plan_id", "sequence")]
    if not candidates:
        return 0
    charged = dict(
        LateFee.objects.filter(plan_id__in={c.plan_id for c in candidates})
        .exclude(status=LateFee.Status.WAIVED)
        .values("plan_id")
        .annotate(total=Sum("amount"))
        .values_list("plan_id", "total")
    )
    price = {LateFee.Kind.FIRST: settings.BNPL_LATE_FEE_FIRST, LateFee.Kind.SECOND: settings.BNPL_LATE_FEE_SECOND}
    fees, legs = [], defaultdict(list)
    for candidate in sorted(candidates, key=lambda c: (c.plan_id, c.kind != LateFee.Kind.FIRST)):
        used = charged.get(candidate.plan_id, ZERO)
        amount = min(price[candidate.kind], late_fee_cap(candidate.total_amount) - used)
        if amount <= 0:
            continue
        charged[candidate.plan_id] = used + amount
        fees.append(
            LateFee(
                installment_id=candidate.installment_id,
                plan_id=candidate.plan_id,
                kind=candidate.kind,
                amount=amount,
            )
        )
        legs[candidate.currency].append(
            Leg(CUSTOMER_RECEIVABLE, amount, candidate.currency, candidate.plan_id, candidate.customer_id)
        )
    LateFee.objects.bulk_create(fees)
    ledger_post_many(
        kind=JournalEntry.Kind.LATE_FEE,
        entries=[
            (
                None,
                f"{memo}: {len(owed)} in {currency}",
                [*owed, Leg(FEE_INCOME, -sum((leg.amount for leg in owed), ZERO), currency)],
            )
            for currency, owed in sorted(legs.items())
        ],
    )
    return len(fees)


def _late_fees_charge_pg(*, today: date, plans: tuple[int, int], memo: str) -> int:
    accounts = ledger_account_ids()
    with connection.cursor() as cursor:
        cursor.execute(
            _LATE_FEES_PG_SQL,
            {
                "first": plans[0],
                "last": plans[1],
                "first_fee": settings.BNPL_LATE_FEE_FIRST,
                "second_fee": settings.BNPL_LATE_FEE_SECOND,
                "second_day": today - timedelta(days=settings.BNPL_LATE_FEE_SECOND_AFTER_DAYS),
                "cap_amount": settings.BNPL_LATE_FEE_CAP_AMOUNT,
                "cap_percent": settings.BNPL_LATE_FEE_CAP_PERCENT,
                "now": timezone.now(),
                "entry_kind": JournalEntry.Kind.LATE_FEE,
                "memo": memo,
                "receivable": accounts[CUSTOMER_RECEIVABLE],
                "fee_income": accounts[FEE_INCOME],
            },
        )
        return cursor.fetchone()[0]


@transaction.atomic
def late_fee_waive(*, fee_id: int, operator: User, reason: str) -> LateFee:
    """Waive what is still due of a late fee, recording who and why; reverses it in the ledger.

    Raises LateFee.DoesNotExist, LateFeeNotWaivable (409), FieldInvalid (400, no reason).
    """
    reason = (reason or "").strip()
    if not reason:
        raise FieldInvalid("reason", "Say why the fee is waived.")
    plan = plan_get_for_update(late_fees__id=fee_id)
    fee = LateFee.objects.get(pk=fee_id)  # re-read under the plan's lock
    if fee.status != LateFee.Status.DUE:
        raise LateFeeNotWaivable()
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


# --- Reminders -----------------------------------------------------------------------------


def reminders_send(*, today: date | None = None) -> dict[str, int]:
    """Send due-soon and overdue reminders by email and SMS, each at most once per
    installment and kind.

    The reminder rows and their notifications are committed before any message leaves, so
    a crash or a second run never sends one twice (a failed send is recorded, not retried).
    ``failed`` counts the reminders one of whose messages could not be sent.
    """
    today = today or business_today()
    open_installments = Installment.objects.filter(amount_paid__lt=F("amount_due")).select_related("plan__customer")
    with transaction.atomic():
        if not _try_lock(REMINDERS_LOCK_KEY):
            return {"due_soon": 0, "overdue": 0, "failed": 0}
        due_soon = list(
            open_installments.filter(
                status=Installment.Status.UPCOMING,
                due_date__gt=today,
                due_date__lte=today + timedelta(days=settings.BNPL_DUE_SOON_DAYS),
            ).exclude(reminders__kind=Reminder.Kind.DUE_SOON)
        )
        overdue = list(
            open_installments.filter(status=Installment.Status.OVERDUE).exclude(reminders__kind=Reminder.Kind.OVERDUE)
        )
        records = [Reminder(installment=i, kind=Reminder.Kind.DUE_SOON) for i in due_soon]
        records += [Reminder(installment=i, kind=Reminder.Kind.OVERDUE) for i in overdue]
        Reminder.objects.bulk_create(records)
        # Sent below, by this task, rather than queued once more.
        notifications_queue(items=[_reminder_message(r) for r in records], send=False)
    causes = [(_notification_kind(r), _reminder_cause(r)) for r in records]
    outcome = notifications_send(causes=causes) if records else {}
    # FAILED when a message could not be sent, or none could be (no email, no phone).
    failed = [
        r.pk
        for r, cause in zip(records, causes, strict=True)
        if cause in outcome.get("failed_causes", set()) or cause not in outcome.get("sent_causes", set())
    ]
    if failed:
        Reminder.objects.filter(pk__in=failed).update(outcome=Reminder.Outcome.FAILED)
    return {"due_soon": len(due_soon), "overdue": len(overdue), "failed": len(failed)}


def _reminder_cause(reminder: Reminder) -> str:
    return f"installment:{reminder.installment_id}"


def _reminder_message(reminder: Reminder) -> tuple[int, str, str, str, str]:
    installment = reminder.installment
    customer = installment.plan.customer
    amount = f"{installment.amount_remaining} {installment.plan.currency}"
    name = customer.full_name or customer.username
    if reminder.kind == Reminder.Kind.DUE_SOON:
        subject = f"Installment {installment.sequence} of plan #{installment.plan_id} is due on {installment.due_date}"
        body = f"Hello {name},\n\n{amount} is due on {installment.due_date}."
    else:
        subject = f"Installment {installment.sequence} of plan #{installment.plan_id} is overdue"
        body = (
            f"Hello {name},\n\n{amount} was due on {installment.due_date} "
            "and is now overdue. Please pay it to keep your account in good standing."
        )
    return customer.pk, _notification_kind(reminder), _reminder_cause(reminder), subject, body


def _notification_kind(reminder: Reminder) -> str:
    return Notification.Kind.DUE_SOON if reminder.kind == Reminder.Kind.DUE_SOON else Notification.Kind.OVERDUE
