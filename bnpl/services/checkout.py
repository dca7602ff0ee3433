"""A plan before it is owed: the merchant's offer, the customer's confirmation or refusal,
the merchant's capture or void of an authorization, and the expiry of both (DESIGN §6).

Nothing here is owed or posted until the plan becomes ACTIVE (``origination.plan_activate``):
an open offer or authorization only reserves its amount against the customer's credit limit,
which ``bnpl.selectors.credit_positions`` counts from the plans' status.
"""

import json
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import User
from accounts.pricing import MerchantPricing, merchant_pricing
from bnpl.errors import (
    CaptureExceedsAuthorized,
    CreditDeclined,
    DebtUserForbidden,
    MerchantReferenceConflict,
    PlanNotAuthorized,
    PlanNotPending,
)
from bnpl.event_data import plan_event_data
from bnpl.models import Plan
from bnpl.schedule import business_today
from bnpl.selectors import OPEN_PLAN_STATUSES, PLAN_FIELDS, plan_installments_loaded
from bnpl.services.origination import (
    customer_credit_check,
    instance_as_read,
    plan_activate,
    plan_create,
    plan_parties_resolve,
    schedule_minimum_check,
)
from core.db import atomic_refusing_first, model_columns, model_from_row, postgresql, row_by_key
from core.problems import DomainError
from events.models import Event, Notification, generate_event_id
from events.notifications import notifications_queue, notifications_send_after_commit
from events.services import event_dispatch_after_commit, event_give_up_at, event_record, events_record_many
from events.sql import event_record_cte, notifications_pending_sql, notifications_queue_ctes


@dataclass(frozen=True)
class Offer:
    """What a merchant offers: the terms a retry with the same reference must repeat."""

    total_amount: Decimal
    installment_count: int = 4
    frequency: str = Plan.Frequency.MONTHLY
    currency: str = ""
    merchant_reference: str = ""
    capture_mode: str = Plan.CaptureMode.AUTOMATIC

    def matches(self, plan: Plan, customer: User) -> bool:
        return (
            plan.customer_id == customer.pk
            and plan.amount_authorized == self.total_amount
            and plan.installment_count == self.installment_count
            and plan.frequency == self.frequency
            and plan.currency == self.currency
            and plan.capture_mode == self.capture_mode
        )


def plan_offer(*, customer: User, merchant: User, offer: Offer, operator: User | None = None) -> tuple[Plan, bool]:
    """Offer a plan to ``customer``: PENDING until they confirm or decline, reserving its
    amount against their credit; made by an ``operator`` (the back office), ACTIVE at once.
    ``(plan, created)``: the same ``merchant_reference`` with the same terms returns the plan
    it made before (created False).

    Raises DebtUserForbidden (403), CreditDeclined (422, nothing about the customer's
    money), MerchantReferenceConflict (409), FieldInvalid (400).
    """
    offer = _offer_terms(offer)
    return _offer_answer(_offer_made(customer, merchant, offer, operator, locked=None), customer, merchant, offer)


def plan_offer_named(*, creator: User, user_id: str | None, merchant_id: str | None, offer: Offer) -> tuple[Plan, bool]:
    """plan_offer to the parties ``creator`` names (plan_parties_resolve's rules; an
    operator's plan is ACTIVE at once), in one transaction: the customer named is found with
    its row locked, instead of read and then locked again for the credit check.

    Raises what plan_parties_resolve and plan_offer raise.
    """
    offer = _offer_terms(offer)
    with atomic_refusing_first():
        customer, merchant = plan_parties_resolve(
            creator=creator, user_id=user_id, merchant_id=merchant_id, lock_customer=True
        )
        operator = creator if creator.is_operator else None
        made = _offer_made(customer, merchant, offer, operator, locked=None if customer is creator else customer)
    return _offer_answer(made, customer, merchant, offer)


