"""Consent at the service level (DESIGN §6 "Plans"): offers, confirmation, capture and void,
decline, expiry, the credit they reserve, merchant references. Runs on PostgreSQL and SQLite.

A refusal changes nothing: every "nothing changed" below compares ``money_state()`` (every
row holding money, the books' entries) and the plans, events and notifications counted."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.errors import (
    CaptureExceedsAuthorized,
    CreditDeclined,
    DebtUserForbidden,
    MerchantReferenceConflict,
    PlanNotAuthorized,
    PlanNotPending,
)
from bnpl.models import Installment, Plan
from bnpl.schedule import build_schedule, business_today
from bnpl.selectors import credit_position, credit_positions
from bnpl.services.checkout import Offer, plan_capture, plan_confirm, plan_decline, plan_offer, plan_void, plans_expire
from bnpl.services.origination import plan_create, plan_parties_resolve
from bnpl.services.sweep import overdue_sweep
from core.problems import FieldInvalid
from events.models import Event, Notification
from ledger.accounts import CUSTOMER_RECEIVABLE, MERCHANT_FEE_INCOME, MERCHANT_PAYABLE
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.tests.books import balance, entries, money_state

pytestmark = pytest.mark.django_db

D = Decimal
MANUAL, AUTOMATIC = Plan.CaptureMode.MANUAL, Plan.CaptureMode.AUTOMATIC


def offered(customer, merchant, total="500.00", *, count=3, mode=AUTOMATIC, currency="USD", reference="") -> Plan:
    plan, created = plan_offer(
        customer=customer,
        merchant=merchant,
        offer=Offer(
            total_amount=D(total),
            installment_count=count,
            currency=currency,
            merchant_reference=reference,
            capture_mode=mode,
        ),
    )
    assert created
    return plan


def authorized(customer, merchant, total="500.00", **terms) -> Plan:
    plan = offered(customer, merchant, total, mode=MANUAL, **terms)
    return plan_confirm(plan_id=plan.pk, customer=customer)


def events_of(plan: Plan) -> list[str]:
    return [e.type for e in Event.objects.order_by("pk") if e.data.get("plan_id") == plan.pk]


def everything() -> dict:
    """What a refused transition must leave as it was."""
    return {
        "money": money_state(),
        "plans": sorted(Plan.objects.values_list("id", "status", "total_amount", "expires_at", "checkout_token")),
        "events": Event.objects.count(),
        "notifications": Notification.objects.count(),
    }


def reserved(customer, currency="USD") -> Decimal:
    return credit_position(customer=customer, currency=currency).reserved


def assert_books_clean():
    report = ledger_check(record=False)
    assert report.ok, report.breaches


# --- the offer -------------------------------------------------------------------------------


def test_offer_is_pending_owes_nothing_and_tells_merchant_and_customer(
    customer, merchant, eager_tasks, sms_outbox, django_capture_on_commit_callbacks
):
    before = money_state()

    with django_capture_on_commit_callbacks(execute=True):
        plan = offered(customer, merchant, "500.00")

    plan.refresh_from_db()
    assert (plan.status, plan.total_amount, plan.authorized_amount) == (Plan.Status.PENDING, D("500.00"), D("500.00"))
    assert plan.checkout_token
    assert plan.checkout_url.endswith(f"/checkout/{plan.checkout_token}/")
    assert plan.expires_at is not None
    assert plan.confirmed_at is None
    assert plan.activated_at is None
    assert not plan.installments.exists()
    assert not JournalEntry.objects.filter(plan=plan).exists()
    after = money_state()
    assert after["plans"] == [*before["plans"], (plan.pk, Plan.Status.PENDING)]
    assert {k: v for k, v in after.items() if k != "plans"} == {k: v for k, v in before.items() if k != "plans"}
    assert events_of(plan) == [Event.Type.PLAN_PENDING]
    event = Event.objects.get(type=Event.Type.PLAN_PENDING)
    assert (event.merchant_id, event.data["status"], event.data["customer_id"]) == (
        merchant.pk,
        "PENDING",
        customer.user_id,
    )
    # The customer hears of it, by both channels, with the link to confirm it.
    notes = Notification.objects.filter(customer=customer, kind=Notification.Kind.OFFER, cause=f"plan:{plan.pk}")
    assert {n.channel for n in notes} == {Notification.Channel.EMAIL, Notification.Channel.SMS}
    assert {n.status for n in notes} == {Notification.Status.SENT}
    assert [(m.to, plan.checkout_url in m.body) for m in mail.outbox] == [([customer.email], True)]
    assert [(s.to, plan.checkout_url in s.body) for s in sms_outbox] == [(customer.phone_number, True)]
    # It reserves its amount and owes nothing.
    position = credit_position(customer=customer, currency="USD")
    assert (position.outstanding, position.reserved) == (D("0.00"), D("500.00"))
    assert_books_clean()


def test_offer_of_less_than_a_cent_per_installment_is_refused_naming_the_field(customer, merchant):
    before = everything()
    with pytest.raises(FieldInvalid) as refused:
        offered(customer, merchant, "0.03", count=4)
    assert list(refused.value.extra["errors"]) == ["total_amount"]
    assert everything() == before


# --- confirm ---------------------------------------------------------------------------------


def test_confirm_automatic_activates_from_today_with_the_exact_split_and_one_entry(customer, merchant):
    plan = offered(customer, merchant, "500.00", count=3)

    confirmed = plan_confirm(plan_id=plan.pk, customer=customer)

    plan.refresh_from_db()
    assert confirmed.status == plan.status == Plan.Status.ACTIVE
    assert plan.purchase_date == business_today()
    assert plan.confirmed_at is not None
    assert plan.activated_at is not None
    assert (plan.checkout_token, plan.checkout_url, plan.expires_at) == (None, None, None)
    expected = build_schedule(total=D("500.00"), count=3, frequency=plan.frequency, purchase_date=business_today())
    installments = list(plan.installments.order_by("sequence"))
    assert [(i.sequence, i.amount_due, i.due_date) for i in installments] == expected
    assert [i.amount_due for i in installments] == [D("166.67"), D("166.67"), D("166.66")]
    assert {(i.status, i.customer_id) for i in installments} == {(Installment.Status.UPCOMING, customer.pk)}
    assert entries(JournalEntry.Kind.ORIGINATION, plan=plan) == [
        [
            (CUSTOMER_RECEIVABLE, D("500.00")),
            (MERCHANT_FEE_INCOME, D("-20.30")),  # the fee at the default 4 % + 0.30
            (MERCHANT_PAYABLE, D("-500.00")),
            (MERCHANT_PAYABLE, D("20.30")),
        ]
    ]
    assert plan.merchant_fee == D("20.30")
    assert events_of(plan) == [Event.Type.PLAN_PENDING, Event.Type.PLAN_CONFIRMED]
    position = credit_position(customer=customer, currency="USD")
    assert (position.outstanding, position.reserved) == (D("500.00"), D("0.00"))
    assert_books_clean()


def test_confirm_manual_authorizes_until_the_authorization_lapses_and_owes_nothing(customer, merchant, settings):
    settings.BNPL_AUTHORIZATION_DAYS = 13
    plan = offered(customer, merchant, "500.00", mode=MANUAL)

    plan_confirm(plan_id=plan.pk, customer=customer)

    plan.refresh_from_db()
    assert plan.status == Plan.Status.AUTHORIZED
    assert plan.expires_at == plan.confirmed_at + timedelta(days=13)
    assert (plan.checkout_token, plan.checkout_url) == (None, None)
    assert not plan.installments.exists()
    assert not JournalEntry.objects.filter(plan=plan).exists()
    assert events_of(plan) == [Event.Type.PLAN_PENDING, Event.Type.PLAN_CONFIRMED]
    assert reserved(customer) == D("500.00")
    assert_books_clean()


def test_confirm_refuses_a_customer_who_became_a_debt_user_and_changes_nothing(customer, merchant, make_plan):
    make_plan(customer=customer, total="100.00", purchase_date=business_today() - timedelta(days=45))
    plan = offered(customer, merchant, "300.00")
    overdue_sweep(today=business_today())  # the older plan's first installment is past due
    customer.refresh_from_db()
    assert customer.status == User.Status.DEBT_USER
    before = everything()

    with pytest.raises(DebtUserForbidden) as refused:
        plan_confirm(plan_id=plan.pk, customer=customer)

    assert (refused.value.status_code, refused.value.code) == (403, "debt_user_forbidden")
    assert refused.value.detail == "Users with DEBT_USER status cannot create new BNPL plans"
    assert everything() == before
    assert_books_clean()


def test_confirm_declined_for_credit_tells_the_customer_their_own_figures(customer, merchant, make_plan):
    customer.credit_limit = D("1000.00")
    customer.save(update_fields=["credit_limit"])
    make_plan(customer=customer, total="300.00")  # owed
    offered(customer, merchant, "200.00")  # reserved
    plan = offered(customer, merchant, "400.00")  # 900.00 of 1000.00: it fits when offered
    User.objects.filter(pk=customer.pk).update(credit_limit=D("800.00"))  # an operator lowers the limit
    before = everything()

    with pytest.raises(CreditDeclined) as refused:
        plan_confirm(plan_id=plan.pk, customer=customer)

    assert (refused.value.status_code, refused.value.code) == (422, "credit_declined")
    # Its own reservation is not counted against it; the other offer's is.
    assert refused.value.extra == {
        "currency": "USD",
        "credit_limit": "800.00",
        "outstanding": "300.00",
        "reserved": "200.00",
        "available": "300.00",
    }
    assert everything() == before


# --- capture, void, decline --------------------------------------------------------------------


def test_capture_of_everything_activates_the_authorized_amount(customer, merchant):
    plan = authorized(customer, merchant, "500.00")

    captured = plan_capture(plan_id=plan.pk)

    plan.refresh_from_db()
    assert captured.status == plan.status == Plan.Status.ACTIVE
    assert (plan.total_amount, plan.authorized_amount, plan.expires_at) == (D("500.00"), D("500.00"), None)
    assert [i.amount_due for i in plan.installments.order_by("sequence")] == [D("166.67"), D("166.67"), D("166.66")]
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == D("500.00")
    assert events_of(plan) == [Event.Type.PLAN_PENDING, Event.Type.PLAN_CONFIRMED, Event.Type.PLAN_CAPTURED]
    assert reserved(customer) == D("0.00")
    assert_books_clean()


def test_partial_capture_splits_the_schedule_over_what_was_captured_and_releases_the_rest(customer, merchant):
    customer.credit_limit = D("1000.00")
    customer.save(update_fields=["credit_limit"])
    plan = authorized(customer, merchant, "1000.00")
    with pytest.raises(CreditDeclined):  # the authorization holds the whole limit
        offered(customer, merchant, "0.03")

    plan_capture(plan_id=plan.pk, amount=D("400.00"))

    plan.refresh_from_db()
    assert (plan.status, plan.total_amount, plan.authorized_amount) == (Plan.Status.ACTIVE, D("400.00"), D("1000.00"))
    installments = list(plan.installments.order_by("sequence"))
    assert [(i.sequence, i.amount_due, i.due_date) for i in installments] == build_schedule(
        total=D("400.00"), count=3, frequency=plan.frequency, purchase_date=business_today()
    )
    assert [i.amount_due for i in installments] == [D("133.34"), D("133.33"), D("133.33")]
    assert entries(JournalEntry.Kind.ORIGINATION, plan=plan) == [
        [
            (CUSTOMER_RECEIVABLE, D("400.00")),
            (MERCHANT_FEE_INCOME, D("-16.30")),  # the fee on what was captured, not on what was authorized
            (MERCHANT_PAYABLE, D("-400.00")),
            (MERCHANT_PAYABLE, D("16.30")),
        ]
    ]
    assert plan.merchant_fee == D("16.30")
    position = credit_position(customer=customer, currency="USD")
    assert (position.outstanding, position.reserved, position.available) == (D("400.00"), D("0.00"), D("600.00"))
    offered(customer, merchant, "600.00")  # the 600.00 not captured is free again
    assert_books_clean()


def test_capture_above_the_authorized_amount_is_refused_and_changes_nothing(customer, merchant):
    plan = authorized(customer, merchant, "500.00")
    before = everything()

    with pytest.raises(CaptureExceedsAuthorized) as refused:
        plan_capture(plan_id=plan.pk, amount=D("500.01"))

    assert (refused.value.status_code, refused.value.code) == (422, "capture_exceeds_authorized")
    assert refused.value.extra == {"authorized_amount": "500.00"}
    assert everything() == before


@pytest.mark.parametrize(("amount", "accepted"), [("0.02", False), ("0.03", True)])
def test_capture_needs_a_cent_per_installment(customer, merchant, amount, accepted):
    plan = authorized(customer, merchant, "500.00", count=3)
    before = everything()

    if accepted:
        plan_capture(plan_id=plan.pk, amount=D(amount))
        assert list(plan.installments.values_list("amount_due", flat=True)) == [D("0.01")] * 3
        assert_books_clean()
        return
    with pytest.raises(FieldInvalid) as refused:
        plan_capture(plan_id=plan.pk, amount=D(amount))
    assert list(refused.value.extra["errors"]) == ["amount"]
    assert everything() == before


def test_void_ends_an_authorization_with_nothing_owed(customer, merchant):
    plan = authorized(customer, merchant, "500.00")
    before = money_state()

    voided = plan_void(plan_id=plan.pk)

    plan.refresh_from_db()
    assert voided.status == plan.status == Plan.Status.VOIDED
    assert {k: v for k, v in money_state().items() if k != "plans"} == {k: v for k, v in before.items() if k != "plans"}
    assert not plan.installments.exists()
    assert events_of(plan)[-1] == Event.Type.PLAN_VOIDED
    assert reserved(customer) == D("0.00")
    assert_books_clean()


def test_decline_ends_an_offer_with_nothing_owed(customer, merchant):
    plan = offered(customer, merchant, "500.00")

    declined = plan_decline(plan_id=plan.pk)

    plan.refresh_from_db()
    assert declined.status == plan.status == Plan.Status.DECLINED
    assert (plan.checkout_token, plan.checkout_url) == (None, None)
    assert not plan.installments.exists()
    assert not JournalEntry.objects.filter(plan=plan).exists()
    assert events_of(plan) == [Event.Type.PLAN_PENDING, Event.Type.PLAN_DECLINED]
    assert reserved(customer) == D("0.00")
    assert_books_clean()


# --- every transition from the wrong state -------------------------------------------------------


def _in_state(state: str, customer, merchant) -> Plan:
    if state == "ACTIVE (back office)":
        return plan_create(customer=customer, merchant=merchant, total_amount=D("500.00"), installment_count=3)
    if state == "PENDING":
        return offered(customer, merchant)
    if state in ("AUTHORIZED", "VOIDED"):
        plan = authorized(customer, merchant)
        return plan_void(plan_id=plan.pk) if state == "VOIDED" else plan
    if state == "ACTIVE (confirmed)":
        return plan_confirm(plan_id=offered(customer, merchant).pk, customer=customer)
    if state == "ACTIVE (captured)":
        return plan_capture(plan_id=authorized(customer, merchant).pk, amount=D("300.00"))
    if state == "DECLINED":
        return plan_decline(plan_id=offered(customer, merchant).pk)
    if state in ("EXPIRED (offer)", "EXPIRED (authorization)"):
        plan = offered(customer, merchant) if state == "EXPIRED (offer)" else authorized(customer, merchant)
        assert plans_expire(now=plan.expires_at) == 1
        return plan
    raise AssertionError(state)


ACTIONS = {
    "confirm": lambda plan, customer: plan_confirm(plan_id=plan.pk, customer=customer),
    "decline": lambda plan, customer: plan_decline(plan_id=plan.pk),
    "capture": lambda plan, customer: plan_capture(plan_id=plan.pk),
    "capture part": lambda plan, customer: plan_capture(plan_id=plan.pk, amount=D("100.00")),
    "void": lambda plan, customer: plan_void(plan_id=plan.pk),
}
ALLOWED = {"PENDING": {"confirm", "decline"}, "AUTHORIZED": {"capture", "capture part", "void"}}
STATES = [
    "PENDING",
    "AUTHORIZED",
    "ACTIVE (back office)",
    "ACTIVE (confirmed)",
    "ACTIVE (captured)",
    "DECLINED",
    "VOIDED",
    "EXPIRED (offer)",
    "EXPIRED (authorization)",
]
WRONG = [(s, a) for s in STATES for a in ACTIONS if a not in ALLOWED.get(s, ())]


@pytest.mark.parametrize(("state", "action"), WRONG)
def test_a_transition_from_the_wrong_state_is_a_409_and_changes_nothing(customer, merchant, state, action):
    plan = _in_state(state, customer, merchant)
    plan.refresh_from_db()
    before = everything()

    with pytest.raises((PlanNotPending, PlanNotAuthorized)) as refused:
        ACTIONS[action](plan, customer)

    expected = PlanNotPending if action in ("confirm", "decline") else PlanNotAuthorized
    assert type(refused.value) is expected
    assert refused.value.status_code == 409
    codes = {PlanNotPending: "plan_not_pending", PlanNotAuthorized: "plan_not_authorized"}
    assert refused.value.code == codes[expected]
    assert refused.value.extra == {"plan_status": plan.status}
    assert everything() == before
    assert_books_clean()


# --- reservations ----------------------------------------------------------------------------


def _limited(limit: str) -> User:
    return UserFactory(credit_limit=D(limit))


def test_pending_offers_use_the_limit_and_the_one_above_it_is_declined_saying_nothing(merchant):
    customer = _limited("1000.00")
    offered(customer, merchant, "400.00")
    offered(customer, merchant, "400.00")
    before = everything()

    with pytest.raises(CreditDeclined) as refused:
        offered(customer, merchant, "200.01")

    assert (refused.value.status_code, refused.value.code, refused.value.extra) == (422, "credit_declined", {})
    assert everything() == before
    assert reserved(customer) == D("800.00")
    offered(customer, merchant, "200.00")  # exactly up to the limit


@pytest.mark.parametrize("ending", ["decline", "expire", "void"])
def test_an_open_plan_that_ends_releases_its_reservation(merchant, ending):
    customer = _limited("1000.00")
    plan = (authorized if ending == "void" else offered)(customer, merchant, "600.00")
    with pytest.raises(CreditDeclined):
        offered(customer, merchant, "400.01")

    if ending == "decline":
        plan_decline(plan_id=plan.pk)
    elif ending == "void":
        plan_void(plan_id=plan.pk)
    else:
        assert plans_expire(now=plan.expires_at) == 1

    assert reserved(customer) == D("0.00")
    offered(customer, merchant, "1000.00")
    assert_books_clean()


def test_credit_is_per_currency_an_eur_plan_does_not_use_the_usd_limit(merchant):
    customer = _limited("1000.00")
    offered(customer, merchant, "1000.00", currency="USD")

    eur = offered(customer, merchant, "1000.00", currency="EUR")
    plan_confirm(plan_id=eur.pk, customer=customer)

    positions = credit_positions(customer=customer)
    assert {c: (p.outstanding, p.reserved, p.available) for c, p in positions.items()} == {
        "EUR": (D("1000.00"), D("0.00"), D("0.00")),
        "USD": (D("0.00"), D("1000.00"), D("0.00")),
    }
    for currency in ("USD", "EUR"):
        with pytest.raises(CreditDeclined):
            offered(customer, merchant, "0.03", currency=currency)
    assert_books_clean()


# --- merchant references -------------------------------------------------------------------------


def test_the_same_reference_and_terms_return_the_plan_made_before(customer, merchant):
    first = offered(customer, merchant, "500.00", reference="order-1")
    before = everything()

    again, created = plan_offer(
        customer=customer,
        merchant=merchant,
        offer=Offer(total_amount=D("500.00"), installment_count=3, currency="USD", merchant_reference="order-1"),
    )

    assert (again.pk, created) == (first.pk, False)
    assert everything() == before
    # Still so once the customer has confirmed it.
    plan_confirm(plan_id=first.pk, customer=customer)
    again, created = plan_offer(
        customer=customer,
        merchant=merchant,
        offer=Offer(total_amount=D("500.00"), installment_count=3, merchant_reference="order-1"),  # default USD
    )
    assert (again.pk, again.status, created) == (first.pk, Plan.Status.ACTIVE, False)


@pytest.mark.parametrize(
    "other",
    [
        {"total_amount": D("500.01")},
        {"installment_count": 4},
        {"frequency": Plan.Frequency.WEEKLY},
        {"currency": "EUR"},
        {"capture_mode": MANUAL},
        {"customer": "another"},
    ],
    ids=lambda other: next(iter(other)),
)
def test_the_same_reference_with_other_terms_is_a_conflict(customer, other_customer, merchant, other):
    offered(customer, merchant, "500.00", reference="order-1")
    terms = {"total_amount": D("500.00"), "installment_count": 3, "currency": "USD", "merchant_reference": "order-1"}
    terms |= {k: v for k, v in other.items() if k != "customer"}
    before = everything()

    buyer = other_customer if "customer" in other else customer
    with pytest.raises(MerchantReferenceConflict) as refused:
        plan_offer(customer=buyer, merchant=merchant, offer=Offer(**terms))

    assert (refused.value.status_code, refused.value.code) == (409, "merchant_reference_conflict")
    assert everything() == before


def test_a_reference_is_unique_per_merchant_only(customer, merchant):
    first = offered(customer, merchant, "100.00", reference="order-1")
    second = offered(customer, MerchantFactory(), "100.00", reference="order-1")
    unnamed = [offered(customer, merchant, "100.00"), offered(customer, merchant, "100.00")]  # "" is no reference
    assert len({first.pk, second.pk, *(p.pk for p in unnamed)}) == 4


def test_a_retry_with_the_reference_returns_the_plan_though_the_customer_fell_into_debt_since(customer, merchant):
    """The reference is found after the credit check: a refusal then still answers with the plan
    the first request made, as a retry that waited on the customer's lock does."""
    first = offered(customer, merchant, "500.00", reference="order-1")
    User.objects.filter(pk=customer.pk).update(status=User.Status.DEBT_USER)
    before = everything()

    again, created = plan_offer(
        customer=customer,
        merchant=merchant,
        offer=Offer(total_amount=D("500.00"), installment_count=3, currency="USD", merchant_reference="order-1"),
    )

    assert (again.pk, created) == (first.pk, False)
    assert everything() == before
    with pytest.raises(DebtUserForbidden):  # a new reference is refused
        offered(customer, merchant, "500.00", reference="order-2")


