"""Originating a plan: its parties, the credit check, and the moment a plan becomes ACTIVE
(its installments by the split rule, its ledger entry with the merchant's fee, and its
event, in one transaction), whether an operator creates it ACTIVE at once or a customer's
consent makes it so."""

import json
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from accounts.pricing import MerchantPricing, merchant_fee, merchant_pricings
from bnpl.errors import CreditDeclined, DebtUserForbidden
from bnpl.event_data import plan_event_data
from bnpl.models import Installment, Plan
from bnpl.schedule import build_schedule, business_today
from bnpl.selectors import CreditPosition, credit_position, plan_installments_loaded
from core.db import models_fetched, postgresql
from core.problems import FieldInvalid
from events.models import Event, generate_event_id
from events.services import event_dispatch_after_commit, event_record
from ledger.accounts import CUSTOMER_RECEIVABLE, MERCHANT_FEE_INCOME, MERCHANT_PAYABLE, ledger_account_ids
from ledger.models import JournalEntry
from ledger.services import Leg, ledger_post, ledger_post_many
from ledger.sql import ledger_post_ctes


def plan_parties_resolve(
    *, creator: User, user_id: str | None, merchant_id: str | None, lock_customer: bool = False
) -> tuple[User, User]:
    """Who the plan is for and who sold it, by the creator's role (DESIGN §5).

    A customer buys for itself, a merchant sells as itself, an operator names both.
    ``lock_customer``: a customer named is read locking its row until the transaction ends,
    as customer_credit_check locks it. Raises FieldInvalid naming the field that is missing
    or wrong, CreditDeclined for a customer named that cannot be offered to.
    """
    customer = _plan_party(
        creator, user_id, User.Role.CUSTOMER, "user_id", "A customer can only buy for itself.", lock=lock_customer
    )
    merchant = _plan_party(
        creator, merchant_id, User.Role.MERCHANT, "merchant_id", "A merchant can only sell as itself."
    )
    return customer, merchant


# What plan creation uses of a party; the rest of the row (encrypted columns too) stays
# unread. These two statements run on every plan creation and are written out: the ORM
# spent more time composing each (about 0.5 ms) than PostgreSQL takes to answer it, and
# RawQuerySet longer again setting up its converters for each query (models_fetched).
_PARTY_FIELDS = ("id", "user_id", "role", "status", "credit_limit")
_PARTY_SQL = """
SELECT id, user_id, role, status, credit_limit FROM accounts_user
WHERE user_id = %s AND role = %s AND is_active
"""
_LOCKED_FIELDS = ("id", "status", "credit_limit")
_CUSTOMER_LOCK_SQL = "SELECT id, status, credit_limit FROM accounts_user WHERE id = %s"


def _plan_party(
    creator: User, given_id: str | None, role: str, field: str, not_yourself: str, *, lock: bool = False
) -> User:
    """The party of ``role``: the creator itself when it has that role, else the active user
    named (``lock``: its row locked, FOR NO KEY UPDATE as _customer_lock takes it)."""
    if creator.role == role:
        if given_id and given_id != creator.user_id:
            raise FieldInvalid(field, not_yourself)
        return creator
    if not given_id:
        raise FieldInvalid(field, "This field is required.")
    found = models_fetched(User, _locking(_PARTY_SQL) if lock else _PARTY_SQL, [given_id, role], _PARTY_FIELDS)
    party = found[0] if found else None
    if party is None and role == User.Role.CUSTOMER:
        # The answer a real decline gets: whether this user_id exists is nobody's business.
        raise CreditDeclined()
    if party is None:
        raise FieldInvalid(field, f"No active {role.lower()} has this user_id.")
    return party


def _customer_lock(customer_id: int) -> User:
    """The customer's status and credit limit, its row locked until the transaction ends
    (FOR NO KEY UPDATE: rows pointing at the customer are still checked without waiting)."""
    return models_fetched(User, _locking(_CUSTOMER_LOCK_SQL), [customer_id], _LOCKED_FIELDS)[0]


def _locking(sql: str) -> str:
    """``sql`` locking the rows it reads (FOR NO KEY UPDATE) where the database has row locks
    (SQLite serialises writers by itself)."""
    if not connection.features.has_select_for_update:
        return sql
    return f"{sql.rstrip()} {connection.ops.for_update_sql(no_key=True)}"