def _offer_terms(offer: Offer) -> Offer:
    """The offer's terms held (FieldInvalid) and completed (the default currency)."""
    schedule_minimum_check(offer.total_amount, offer.installment_count, "total_amount")
    return replace(offer, currency=offer.currency or settings.BNPL_DEFAULT_CURRENCY)


def _offer_made(
    customer: User, merchant: User, offer: Offer, operator: User | None, locked: User | None
) -> Plan | None:
    """The plan offered, or None, writing nothing, when the merchant used its reference
    before; refusals come before any write. ``locked``: the customer's row as read locking
    it in this transaction."""
    try:
        # The ORM's path (SQLite) finds a reference used before by the insert's IntegrityError,
        # after which only a savepoint leaves the transaction usable; PostgreSQL's statement
        # finds it writing nothing.
        with atomic_refusing_first() if postgresql() else transaction.atomic():
            return _plan_offer(customer, merchant, offer, operator, locked)
    except IntegrityError:
        return None  # another request with this reference committed first: its plan is the answer
    except (CreditDeclined, DebtUserForbidden):
        # A retry finds the credit taken by the first request's own reservation (it may have
        # waited on the customer's lock while that one made the plan), or the customer in
        # debt since: the plan made before is its answer.
        if offer.merchant_reference and _referenced(merchant, offer):
            return None
        raise


def _offer_answer(made: Plan | None, customer: User, merchant: User, offer: Offer) -> tuple[Plan, bool]:
    """``(plan, created)``: the plan made, or the one made before under the offer's reference
    (MerchantReferenceConflict, 409, when its terms differ). Outside the offer's transaction
    block: a conflict is told after a statement that found the reference and wrote nothing."""
    if made is not None:
        return made, True
    return _offered_before(customer, merchant, offer), False


def _referenced(merchant: User, offer: Offer) -> bool:
    return Plan.objects.filter(merchant=merchant, merchant_reference=offer.merchant_reference).exists()


def _offered_before(customer: User, merchant: User, offer: Offer) -> Plan:
    plan = Plan.objects.select_related("customer", "merchant").get(
        merchant=merchant, merchant_reference=offer.merchant_reference
    )
    if not offer.matches(plan, customer):
        raise MerchantReferenceConflict()
    return plan


def _plan_offer(
    customer: User, merchant: User, offer: Offer, operator: User | None, locked: User | None
) -> Plan | None:
    if operator is not None:
        if offer.merchant_reference and _referenced(merchant, offer):
            return None
        terms = asdict(offer)
        del terms["capture_mode"]  # the back office's plan is ACTIVE at once
        return plan_create(customer=customer, merchant=merchant, created_by=operator, **terms)
    # The credit is checked before the reference is looked for: the plan's insert finds a
    # reference used before (the unique constraint), and a refusal looks for it then.
    customer_credit_check(customer=customer, currency=offer.currency, amount=offer.total_amount, locked=locked)
    now = timezone.now()
    plan = Plan(
        customer=customer,
        merchant=merchant,
        total_amount=offer.total_amount,
        authorized_amount=offer.total_amount,
        currency=offer.currency,
        installment_count=offer.installment_count,
        frequency=offer.frequency,
        merchant_reference=offer.merchant_reference,
        capture_mode=offer.capture_mode,
        status=Plan.Status.PENDING,
        purchase_date=business_today(),
        checkout_token=secrets.token_urlsafe(32),
        expires_at=now + timedelta(minutes=settings.BNPL_CHECKOUT_TTL_MINUTES),
        created_at=now,
        updated_at=now,
    )
    made = _offer_write_pg(plan) if postgresql() else _offer_write_orm(plan)
    return None if made is None else plan_installments_loaded(made, [])