@pytest.mark.postgres
@pytest.mark.parametrize("webhook_url", ["", "https://shop.example/hooks"], ids=["no endpoint", "endpoint"])
@pytest.mark.parametrize(
    "addresses",
    [("buyer@example.com", "+998901112233"), ("", "+998901112233"), ("buyer@example.com", ""), ("", "")],
    ids=["both", "sms only", "email only", "none"],
)
def test_the_offers_one_statement_writes_what_the_orm_path_writes(monkeypatch, webhook_url, addresses):
    """PostgreSQL writes the offer (plan, ``plan.pending`` event, the customer's notifications)
    in one statement; the ORM path (SQLite) in five. The same rows and after-commit work."""
    from bnpl.services import checkout
    from events import notifications, services

    merchant = MerchantFactory(webhook_url=webhook_url, full_name="Shop 'Ltd'")
    customer = UserFactory(email=addresses[0], phone_number=addresses[1])
    queued: list = []
    dispatch = lambda event_id: queued.append(("dispatch", Event.objects.get(pk=event_id).type))  # noqa: E731
    send = lambda *, causes: queued.append(("send", sorted(causes)))  # noqa: E731
    for module in (checkout, services):
        monkeypatch.setattr(module, "event_dispatch_after_commit", dispatch)
    for module in (checkout, notifications):
        monkeypatch.setattr(module, "notifications_send_after_commit", send)

    def rows(plan: Plan, made: Plan) -> dict:
        stored = Plan.objects.filter(pk=plan.pk).values().get()
        assert {name: getattr(made, name) for name in stored} == stored  # what the caller got is what was stored
        hide = {plan.checkout_token: "<token>", stored["merchant_reference"]: "<ref>"}

        def hidden(text):
            for value, mark in hide.items():
                text = text.replace(value, mark)
            return text

        event = Event.objects.get(type=Event.Type.PLAN_PENDING, data__plan_id=plan.pk)
        return {
            "plan": {
                k: hidden(v) if isinstance(v, str) else v
                for k, v in stored.items()
                if k not in {"id", "expires_at", "created_at", "updated_at"}
            },
            # The ORM stamps created_at itself, a moment after the offer's time was taken.
            "lapses after": round((stored["expires_at"] - stored["created_at"]).total_seconds()),
            "event": (
                event.merchant_id,
                event.delivery_status,
                event.attempts,
                event.next_attempt_at == event.created_at,
                abs(event.created_at - stored["created_at"]) < timedelta(seconds=1),
                event.give_up_at - event.created_at,
                event.data | {"plan_id": "#", "merchant_reference": "<ref>", "expires_at": "<expires>"},
                event.data["expires_at"] == Event._meta.get_field("data").encoder().default(stored["expires_at"]),
            ),
            "notifications": [
                (n.customer_id, n.kind, n.channel, hidden(n.subject), hidden(n.body), n.status, n.error, n.sent_at)
                for n in Notification.objects.filter(cause=f"plan:{plan.pk}").order_by("id")
            ],
            "notified within a second": all(
                abs(n.created_at - stored["created_at"]) < timedelta(seconds=1)
                for n in Notification.objects.filter(cause=f"plan:{plan.pk}")
            ),
            "queued": [(what, str(detail).replace(f"plan:{plan.pk}'", "plan:#'")) for what, detail in queued],
        }

    def offer(reference: str) -> dict:
        queued.clear()
        with transaction.atomic():  # the after-commit work is queued, not run, inside the test's transaction
            made, created = plan_offer(
                customer=customer,
                merchant=merchant,
                offer=Offer(
                    total_amount=D("500.01"), installment_count=3, currency="EUR", merchant_reference=reference
                ),
            )
        assert created
        return rows(Plan.objects.get(pk=made.pk), made)

    with CaptureQueriesContext(connection) as one:
        pg = offer("order-'7\"pg")
    monkeypatch.setattr(checkout, "postgresql", lambda: False)
    with CaptureQueriesContext(connection) as orm:
        by_orm = offer("order-'7\"orm")

    assert pg == by_orm
    assert len(pg["notifications"]) == 2
    written = [q["sql"] for q in one.captured_queries if "INSERT" in q["sql"]]
    assert len(written) == 1, written  # plan, event and notifications in one statement
    assert len(orm.captured_queries) > len(one.captured_queries)


