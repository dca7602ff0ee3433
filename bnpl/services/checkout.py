"""A plan before it is owed: the merchant's offer, the customer's confirmation or refusal,
the merchant's capture or void of an authorization, and the expiry of both (DESIGN §6).

Nothing here is owed or posted until the plan becomes ACTIVE (``origination.plan_activate``):
an open offer or authorization only reserves its amount against the customer's credit limit,
which ``bnpl.selectors.credit_positions`` counts from the plans' status.
"""

import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from bnpl.errors import (
    CaptureExceedsAuthorized,
    CreditDeclined,
    MerchantReferenceConflict,
    PlanNotAuthorized,
    PlanNotPending,
)
from bnpl.event_data import plan_event_data
from bnpl.models import Plan
from bnpl.schedule import business_today
from bnpl.selectors import OPEN_PLAN_STATUSES, PLAN_FIELDS, plan_get_for_update, plan_installments_loaded
from bnpl.services.origination import customer_credit_check, plan_activate, plan_create, schedule_minimum_check
from core.problems import DomainError
from events.models import Event, Notification
from events.notifications import notifications_queue
from events.services import event_record, events_record_many


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
    schedule_minimum_check(offer.total_amount, offer.installment_count, "total_amount")
    offer = replace(offer, currency=offer.currency or settings.BNPL_DEFAULT_CURRENCY)
    try:
        with transaction.atomic():
            return _plan_offer(customer, merchant, offer, operator)
    except IntegrityError:
        # Another request with this reference committed first: its plan is the answer.
        return _offered_before(customer, merchant, offer), False
    except CreditDeclined:
        # A retry that waited on the customer's lock while the first request made the plan
        # finds the credit taken by that plan's own reservation: the plan is its answer.
        if offer.merchant_reference and _referenced(merchant, offer):
            return _offered_before(customer, merchant, offer), False
        raise


def _referenced(merchant: User, offer: Offer) -> bool:
    return Plan.objects.filter(merchant=merchant, merchant_reference=offer.merchant_reference).exists()


def _offered_before(customer: User, merchant: User, offer: Offer) -> Plan:
    plan = Plan.objects.select_related("customer", "merchant").get(
        merchant=merchant, merchant_reference=offer.merchant_reference
    )
    if not offer.matches(plan, customer):
        raise MerchantReferenceConflict()
    return plan


def _plan_offer(customer: User, merchant: User, offer: Offer, operator: User | None) -> tuple[Plan, bool]:
    if offer.merchant_reference and _referenced(merchant, offer):
        return _offered_before(customer, merchant, offer), False
    if operator is not None:
        terms = asdict(offer)
        del terms["capture_mode"]  # the back office's plan is ACTIVE at once
        return plan_create(customer=customer, merchant=merchant, created_by=operator, **terms), True
    customer_credit_check(customer=customer, currency=offer.currency, amount=offer.total_amount)
    now = timezone.now()
    plan = Plan.objects.create(
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
    )
    event_record(merchant_id=merchant.pk, type=Event.Type.PLAN_PENDING, data=plan_event_data(plan, customer))
    _tell_customer(plan, merchant)
    return plan_installments_loaded(plan, []), True


def _tell_customer(plan: Plan, merchant: User) -> None:
    """The new offer, by email and SMS, with the link to confirm it."""
    link = plan.checkout_url
    shop = merchant.full_name or merchant.user_id
    body = (
        f"{shop} offers you {plan.total_amount} {plan.currency} in {plan.installment_count} "
        f"{plan.get_frequency_display().lower()} installments. Review and confirm or decline it: {link}"
    )
    # A text message carries the subject alone (events.notifications): the link must be in it,
    # or the SMS tells the customer of an offer they cannot open.
    subject = f"Your offer from {shop}: {link}"
    notifications_queue(items=[(plan.customer_id, Notification.Kind.OFFER, f"plan:{plan.pk}", subject, body)])


@transaction.atomic
def plan_confirm(*, plan_id: int, customer: User) -> Plan:
    """The customer agrees to a PENDING plan: ACTIVE now (installments, entry, ``plan.confirmed``),
    or AUTHORIZED until the merchant captures it when its capture mode is manual.

    Raises PlanNotPending (409), DebtUserForbidden (403), CreditDeclined (422, with the
    customer's own figures).
    """
    plan = _pending(plan_id)
    if plan.customer_id != customer.pk:
        raise Plan.DoesNotExist(f"Plan {plan_id} is not offered to this customer.")  # the callers scope it first
    customer_credit_check(
        customer=customer, currency=plan.currency, amount=plan.total_amount, plan_id=plan.pk, figures=True
    )
    plan.customer = customer
    plan.confirmed_at = timezone.now()
    if plan.capture_mode == Plan.CaptureMode.AUTOMATIC:
        return plan_activate(plan, event_type=Event.Type.PLAN_CONFIRMED)
    plan.status = Plan.Status.AUTHORIZED
    plan.checkout_token = None
    plan.expires_at = plan.confirmed_at + timedelta(days=settings.BNPL_AUTHORIZATION_DAYS)
    plan.save(update_fields=["status", "checkout_token", "expires_at", "confirmed_at", "updated_at"])
    event_record(merchant_id=plan.merchant_id, type=Event.Type.PLAN_CONFIRMED, data=plan_event_data(plan, customer))
    return plan


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
    return plan_activate(plan, event_type=Event.Type.PLAN_CAPTURED, total_amount=amount)


@transaction.atomic
def plan_void(*, plan_id: int) -> Plan:
    """Void an AUTHORIZED plan: VOIDED, nothing owed, its reservation released. Raises PlanNotAuthorized."""
    plan = _authorized(plan_id)
    return _closed(plan, Plan.Status.VOIDED, Event.Type.PLAN_VOIDED)


def _pending(plan_id: int) -> Plan:
    """The plan, locked, while its offer is open (PENDING and not past its expiry)."""
    return _locked_while(plan_id, Plan.Status.PENDING, PlanNotPending, "confirmed or declined")


def _authorized(plan_id: int) -> Plan:
    """The plan, locked, while its authorization holds (AUTHORIZED and not past its expiry)."""
    return _locked_while(plan_id, Plan.Status.AUTHORIZED, PlanNotAuthorized, "captured or voided")


def _locked_while(plan_id: int, status: str, refused: type[DomainError], moves: str) -> Plan:
    plan = plan_get_for_update(pk=plan_id)
    if plan.status != status or _lapsed(plan):
        now = _status_now(plan)
        article = "an" if status[0] in "AEIOU" else "a"
        raise refused(f"This plan is {now}; only {article} {status} plan can be {moves}.", plan_status=now)
    return plan


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