def customer_credit_check(
    *,
    customer: User,
    currency: str,
    amount: Decimal,
    plan_id: int = 0,
    figures: bool = False,
    locked: User | None = None,
):
    """Lock ``customer`` and hold that it may take on ``amount`` more in ``currency``: not a
    DEBT_USER (403), and within its credit limit counting what it owes and what its open
    offers and authorizations reserve, but not plan ``plan_id``'s own reservation (422
    ``credit_declined``, with the customer's figures only when ``figures``). ``locked``: the
    customer's status and credit limit as the caller read them locking its row in this
    transaction (not locked again)."""
    # Lock the customer: two plans at once must not both fit under one limit. What it owes is
    # read after the lock is held, in a statement of its own: a subquery of the locking
    # statement would read the snapshot taken before the wait, missing the plan just committed.
    if locked is None:
        locked = _customer_lock(customer.pk)
    elif locked.pk != customer.pk:
        raise ValueError(f"The row locked is user {locked.pk}'s, not the customer's ({customer.pk}).")
    customer.status, customer.credit_limit = locked.status, locked.credit_limit
    if customer.status == User.Status.DEBT_USER:
        raise DebtUserForbidden()
    position = credit_position(customer=customer, currency=currency, excluding_plan_id=plan_id)
    if amount > position.available:
        raise CreditDeclined(**(credit_figures(position) if figures else {}))


def credit_figures(position: CreditPosition) -> dict:
    """A customer's own credit figures, as a problem's extra fields."""
    return {
        "currency": position.currency,
        "credit_limit": str(position.credit_limit),
        "outstanding": str(position.outstanding),
        "reserved": str(position.reserved),
        "available": str(position.available),
    }


def schedule_minimum_check(total: Decimal, count: int, field: str) -> None:
    """Every installment must get at least a cent (FieldInvalid naming ``field``)."""
    if total < Decimal("0.01") * count:
        raise FieldInvalid(field, f"Must be at least {Decimal('0.01') * count} for {count} installments.")


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
    created_by: User | None = None,
) -> Plan:
    """Originate a plan ACTIVE at once (the back office: ``created_by`` the operator): its
    installments by the split rule and its ledger entry. The plan returned carries its
    parties and installments (no read needed to show it).

    Raises DebtUserForbidden (403), CreditDeclined (422), FieldInvalid (400).
    """
    schedule_minimum_check(total_amount, installment_count, "total_amount")
    currency = currency or settings.BNPL_DEFAULT_CURRENCY
    customer_credit_check(customer=customer, currency=currency, amount=total_amount)
    purchase_date = purchase_date or business_today()
    now = timezone.now()
    plan = Plan(
        customer=customer,
        merchant=merchant,
        total_amount=total_amount,
        authorized_amount=total_amount,
        currency=currency,
        installment_count=installment_count,
        frequency=frequency,
        merchant_reference=merchant_reference,
        purchase_date=purchase_date,
        status=Plan.Status.ACTIVE,
        created_by=created_by,
        activated_at=now,
    )
    return _originated(plan, Event.Type.PLAN_CREATED, insert=True)


def plan_activate(
    plan: Plan, *, event_type: str, total_amount: Decimal | None = None, pricing: MerchantPricing | None = None
) -> Plan:
    """Make a PENDING or AUTHORIZED ``plan`` (locked by the caller) ACTIVE from today: its
    installments over ``total_amount`` (default: the plan total) by the split rule, its
    origination entry with the merchant's fee at ``pricing`` (the merchant's price read with
    the plan's lock; default: read now) and its ``event_type`` event. Returns the plan with
    its installments."""
    now = timezone.now()
    if total_amount is not None:
        plan.total_amount = total_amount
    plan.status = Plan.Status.ACTIVE
    plan.purchase_date = business_today()
    plan.checkout_token = None
    plan.expires_at = None
    plan.confirmed_at = plan.confirmed_at or now
    plan.activated_at = now
    return _originated(plan, event_type, insert=False, pricing=pricing)


def _originated(plan: Plan, event_type: str, *, insert: bool, pricing: MerchantPricing | None = None) -> Plan:
    # The fee at the merchant's price as committed (not as a request's user row has it): read
    # now, or by the statement that locked the plan.
    pricing = pricing or merchant_pricings([plan.merchant_id])[plan.merchant_id]
    plan.merchant_fee = merchant_fee(total=plan.total_amount, pricing=pricing)
    schedule = build_schedule(
        total=plan.total_amount,
        count=plan.installment_count,
        frequency=plan.frequency,
        purchase_date=plan.purchase_date,
    )
    originate = _originate_pg if postgresql() else _originate_orm
    return plan_installments_loaded(*originate(plan, schedule, event_type, insert))