@pytest.mark.postgres
def test_the_offers_statement_writes_nothing_for_a_reference_used_before(customer, merchant):
    first = offered(customer, merchant, "100.00", reference="order-1")
    before = everything()

    again, created = plan_offer(
        customer=customer,
        merchant=merchant,
        offer=Offer(total_amount=D("100.00"), installment_count=3, currency="USD", merchant_reference="order-1"),
    )

    assert (again.pk, created) == (first.pk, False)
    assert everything() == before  # no second event, no notification


# --- no enumeration ----------------------------------------------------------------------------


def test_unknown_and_out_of_scope_customers_get_the_answer_a_real_decline_gets(merchant, operator):
    poor = _limited("100.00")
    inactive = UserFactory(is_active=False)
    answers = []
    for user_id in ("usr-nobody", MerchantFactory().user_id, operator.user_id, inactive.user_id, merchant.user_id):
        with pytest.raises(CreditDeclined) as refused:
            plan_parties_resolve(creator=merchant, user_id=user_id, merchant_id=None)
        answers.append(refused.value)
    customer, _ = plan_parties_resolve(creator=merchant, user_id=poor.user_id, merchant_id=None)
    with pytest.raises(CreditDeclined) as real:
        offered(customer, merchant, "100.01")
    answers.append(real.value)

    assert {(a.status_code, a.code, a.title, a.detail, tuple(a.extra.items())) for a in answers} == {
        (422, "credit_declined", "Credit declined", "The customer cannot take this plan.", ())
    }
    assert not Plan.objects.exists()