def _offer_write_orm(plan: Plan) -> Plan:
    """Write the PENDING ``plan``, its ``plan.pending`` event and the customer's notifications
    through the ORM; a reference used before is an IntegrityError."""
    plan.save(force_insert=True)
    event_record(merchant_id=plan.merchant_id, type=Event.Type.PLAN_PENDING, data=plan_event_data(plan, plan.customer))
    subject, body = _offer_message(plan)
    notifications_queue(items=[(plan.customer_id, Notification.Kind.OFFER, f"plan:{plan.pk}", subject, body)])
    return plan


# _offer_write_orm() in one PostgreSQL statement (a test holds the two equal): the offer is
# every plan's first write, and its five statements (the plan, a look at the merchant's
# webhook URL, the event, the customer's addresses, the notifications) were five round trips.
# A reference used before inserts nothing (ON CONFLICT on the unique constraint), and then
# neither event nor notification is written; the event and the notifications are written by
# the events app's SQL (events.sql), from the plan's id.
_OFFER_PG_TEMPLATE = """
WITH plan AS (
  INSERT INTO bnpl_plan (customer_id, merchant_id, total_amount, authorized_amount, currency, installment_count,
                         frequency, status, capture_mode, merchant_reference, purchase_date, checkout_token,
                         expires_at, created_at, updated_at)
  VALUES (%(customer)s, %(merchant)s, %(total)s, %(total)s, %(currency)s, %(count)s, %(frequency)s, %(status)s,
          %(capture_mode)s, %(reference)s, %(purchase_date)s, %(token)s, %(expires_at)s, %(now)s, %(now)s)
  ON CONFLICT (merchant_id, merchant_reference) WHERE merchant_reference <> '' DO NOTHING
  RETURNING id
), event AS (
  SELECT %(event_id)s AS public_id, %(merchant)s::bigint AS merchant_id, %(event_type)s AS type,
         %(event_data)s::jsonb || jsonb_build_object('plan_id', plan.id) AS data,
         %(now)s::timestamptz AS created_at, %(give_up)s::timestamptz AS give_up_at
  FROM plan
), message AS (
  SELECT %(customer)s::bigint AS customer_id, %(kind)s::varchar AS kind, 'plan:' || plan.id AS cause,
         %(subject)s::varchar AS subject, %(body)s::text AS body, %(now)s::timestamptz AS created_at
  FROM plan
), {event}, {notifications}
SELECT plan.id, recorded.id, recorded.delivery_status, {pending}
FROM plan, events_recorded recorded
"""
_OFFER_PG_SQL = _OFFER_PG_TEMPLATE.format(  # constants and the events app's CTEs  # nosec B608
    event=event_record_cte(rows="event"),
    notifications=notifications_queue_ctes(rows="message"),
    pending=notifications_pending_sql(),
)


def _offer_write_pg(plan: Plan) -> Plan | None:
    """``_offer_write_orm`` in one statement: the plan as written, or None (writing nothing)
    when the merchant has used its reference before."""
    subject, body = _offer_message(plan)
    with connection.cursor() as cursor:
        cursor.execute(
            _OFFER_PG_SQL,
            {
                "customer": plan.customer_id,
                "merchant": plan.merchant_id,
                "total": plan.total_amount,
                "currency": plan.currency,
                "count": plan.installment_count,
                "frequency": plan.frequency,
                "status": plan.status,
                "capture_mode": plan.capture_mode,
                "reference": plan.merchant_reference,
                "purchase_date": plan.purchase_date,
                "token": plan.checkout_token,
                "expires_at": plan.expires_at,
                "now": plan.created_at,
                "event_id": generate_event_id(),
                "event_type": Event.Type.PLAN_PENDING,
                "event_data": json.dumps(plan_event_data(plan, plan.customer), cls=DjangoJSONEncoder),
                "give_up": event_give_up_at(plan.created_at),
                "kind": Notification.Kind.OFFER,
                "subject": subject,
                "body": body,
            },
        )
        written = cursor.fetchone()
    if written is None:
        return None
    plan_id, event_id, delivery, notify = written
    if delivery == Event.Delivery.PENDING:
        event_dispatch_after_commit(event_id)
    if notify:
        notifications_send_after_commit(causes=[(Notification.Kind.OFFER, f"plan:{plan_id}")])
    made = instance_as_read(plan, id=plan_id)
    made.customer, made.merchant = plan.customer, plan.merchant
    return made