def _originate_orm(
    plan: Plan, schedule: list[tuple[int, Decimal, date]], event_type: str, insert: bool
) -> tuple[Plan, list[Installment]]:
    """Write the ACTIVE plan (new, or updated), its installments, its origination entry and
    its ``event_type`` event through the ORM; returns the plan saved and its installments."""
    if insert:
        plan.save(force_insert=True)
    else:
        plan.save(update_fields=[*_ACTIVATED_FIELDS, "updated_at"])
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
    event_record(merchant_id=plan.merchant_id, type=event_type, data=plan_event_data(plan, plan.customer))
    return plan, installments


# What activation changes on a plan that was offered.
_ACTIVATED_FIELDS = (
    "status",
    "total_amount",
    "purchase_date",
    "checkout_token",
    "expires_at",
    "confirmed_at",
    "activated_at",
    "merchant_fee",
)


# The same rows as _originate_orm() in one PostgreSQL statement (a test holds the two equal;
# the entry and its postings are written by the ledger's SQL, ledger.sql):
# plan creation is the API's hottest write, and composing its six statements through the
# ORM cost more than PostgreSQL took to run them. The event's data is built in Python
# (plan_event_data) with the plan's id filled in here; its delivery status is decided from
# the merchant's row as committed, as event_record() decides it.
_INSERT_PLAN_CTE = """
  INSERT INTO bnpl_plan (customer_id, merchant_id, total_amount, authorized_amount, currency, installment_count,
                         frequency, status, capture_mode, merchant_reference, purchase_date, created_by_id,
                         activated_at, merchant_fee, created_at, updated_at)
  VALUES (%(customer)s, %(merchant)s, %(total)s, %(total)s, %(currency)s, %(count)s, %(frequency)s, %(plan_status)s,
          %(capture_mode)s, %(reference)s, %(purchase_date)s, %(created_by)s, %(now)s, %(fee)s, %(now)s, %(now)s)
  RETURNING id
"""
_ACTIVATE_PLAN_CTE = """
  UPDATE bnpl_plan SET status = %(plan_status)s, total_amount = %(total)s, purchase_date = %(purchase_date)s,
    checkout_token = NULL, expires_at = NULL, confirmed_at = %(confirmed_at)s, activated_at = %(now)s,
    merchant_fee = %(fee)s, updated_at = %(now)s
  WHERE id = %(plan_id)s
  RETURNING id
"""
_ORIGINATE_PG_SQL = """
WITH plan AS ({plan}), installments AS (
  INSERT INTO bnpl_installment (plan_id, customer_id, sequence, amount_due, amount_paid, amount_reserved, due_date,
                                status, created_at, updated_at)
  SELECT plan.id, %(customer)s, s.sequence, s.amount, 0, 0, s.due_date, %(installment_status)s, %(now)s, %(now)s
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
                     (%(payable)s::bigint, -%(total)s::numeric, %(merchant)s::bigint, 2),
                     (%(payable)s::bigint, %(fee)s::numeric, %(merchant)s::bigint, 3),
                     (%(fee_income)s::bigint, -%(fee)s::numeric, %(merchant)s::bigint, 4))
       AS leg(account_id, amount, party_id, leg_order)
  WHERE leg.amount <> 0  -- no fee, no fee legs (ledger_post drops zero legs too)
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
_ORIGINATE_PG = {
    True: _ORIGINATE_PG_SQL.replace("{plan}", _INSERT_PLAN_CTE),
    False: _ORIGINATE_PG_SQL.replace("{plan}", _ACTIVATE_PLAN_CTE),
}


def _originate_pg(
    plan: Plan, schedule: list[tuple[int, Decimal, date]], event_type: str, insert: bool
) -> tuple[Plan, list[Installment]]:
    """``_originate_orm`` in one statement; returns the plan saved and its installments."""
    now = plan.activated_at
    accounts = ledger_account_ids()
    event_data = json.dumps(plan_event_data(plan, plan.customer), cls=DjangoJSONEncoder)
    with connection.cursor() as cursor:
        cursor.execute(
            _ORIGINATE_PG[insert],
            {
                "plan_id": plan.pk,
                "capture_mode": plan.capture_mode,
                "created_by": plan.created_by_id,
                "confirmed_at": plan.confirmed_at,
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
                "fee_income": accounts[MERCHANT_FEE_INCOME],
                "fee": plan.merchant_fee,
                "event_id": generate_event_id(),
                "event_type": event_type,
                "event_data": event_data,
                "pending": Event.Delivery.PENDING,
                "no_endpoint": Event.Delivery.NO_ENDPOINT,
                "give_up": now + timedelta(hours=settings.BNPL_WEBHOOK_RETRY_HOURS),
            },
        )
        plan_id, installment_ids, event_id, delivery = cursor.fetchone()
    saved = instance_as_read(plan, id=plan_id, updated_at=now, **({"created_at": now} if insert else {}))
    saved.customer, saved.merchant = plan.customer, plan.merchant
    # One new installment's values (the model's defaults, then what the statement wrote),
    # each installment made from them as the ORM makes a row it has read.
    names = [field.attname for field in Installment._meta.concrete_fields]
    blank = Installment(plan_id=plan_id, customer_id=plan.customer_id, created_at=now, updated_at=now)
    common = {name: getattr(blank, name) for name in names}
    installments = []
    for pk, (sequence, amount, due) in zip(installment_ids, schedule, strict=True):
        row = common | {"id": pk, "sequence": sequence, "amount_due": amount, "due_date": due}
        installment = Installment.from_db(connection.alias, names, [row[name] for name in names])
        installment.plan, installment.customer = saved, plan.customer
        installments.append(installment)
    if delivery == Event.Delivery.PENDING:
        event_dispatch_after_commit(event_id)
    return saved, installments


def instance_as_read(instance, **values):
    """``instance`` with ``values`` set, as the ORM hands over a row it has read from the
    database: what a statement of our own wrote, without reading it back."""
    names = [field.attname for field in type(instance)._meta.concrete_fields]
    row = {name: getattr(instance, name) for name in names} | values
    return type(instance).from_db(connection.alias, names, [row[name] for name in names])


def plans_originate_many(*, plans: list[Plan], batch_size: int = 5000) -> list[Plan]:
    """Originate many new plans at once, for data imported or seeded in bulk: the plans,
    their installments by the split rule and one origination entry each, in a fixed number
    of statements per batch, each plan's merchant fee charged at its merchant's price. No
    credit check and no events: the caller vouches for them."""
    with transaction.atomic():
        prices = merchant_pricings({plan.merchant_id for plan in plans})
        for plan in plans:
            plan.merchant_fee = merchant_fee(total=plan.total_amount, pricing=prices[plan.merchant_id])
        plans = Plan.objects.bulk_create(plans, batch_size=batch_size)
        Installment.objects.bulk_create(
            [
                Installment(plan=plan, customer_id=plan.customer_id, sequence=sequence, amount_due=amount, due_date=due)
                for plan in plans
                for sequence, amount, due in build_schedule(
                    total=plan.total_amount,
                    count=plan.installment_count,
                    frequency=plan.frequency,
                    purchase_date=plan.purchase_date,
                )
            ],
            batch_size=batch_size,
        )
        ledger_post_many(
            kind=JournalEntry.Kind.ORIGINATION,
            entries=[(plan.pk, f"Plan {plan.pk} originated", origination_legs(plan)) for plan in plans],
        )
    return plans


def origination_legs(plan: Plan) -> list[Leg]:
    """The customer owes the plan total; the platform owes it to the merchant, less the
    merchant's fee (``plan.merchant_fee``), which is the platform's income. No fee, no fee legs."""
    legs = [
        Leg(CUSTOMER_RECEIVABLE, plan.total_amount, plan.currency, plan_id=plan.pk, party_id=plan.customer_id),
        Leg(MERCHANT_PAYABLE, -plan.total_amount, plan.currency, plan_id=plan.pk, party_id=plan.merchant_id),
    ]
    if plan.merchant_fee:
        legs += [
            Leg(MERCHANT_PAYABLE, plan.merchant_fee, plan.currency, plan_id=plan.pk, party_id=plan.merchant_id),
            Leg(MERCHANT_FEE_INCOME, -plan.merchant_fee, plan.currency, plan_id=plan.pk, party_id=plan.merchant_id),
        ]
    return legs