# --- expiry ------------------------------------------------------------------------------------


def test_expiry_ends_offers_past_the_ttl_and_authorizations_past_their_days_only(customer, merchant, settings):
    settings.BNPL_CHECKOUT_TTL_MINUTES = 60
    settings.BNPL_AUTHORIZATION_DAYS = 13
    pending = offered(customer, merchant, "100.00")
    auth = authorized(customer, merchant, "100.00")
    active = plan_confirm(plan_id=offered(customer, merchant, "100.00").pk, customer=customer)
    declined = plan_decline(plan_id=offered(customer, merchant, "100.00").pk)
    assert pending.expires_at <= pending.created_at + timedelta(minutes=60)
    assert auth.expires_at == auth.confirmed_at + timedelta(days=13)
    before = money_state()

    assert plans_expire(now=pending.expires_at - timedelta(microseconds=1)) == 0
    assert plans_expire(now=pending.expires_at) == 1

    statuses = dict(Plan.objects.values_list("pk", "status"))
    assert statuses == {
        pending.pk: Plan.Status.EXPIRED,
        auth.pk: Plan.Status.AUTHORIZED,
        active.pk: Plan.Status.ACTIVE,
        declined.pk: Plan.Status.DECLINED,
    }
    assert plans_expire(now=auth.expires_at - timedelta(seconds=1)) == 0
    assert plans_expire(now=auth.expires_at) == 1
    assert plans_expire(now=auth.expires_at + timedelta(days=400)) == 0  # nothing else is open

    assert dict(Plan.objects.values_list("pk", "status"))[auth.pk] == Plan.Status.EXPIRED
    for plan in (pending, auth):
        plan.refresh_from_db()
        assert plan.checkout_token is None
        assert not plan.installments.exists()
        assert events_of(plan).count(Event.Type.PLAN_EXPIRED) == 1
        assert Event.objects.get(type=Event.Type.PLAN_EXPIRED, data__plan_id=plan.pk).data["status"] == "EXPIRED"
    assert Event.objects.filter(type=Event.Type.PLAN_EXPIRED).count() == 2
    assert {k: v for k, v in money_state().items() if k != "plans"} == {k: v for k, v in before.items() if k != "plans"}
    assert reserved(customer) == D("0.00")
    assert_books_clean()