def _offer_message(plan: Plan) -> tuple[str, str]:
    """The new offer's subject and body, with the link to confirm it (email and SMS)."""
    link = plan.checkout_url
    shop = plan.merchant.full_name or plan.merchant.user_id
    body = (
        f"{shop} offers you {plan.total_amount} {plan.currency} in {plan.installment_count} "
        f"{plan.get_frequency_display().lower()} installments. Review and confirm or decline it: {link}"
    )
    # A text message carries the subject alone (events.notifications): the link must be in it,
    # or the SMS tells the customer of an offer they cannot open.
    subject = f"Your offer from {shop}: {link}"
    return subject, body


@atomic_refusing_first()
def plan_confirm(*, plan_id: int, customer: User) -> Plan:
    """The customer agrees to a PENDING plan: ACTIVE now (installments, entry, ``plan.confirmed``),
    or AUTHORIZED until the merchant captures it when its capture mode is manual. Returns the
    plan as it now is, with its parties' public ids and its installments (no read needed to
    show it).

    Raises Plan.DoesNotExist when the plan is not offered to ``customer`` (whatever its
    state), PlanNotPending (409), DebtUserForbidden (403), CreditDeclined (422, with the
    customer's own figures).
    """
    plan = _pending(plan_id, customer_id=customer.pk)  # the customer's row locked with the plan's
    customer_credit_check(
        customer=customer,
        currency=plan.currency,
        amount=plan.total_amount,
        plan_id=plan.pk,
        figures=True,
        locked=plan.customer,
    )
    plan.customer = customer
    plan.confirmed_at = timezone.now()
    if plan.capture_mode == Plan.CaptureMode.AUTOMATIC:
        return plan_activate(plan, event_type=Event.Type.PLAN_CONFIRMED, pricing=_pricing(plan))
    plan.status = Plan.Status.AUTHORIZED
    plan.checkout_token = None
    plan.expires_at = plan.confirmed_at + timedelta(days=settings.BNPL_AUTHORIZATION_DAYS)
    plan.save(update_fields=["status", "checkout_token", "expires_at", "confirmed_at", "updated_at"])
    event_record(merchant_id=plan.merchant_id, type=Event.Type.PLAN_CONFIRMED, data=plan_event_data(plan, customer))
    return plan_installments_loaded(plan, [])  # an authorization has none until it is captured


@transaction.atomic
def plan_decline(*, plan_id: int) -> Plan:
    """The customer refuses a PENDING plan: DECLINED, its reservation released. Raises PlanNotPending."""
    plan = _pending(plan_id)
    return _closed(plan, Plan.Status.DECLINED, Event.Type.PLAN_DECLINED)


@transaction.atomic
def plan_capture(*, plan_id: int, amount: Decimal | None = None) -> Plan:
    """Capture an AUTHORIZED plan, whole or ``amount`` of it: ACTIVE with its schedule split
    over what was captured; the rest of the reservation is released.

    Raises PlanNotAuthorized (409), CaptureExceedsAuthorized (422), FieldInvalid (400).
    """
    plan = _authorized(plan_id)
    authorized = plan.amount_authorized
    amount = authorized if amount is None else amount
    if amount > authorized:
        raise CaptureExceedsAuthorized(
            f"At most {authorized} {plan.currency} can be captured on this plan.", authorized_amount=str(authorized)
        )
    schedule_minimum_check(amount, plan.installment_count, "amount")
    return plan_activate(plan, event_type=Event.Type.PLAN_CAPTURED, total_amount=amount, pricing=_pricing(plan))


