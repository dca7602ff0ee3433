"""Every change to plans, installments and late fees goes through here."""

import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import DecimalField, Exists, ExpressionWrapper, F, OuterRef, Sum
from django.utils import timezone

from accounts.models import User
from bnpl.errors import CreditLimitExceeded, DebtUserForbidden, LateFeeNotWaivable
from bnpl.models import Installment, LateFee, Plan, Reminder, SweepRun
from bnpl.schedule import build_schedule, business_today
from bnpl.selectors import OPEN_STATUSES, customer_owed, plan_get_for_update, plan_installments_loaded
from config.money import ZERO, floor_money, to_money
from config.problems import FieldInvalid
from events.models import Event, Notification
from events.notifications import notifications_queue, notifications_send
from events.services import event_record, events_record_many
from payments.ledger import CUSTOMER_RECEIVABLE, FEE_INCOME, MERCHANT_PAYABLE, Leg, ledger_post, ledger_post_many
from payments.models import JournalEntry

logger = logging.getLogger(__name__)


_MONEY = DecimalField(max_digits=14, decimal_places=2)
# Keys for pg_try_advisory_xact_lock: one job of each kind at a time across all workers.
SWEEP_LOCK_KEY = 0x424E504C01
REMINDERS_LOCK_KEY = 0x424E504C02


def _remaining():
    return ExpressionWrapper(F("amount_due") - F("amount_paid"), output_field=_MONEY)


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