def test_expiry_goes_chunk_by_chunk_in_a_fixed_number_of_queries_each(customer, merchant):
    plans = [offered(customer, merchant, "10.00") for _ in range(5)]
    later = max(plan.expires_at for plan in plans)

    with CaptureQueriesContext(connection) as run:
        assert plans_expire(now=later, chunk=2) == 5

    assert set(Plan.objects.values_list("status", flat=True)) == {Plan.Status.EXPIRED}
    assert Event.objects.filter(type=Event.Type.PLAN_EXPIRED).count() == 5
    # Chunks of 2, 2 and 1: three reads, three updates and three event inserts, whatever
    # the number of plans in a chunk (plus each chunk's savepoint and its release).
    sql = [q["sql"] for q in run.captured_queries]
    selects = [s for s in sql if s.startswith("SELECT") and '"bnpl_plan"' in s]
    updates = [s for s in sql if s.startswith("UPDATE")]
    inserts = [s for s in sql if s.startswith("INSERT")]
    assert (len(selects), len(updates), len(inserts)) == (3, 3, 3), sql
    assert len(sql) <= 3 * 5, sql


def test_a_chunk_size_of_the_whole_set_takes_the_same_queries_as_one_plan(customer, merchant):
    """Set-based: expiring twenty plans costs what expiring one does."""
    one = offered(customer, merchant, "10.00")
    with CaptureQueriesContext(connection) as single:
        plans_expire(now=one.expires_at, chunk=100)
    many = [offered(customer, merchant, "10.00") for _ in range(20)]
    with CaptureQueriesContext(connection) as twenty:
        assert plans_expire(now=max(p.expires_at for p in many), chunk=100) == 20
    assert len(twenty.captured_queries) == len(single.captured_queries)