@transaction.atomic
def plan_void(*, plan_id: int) -> Plan:
    """Void an AUTHORIZED plan: VOIDED, nothing owed, its reservation released. Raises PlanNotAuthorized."""
    plan = _authorized(plan_id)
    return _closed(plan, Plan.Status.VOIDED, Event.Type.PLAN_VOIDED)


def _pending(plan_id: int, *, customer_id: int | None = None) -> Plan:
    """The plan, locked, while its offer is open (PENDING and not past its expiry); given
    ``customer_id``, only when it is offered to that customer (else Plan.DoesNotExist, before
    its state is told)."""
    return _locked_while(plan_id, Plan.Status.PENDING, PlanNotPending, "confirmed or declined", customer_id)


def _authorized(plan_id: int) -> Plan:
    """The plan, locked, while its authorization holds (AUTHORIZED and not past its expiry)."""
    return _locked_while(plan_id, Plan.Status.AUTHORIZED, PlanNotAuthorized, "captured or voided")


# What a plan's move reads of its merchant: its public id (the answer shows it) and its price
# as committed (activation charges the fee at it), in the statement that locks the plan.
_MERCHANT_COLUMNS = ("user_id", "fee_percent", "fee_fixed")
# What the confirm's credit check reads of its customer, locked in the same statement.
_CUSTOMER_COLUMNS = ("status", "credit_limit")
# Written out on PostgreSQL: the ORM took longer composing this join than the database takes
# to run it, on every move of a plan. FOR NO KEY UPDATE OF the plan, as
# bnpl.selectors.plan_get_for_update locks it (rows pointing at the plan are checked without
# waiting; the merchant's row is not locked). The confirm locks its customer's row too, which
# was a statement of its own: found by its own key (a cross join of two rows, which only a
# nested loop can join whatever the statistics), and locked by the same lock step as the
# plan, after it: the order every service takes them in.
_PLAN_LOCK_TEMPLATE = (
    "SELECT {plan}, {merchant}{customer} FROM {plans} p {merchant_row}{customer_row} WHERE p.id = %s{customer_key} "
    "FOR NO KEY UPDATE OF p{customer_lock}"
)
_PLAN_LOCK_SQL = {
    with_customer: _PLAN_LOCK_TEMPLATE.format(  # the models' own names  # nosec B608
        plan=model_columns(Plan, "p"),
        merchant=", ".join(f"m.{column}" for column in _MERCHANT_COLUMNS),
        plans=Plan._meta.db_table,
        merchant_row=row_by_key(User, "m", "p.merchant_id", ", ".join(_MERCHANT_COLUMNS)),
        customer="".join(f", c.{column}" for column in _CUSTOMER_COLUMNS) if with_customer else "",
        customer_row=f" CROSS JOIN {User._meta.db_table} c" if with_customer else "",
        customer_key=" AND c.id = %s" if with_customer else "",
        customer_lock=", c" if with_customer else "",
    )
    for with_customer in (False, True)
}


def _plan_locked(plan_id: int, *, customer_id: int | None = None) -> Plan:
    """The plan, row-locked until the transaction ends, with its merchant's public id and
    price (``plan.merchant``: those fields alone); given ``customer_id`` (the plan's customer,
    which the caller holds), that user's row locked too, after the plan's, and its status and
    credit limit (``plan.customer``: those alone). Raises Plan.DoesNotExist."""
    if not postgresql():  # SQLite serialises writers by itself; the ORM converts its values
        plan = (
            Plan.objects.select_for_update(of=("self",), no_key=True)
            .select_related("merchant")
            .only(*PLAN_FIELDS, *(f"merchant__{column}" for column in _MERCHANT_COLUMNS))
            .get(pk=plan_id)
        )
        if _offered_to(plan, customer_id):
            plan.customer = User.objects.only(*_CUSTOMER_COLUMNS).get(pk=customer_id)
        return plan
    with connection.cursor() as cursor:
        cursor.execute(
            _PLAN_LOCK_SQL[customer_id is not None], [plan_id, *([] if customer_id is None else [customer_id])]
        )
        row = cursor.fetchone()
    if row is None:
        raise Plan.DoesNotExist(f"No plan {plan_id}.")
    plan = model_from_row(Plan, row)
    start = len(Plan._meta.concrete_fields)
    merchant = list(row[start : start + len(_MERCHANT_COLUMNS)])
    plan.merchant = User.from_db(connection.alias, ["id", *_MERCHANT_COLUMNS], [plan.merchant_id, *merchant])
    if _offered_to(plan, customer_id):
        customer = list(row[start + len(_MERCHANT_COLUMNS) :])
        plan.customer = User.from_db(connection.alias, ["id", *_CUSTOMER_COLUMNS], [customer_id, *customer])
    return plan