def _plan_party(creator: User, given_id: str | None, role: str, field: str, not_yourself: str) -> User:
    """The party of ``role``: the creator itself when it has that role, else the active user named."""
    if creator.role == role:
        if given_id and given_id != creator.user_id:
            raise FieldInvalid(field, not_yourself)
        return creator
    if not given_id:
        raise FieldInvalid(field, "This field is required.")
    # What plan creation uses of a party; the rest of the row (encrypted columns too) stays unread.
    party = (
        User.objects.filter(user_id=given_id, role=role, is_active=True)
        .only("id", "user_id", "role", "status", "credit_limit", "webhook_url")
        .first()
    )
    if party is None:
        raise FieldInvalid(field, f"No active {role.lower()} has this user_id.")
    return party


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
    customer.status, customer.credit_limit = (
        User.objects.select_for_update().filter(pk=customer.pk).values_list("status", "credit_limit").get()
    )
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
    plan = Plan.objects.create(
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
    installments = Installment.objects.bulk_create(
        Installment(plan=plan, customer=customer, sequence=sequence, amount_due=amount, due_date=due)
        for sequence, amount, due in schedule
    )
    plan_installments_loaded(plan, installments)
    ledger_post(
        kind=JournalEntry.Kind.ORIGINATION,
        plan_id=plan.pk,
        memo=f"Plan {plan.pk} originated",
        legs=origination_legs(plan),
    )
    event_record(
        merchant_id=merchant.pk,
        type=Event.Type.PLAN_CREATED,
        data=plan_event_data(plan, customer),
        webhook_url=merchant.webhook_url,
    )
    return plan


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


def overdue_sweep(*, today: date | None = None, late_fees: bool | None = None) -> SweepRun:
    """Mark past-due installments OVERDUE and their customers DEBT_USER; charge late fees.

    Set-based: a fixed number of queries whatever the number of rows. Idempotent, and safe
    when two run at once (the second finds the advisory lock taken and records a skip).
    Customers left with nothing overdue are set back to NORMAL.
    """
    today = today or business_today()
    late_fees = settings.BNPL_LATE_FEES_ENABLED if late_fees is None else late_fees
    cutoff = today - timedelta(days=settings.BNPL_GRACE_DAYS)
    started_at, started = timezone.now(), time.perf_counter()
    with transaction.atomic():
        if not _try_lock(SWEEP_LOCK_KEY):
            logger.info("Overdue sweep skipped: another sweep holds the lock")
            return SweepRun.objects.create(business_date=today, started_at=started_at, skipped=True)
        marked = _mark_overdue(cutoff=cutoff, today=today, now=started_at)
        overdue_customers = Installment.objects.filter(status=Installment.Status.OVERDUE).values("customer_id")
        # Restore before marking: only the customers already in debt are looked at, so the
        # usual run (few of them) never scans the overdue set twice.
        has_overdue = Exists(
            Installment.objects.filter(status=Installment.Status.OVERDUE, plan__customer_id=OuterRef("pk"))
        )
        restored = (
            User.objects.filter(status=User.Status.DEBT_USER)
            .exclude(has_overdue)
            .update(status=User.Status.NORMAL, updated_at=started_at)
        )
        debt = User.objects.filter(status=User.Status.NORMAL, pk__in=overdue_customers).update(
            status=User.Status.DEBT_USER, updated_at=started_at
        )
        fees = late_fees_charge(today=today) if late_fees else 0
        run = SweepRun.objects.create(
            business_date=today,
            started_at=started_at,
            installments_marked_overdue=marked,
            customers_marked_debt=debt,
            customers_restored=restored,
            late_fees_created=fees,
            duration_ms=int((time.perf_counter() - started) * 1000),
        )
    logger.info(
        "Overdue sweep done",
        extra={"marked_overdue": marked, "marked_debt": debt, "restored": restored, "late_fees": fees},
    )
    return run


_MARK_OVERDUE_SQL = """
    UPDATE bnpl_installment SET status = 'OVERDUE', overdue_since = %s, updated_at = %s
    WHERE status = 'UPCOMING' AND due_date < %s AND amount_paid < amount_due
    RETURNING id, plan_id, sequence, amount_due, amount_paid, due_date
"""
# PostgreSQL joins the plans in the same statement; SQLite's RETURNING cannot see other
# tables, so there the plans are read afterwards.
_MARK_OVERDUE_PG_SQL = f"""
    WITH marked AS ({_MARK_OVERDUE_SQL})
    SELECT marked.id, marked.plan_id, marked.sequence, marked.amount_due, marked.amount_paid, marked.due_date,
      bnpl_plan.merchant_id, bnpl_plan.merchant_reference, bnpl_plan.currency
    FROM marked JOIN bnpl_plan ON bnpl_plan.id = marked.plan_id
"""  # noqa: S608 - composed of constants only


def _mark_overdue(*, cutoff: date, today: date, now) -> int:
    """Mark past-due installments OVERDUE and record an ``installment.overdue`` event for each:
    one UPDATE … RETURNING and one bulk insert, whatever the number of rows."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_MARK_OVERDUE_PG_SQL, [today, now, cutoff])
            rows = cursor.fetchall()
        else:
            cursor.execute(_MARK_OVERDUE_SQL, [today, now, cutoff])
            marked = cursor.fetchall()
            plans = {}
            plan_ids = sorted({row[1] for row in marked})
            for start in range(0, len(plan_ids), 10000):  # SQLite's limit on query parameters
                chunk = plan_ids[start : start + 10000]
                plans |= {
                    pk: rest
                    for pk, *rest in Plan.objects.filter(pk__in=chunk).values_list(
                        "pk", "merchant_id", "merchant_reference", "currency"
                    )
                }
            rows = [(*row, *plans[row[1]]) for row in marked]
    events = []
    for installment_id, plan_id, sequence, due, paid, due_date, merchant_id, reference, currency in rows:
        installment = Installment(
            pk=installment_id,
            sequence=sequence,
            amount_due=to_money(due),
            amount_paid=to_money(paid),
            # SQLite hands dates back as text.
            due_date=date.fromisoformat(due_date) if isinstance(due_date, str) else due_date,
            status=Installment.Status.OVERDUE,
        )
        plan = Plan(pk=plan_id, merchant_reference=reference, currency=currency)
        events.append((merchant_id, Event.Type.INSTALLMENT_OVERDUE, installment_event_data(installment, plan)))
    events_record_many(events=events)
    return len(rows)


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


def late_fees_charge(*, today: date) -> int:
    """Charge the first fee of newly overdue installments and the second of those still
    unpaid N days on, each at most once, within the plan's cap; post them to the ledger.

    Runs inside the sweep's transaction and lock. A fixed number of queries.
    """
    fields = ("id", "plan_id", "plan__customer_id", "plan__currency", "plan__total_amount")
    overdue = Installment.objects.filter(status=Installment.Status.OVERDUE)
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
    fees, entries = [], []
    for candidate in candidates:
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
        entries.append(
            (
                candidate.plan_id,
                f"Late fee ({candidate.kind.lower()}) on installment {candidate.installment_id}",
                [
                    Leg(CUSTOMER_RECEIVABLE, amount, candidate.currency, candidate.plan_id, candidate.customer_id),
                    Leg(FEE_INCOME, -amount, candidate.currency, candidate.plan_id, candidate.customer_id),
                ],
            )
        )
    LateFee.objects.bulk_create(fees)
    ledger_post_many(kind=JournalEntry.Kind.LATE_FEE, entries=entries)
    return len(fees)


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