def test_an_offer_past_its_time_cannot_be_confirmed_or_declined_before_the_task_runs(customer, merchant, settings):
    settings.BNPL_CHECKOUT_TTL_MINUTES = 0  # lapsed the moment it is made
    plan = offered(customer, merchant, "100.00")
    before = everything()

    for act in (lambda: plan_confirm(plan_id=plan.pk, customer=customer), lambda: plan_decline(plan_id=plan.pk)):
        with pytest.raises(PlanNotPending) as refused:
            act()
        assert (refused.value.status_code, refused.value.extra) == (409, {"plan_status": "EXPIRED"})

    assert everything() == before  # still PENDING in the table until the task runs
    assert plans_expire() == 1
    plan.refresh_from_db()
    assert plan.status == Plan.Status.EXPIRED


def test_an_authorization_past_its_time_cannot_be_captured_or_voided_before_the_task_runs(customer, merchant, settings):
    settings.BNPL_AUTHORIZATION_DAYS = 0  # lapsed the moment it is confirmed
    plan = authorized(customer, merchant, "100.00")
    before = everything()

    for act in (
        lambda: plan_capture(plan_id=plan.pk),
        lambda: plan_capture(plan_id=plan.pk, amount=D("50.00")),
        lambda: plan_void(plan_id=plan.pk),
    ):
        with pytest.raises(PlanNotAuthorized) as refused:
            act()
        assert (refused.value.status_code, refused.value.extra) == (409, {"plan_status": "EXPIRED"})

    assert everything() == before
    assert plans_expire() == 1
    assert Plan.objects.get(pk=plan.pk).status == Plan.Status.EXPIRED
    assert_books_clean()