def _offered_to(plan: Plan, customer_id: int | None) -> bool:
    """Whether the plan's customer is to be set from ``customer_id``'s row; Plan.DoesNotExist
    when that is not the plan's customer (the callers scope the plan first)."""
    if customer_id is None:
        return False
    if plan.customer_id != customer_id:
        raise Plan.DoesNotExist(f"Plan {plan.pk} is not offered to this customer.")
    return True


def _locked_while(
    plan_id: int, status: str, refused: type[DomainError], moves: str, customer_id: int | None = None
) -> Plan:
    plan = _plan_locked(plan_id, customer_id=customer_id)
    if plan.status != status or _lapsed(plan):
        now = _status_now(plan)
        article = "an" if status[0] in "AEIOU" else "a"
        raise refused(f"This plan is {now}; only {article} {status} plan can be {moves}.", plan_status=now)
    return plan


def _pricing(plan: Plan) -> MerchantPricing:
    """The merchant's price as read with the plan's lock."""
    return merchant_pricing(fee_percent=plan.merchant.fee_percent, fee_fixed=plan.merchant.fee_fixed)


def _lapsed(plan: Plan) -> bool:
    # Past its time, whether or not the expiry task has run yet: one answer at any moment.
    return plan.expires_at is not None and plan.expires_at <= timezone.now()


def _status_now(plan: Plan) -> str:
    return Plan.Status.EXPIRED if plan.status in OPEN_PLAN_STATUSES and _lapsed(plan) else plan.status


def _closed(plan: Plan, status: str, event_type: str) -> Plan:
    plan.status = status
    plan.checkout_token = None
    plan.save(update_fields=["status", "checkout_token", "updated_at"])
    event_record(merchant_id=plan.merchant_id, type=event_type, data=plan_event_data(plan))
    return plan


def plans_expire(*, now: datetime | None = None, chunk: int = 1000) -> int:
    """EXPIRE every open offer and authorization past its time, releasing what they reserve;
    returns how many. Chunk by chunk, each in its own transaction and a fixed number of
    queries; rows a confirm or capture holds are skipped (it wins, or the next run expires it)."""
    now = now or timezone.now()
    expired = 0
    while True:
        count = _expire_chunk(now, chunk)
        expired += count
        if count < chunk:
            return expired


@transaction.atomic
def _expire_chunk(now: datetime, chunk: int) -> int:
    plans = list(
        Plan.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
        .filter(status__in=OPEN_PLAN_STATUSES, expires_at__lte=now)
        .select_related("customer")
        .only(*PLAN_FIELDS, "customer__user_id")  # the event names the customer; nothing else of the row is read
        .order_by("expires_at", "id")[:chunk]
    )
    if not plans:
        return 0
    Plan.objects.filter(pk__in=[plan.pk for plan in plans]).update(
        status=Plan.Status.EXPIRED, checkout_token=None, updated_at=now
    )
    events = []
    for plan in plans:
        plan.status, plan.checkout_token = Plan.Status.EXPIRED, None
        events.append((plan.merchant_id, Event.Type.PLAN_EXPIRED, plan_event_data(plan, plan.customer)))
    events_record_many(events=events)
    return len(plans)