def test_expiry_is_harmless_run_again(customer, merchant):
    plan = offered(customer, merchant, "100.00")
    assert plans_expire(now=plan.expires_at) == 1
    before = everything()
    assert plans_expire(now=plan.expires_at + timedelta(days=30)) == 0
    assert everything() == before


def test_expiry_with_no_time_given_uses_now(customer, merchant):
    plan = offered(customer, merchant, "100.00")
    assert plans_expire() == 0
    assert Plan.objects.get(pk=plan.pk).status == Plan.Status.PENDING
    assert plan.expires_at > timezone.now()


def test_only_the_plans_customer_can_confirm_it(customer, other_customer, merchant):
    plan = offered(customer, merchant)
    before = everything()

    with pytest.raises(Plan.DoesNotExist):
        plan_confirm(plan_id=plan.pk, customer=other_customer)

    assert everything() == before


@pytest.mark.postgres
@pytest.mark.parametrize("price", [(D("2.50"), None), (None, D("0.00")), (None, None)], ids=["percent", "fixed", "no"])
def test_the_plans_lock_reads_what_the_orm_reads(customer, monkeypatch, price):
    """The statement that locks a plan for its move (written out on PostgreSQL) gives the plan
    and its merchant's public id and price as the ORM's join does, and locks the plan."""
    from bnpl.services import checkout

    merchant = MerchantFactory(fee_percent=price[0], fee_fixed=price[1])
    plan = offered(customer, merchant)

    def locked(customer_id=None) -> tuple:
        with transaction.atomic(), CaptureQueriesContext(connection) as lock:
            read = checkout._plan_locked(plan.pk, customer_id=customer_id)
        assert [q["sql"] for q in lock.captured_queries if "FOR NO KEY UPDATE" in q["sql"]], lock.captured_queries
        fields = {f.attname: getattr(read, f.attname) for f in Plan._meta.concrete_fields}
        seller = read.merchant
        parties = [(seller.pk, seller.user_id, seller.fee_percent, seller.fee_fixed), seller.get_deferred_fields()]
        if customer_id is not None:
            buyer = read.customer
            parties.append((buyer.pk, buyer.status, buyer.credit_limit))
        return fields, *parties

    by_sql = {customer_id: locked(customer_id) for customer_id in (None, customer.pk)}
    monkeypatch.setattr(checkout, "postgresql", lambda: False)
    assert {customer_id: locked(customer_id) for customer_id in (None, customer.pk)} == by_sql
    assert by_sql[None][1] == by_sql[customer.pk][1] == (merchant.pk, merchant.user_id, *price)
    assert by_sql[customer.pk][3] == (customer.pk, customer.status, customer.credit_limit)
    assert by_sql[customer.pk][0] == by_sql[None][0]  # the plan's own customer, not the one given
    monkeypatch.setattr(checkout, "postgresql", lambda: True)
    for customer_id in (None, customer.pk):
        with pytest.raises(Plan.DoesNotExist), transaction.atomic():
            checkout._plan_locked(plan.pk + 1000, customer_id=customer_id)
    with pytest.raises(Plan.DoesNotExist), transaction.atomic():
        checkout._plan_locked(plan.pk, customer_id=MerchantFactory().pk)  # not the plan's customer


@pytest.mark.parametrize("state", ["pending", "active", "declined"])
def test_another_customers_plan_is_not_found_whatever_its_state(customer, other_customer, merchant, state):
    """The scope is held before the state: a plan not offered to the caller says nothing of its state."""
    plan = offered(customer, merchant)
    if state == "active":
        plan_confirm(plan_id=plan.pk, customer=customer)
    elif state == "declined":
        plan_decline(plan_id=plan.pk)
    before = everything()

    with pytest.raises(Plan.DoesNotExist):
        plan_confirm(plan_id=plan.pk, customer=other_customer)

    assert everything() == before


def test_a_lapsed_offer_reserves_nothing_before_the_expiry_task_runs(customer, merchant):
    plan = offered(customer, merchant, total="300.00")
    assert reserved(customer) == Decimal("300.00")

    Plan.objects.filter(pk=plan.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert reserved(customer) == Decimal("0.00")
    assert Plan.objects.get(pk=plan.pk).status == Plan.Status.PENDING
