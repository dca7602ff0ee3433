"""Consent under concurrency, on PostgreSQL with real threads (each its own connection):
a confirm or capture racing the expiry task, capture racing void, a confirm twice, offers
with one merchant reference at once, credit spent by several requests of one customer.

Two kinds of test: rounds released together by a barrier (whichever wins, exactly one
does), and the two orders forced by keeping one side's transaction open (both outcomes
are seen, whatever the scheduler does). The books are checked after each."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import IntegrityError, OperationalError, connection, connections, transaction

from accounts.models import User
from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.errors import CreditDeclined, MerchantReferenceConflict, PlanNotAuthorized, PlanNotPending
from bnpl.models import Plan
from bnpl.selectors import credit_position
from bnpl.services.checkout import (
    Offer,
    _plan_locked,
    plan_capture,
    plan_confirm,
    plan_offer,
    plan_offer_named,
    plan_void,
    plans_expire,
)
from bnpl.services.origination import plan_parties_resolve
from bnpl.tests.test_concurrency import run_at_once
from events.models import Event, Notification
from ledger.accounts import CUSTOMER_RECEIVABLE
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.tests.books import balance
from payments.services import payment_collect
from refunds.models import Refund
from refunds.tests.factories import refund_requested

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

D = Decimal
ROUNDS = 15


@pytest.fixture(autouse=True)
def _short_windows(settings):
    # An offer open a minute, an authorization a day: the expiry task is handed ``now`` at
    # the plan's expiry while the confirm or capture, in real time, is still within it.
    settings.BNPL_CHECKOUT_TTL_MINUTES = 1
    settings.BNPL_AUTHORIZATION_DAYS = 1


def offered(customer, merchant, total="300.00", *, mode=Plan.CaptureMode.AUTOMATIC, reference="") -> Plan:
    offer = Offer(total_amount=D(total), installment_count=3, merchant_reference=reference, capture_mode=mode)
    return plan_offer(customer=customer, merchant=merchant, offer=offer)[0]


def authorized(customer, merchant, total="300.00") -> Plan:
    plan = offered(customer, merchant, total, mode=Plan.CaptureMode.MANUAL)
    return plan_confirm(plan_id=plan.pk, customer=customer)


def assert_books_clean() -> None:
    report = ledger_check(record=False)
    assert report.ok, report.breaches


def origination_entries(plan: Plan) -> int:
    return JournalEntry.objects.filter(plan=plan, kind=JournalEntry.Kind.ORIGINATION).count()


def plan_events(plan: Plan, type_: str) -> int:
    return Event.objects.filter(type=type_, data__plan_id=plan.pk).count()


def assert_activated_once(plan: Plan, total: str, event: str) -> None:
    plan.refresh_from_db()
    assert plan.status == Plan.Status.ACTIVE
    assert plan.installments.count() == 3
    assert origination_entries(plan) == 1
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == D(total)
    assert plan_events(plan, event) == 1
    assert plan_events(plan, Event.Type.PLAN_EXPIRED) == 0


def assert_expired_untouched(plan: Plan) -> None:
    plan.refresh_from_db()
    assert plan.status == Plan.Status.EXPIRED
    assert not plan.installments.exists()
    assert origination_entries(plan) == 0
    assert plan_events(plan, Event.Type.PLAN_EXPIRED) == 1
    assert plan_events(plan, Event.Type.PLAN_CAPTURED) == 0


class HeldOpen:
    """Run ``action`` in a thread, in a transaction kept open once it has run (its row locks
    held, its changes not yet visible) until another connection waits on a lock or
    ``release()`` is called; then commit. ``saw_waiter``: whether anyone waited on it."""

    def __init__(self, action, timeout: float = 10):
        self.result = None
        self.saw_waiter = False
        self._ran, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, args=(action, timeout))
        self._thread.start()
        assert self._ran.wait(timeout), "the held action did not run"

    def _run(self, action, timeout: float) -> None:
        try:
            with transaction.atomic():
                self.result = action()
                self._ran.set()
                deadline = time.monotonic() + timeout
                with connection.cursor() as cursor:
                    while time.monotonic() < deadline and not self._release.is_set():
                        cursor.execute(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                        if cursor.fetchone()[0]:
                            self.saw_waiter = True
                            break
                        time.sleep(0.02)
        except Exception as exc:
            self.result = exc
        finally:
            self._ran.set()
            connections.close_all()

    def release(self):
        self._release.set()
        self._thread.join()
        return self.result


# --- confirm vs expiry ---------------------------------------------------------------------------


def test_confirm_racing_the_expiry_task_exactly_one_wins_every_round():
    merchant = MerchantFactory()
    outcomes = []
    for _ in range(ROUNDS):
        customer = UserFactory()
        plan = offered(customer, merchant)
        confirm, expired = run_at_once(
            2,
            lambda i, plan=plan, customer=customer: (
                plan_confirm(plan_id=plan.pk, customer=customer) if i == 0 else plans_expire(now=plan.expires_at)
            ),
        )
        if isinstance(confirm, Plan):
            assert expired == 0
            assert_activated_once(plan, "300.00", Event.Type.PLAN_CONFIRMED)
            outcomes.append("confirmed")
        else:
            assert isinstance(confirm, PlanNotPending), confirm
            assert expired == 1
            assert_expired_untouched(plan)
            assert plan_events(plan, Event.Type.PLAN_CONFIRMED) == 0
            assert credit_position(customer=customer, currency="USD").reserved == D("0.00")
            outcomes.append("expired")
    assert len(outcomes) == ROUNDS
    assert_books_clean()


def test_a_confirm_holding_the_plan_makes_the_expiry_task_pass_it_by_without_waiting():
    customer, merchant = UserFactory(), MerchantFactory()
    plan = offered(customer, merchant)
    held = HeldOpen(lambda: plan_confirm(plan_id=plan.pk, customer=customer))

    expired = plans_expire(now=plan.expires_at)  # skips the locked row: neither waits nor expires it
    confirmed = held.release()

    assert (expired, held.saw_waiter, type(confirmed)) == (0, False, Plan)
    assert plans_expire(now=plan.expires_at) == 0  # now ACTIVE: nothing left to expire
    assert_activated_once(plan, "300.00", Event.Type.PLAN_CONFIRMED)
    assert_books_clean()


def test_a_confirm_waiting_on_the_expiry_task_is_told_the_plan_expired():
    customer, merchant = UserFactory(), MerchantFactory()
    plan = offered(customer, merchant)
    held = HeldOpen(lambda: plans_expire(now=plan.expires_at))

    with pytest.raises(PlanNotPending) as refused:
        plan_confirm(plan_id=plan.pk, customer=customer)  # waits for the task, then reads EXPIRED

    assert (held.release(), held.saw_waiter) == (1, True)
    assert refused.value.extra == {"plan_status": Plan.Status.EXPIRED}
    assert_expired_untouched(plan)
    assert_books_clean()


# --- capture vs expiry, capture vs void ----------------------------------------------------------


def test_capture_racing_the_expiry_task_exactly_one_wins_every_round():
    merchant = MerchantFactory()
    for round_ in range(ROUNDS):
        customer = UserFactory()
        plan = authorized(customer, merchant)
        amount = None if round_ % 2 else D("200.00")  # whole and partial captures
        capture, expired = run_at_once(
            2,
            lambda i, plan=plan, amount=amount: (
                plan_capture(plan_id=plan.pk, amount=amount) if i == 0 else plans_expire(now=plan.expires_at)
            ),
        )
        if isinstance(capture, Plan):
            assert expired == 0
            assert_activated_once(plan, "300.00" if amount is None else "200.00", Event.Type.PLAN_CAPTURED)
        else:
            assert isinstance(capture, PlanNotAuthorized), capture
            assert expired == 1
            assert_expired_untouched(plan)
        assert credit_position(customer=customer, currency="USD").reserved == D("0.00")
    assert_books_clean()


@pytest.mark.parametrize("first", ["capture", "expiry"])
def test_capture_and_expiry_in_either_order(first):
    customer, merchant = UserFactory(), MerchantFactory()
    plan = authorized(customer, merchant)
    capture = lambda: plan_capture(plan_id=plan.pk, amount=D("250.00"))  # noqa: E731
    expire = lambda: plans_expire(now=plan.expires_at)  # noqa: E731

    if first == "capture":
        held = HeldOpen(capture)
        assert expire() == 0
        assert isinstance(held.release(), Plan)
        assert_activated_once(plan, "250.00", Event.Type.PLAN_CAPTURED)
    else:
        held = HeldOpen(expire)
        with pytest.raises(PlanNotAuthorized):
            capture()
        assert (held.release(), held.saw_waiter) == (1, True)
        assert_expired_untouched(plan)
    assert_books_clean()


def test_capture_racing_void_exactly_one_wins_every_round():
    merchant = MerchantFactory()
    for _ in range(ROUNDS):
        customer = UserFactory()
        plan = authorized(customer, merchant)
        capture, void = run_at_once(
            2, lambda i, plan=plan: plan_capture(plan_id=plan.pk) if i == 0 else plan_void(plan_id=plan.pk)
        )
        won = [r for r in (capture, void) if isinstance(r, Plan)]
        lost = [r for r in (capture, void) if isinstance(r, PlanNotAuthorized)]
        assert (len(won), len(lost)) == (1, 1), (capture, void)
        plan.refresh_from_db()
        if isinstance(capture, Plan):
            assert_activated_once(plan, "300.00", Event.Type.PLAN_CAPTURED)
            assert plan_events(plan, Event.Type.PLAN_VOIDED) == 0
        else:
            assert plan.status == Plan.Status.VOIDED
            assert not plan.installments.exists()
            assert origination_entries(plan) == 0
            assert plan_events(plan, Event.Type.PLAN_CAPTURED) == 0
            assert plan_events(plan, Event.Type.PLAN_VOIDED) == 1
        assert lost[0].extra == {"plan_status": plan.status}
    assert_books_clean()


# --- the same plan confirmed twice ----------------------------------------------------------------


@pytest.mark.parametrize("mode", [Plan.CaptureMode.AUTOMATIC, Plan.CaptureMode.MANUAL])
def test_a_plan_confirmed_by_several_requests_at_once_is_confirmed_once(mode):
    customer, merchant = UserFactory(), MerchantFactory()
    plan = offered(customer, merchant, mode=mode)

    results = run_at_once(4, lambda _: plan_confirm(plan_id=plan.pk, customer=customer))

    confirmed = [r for r in results if isinstance(r, Plan)]
    refused = [r for r in results if isinstance(r, PlanNotPending)]
    assert (len(confirmed), len(refused)) == (1, 3), results
    expected = Plan.Status.ACTIVE if mode == Plan.CaptureMode.AUTOMATIC else Plan.Status.AUTHORIZED
    assert {r.extra["plan_status"] for r in refused} == {expected}
    plan.refresh_from_db()
    assert plan.status == expected
    assert plan_events(plan, Event.Type.PLAN_CONFIRMED) == 1
    assert origination_entries(plan) == (1 if expected == Plan.Status.ACTIVE else 0)
    assert plan.installments.count() == (3 if expected == Plan.Status.ACTIVE else 0)
    assert_books_clean()


# --- one merchant reference, several offers at once ----------------------------------------------


def test_offers_with_one_reference_at_once_make_one_plan_and_all_get_it_back():
    customer, merchant = UserFactory(credit_limit=D("300.00")), MerchantFactory()  # room for one only

    results = run_at_once(6, lambda _: plan_offer(customer=customer, merchant=merchant, offer=_order("300.00")))

    assert [r for r in results if isinstance(r, Exception)] == []
    assert len({plan.pk for plan, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 5 + [True]
    plan = Plan.objects.get()
    assert plan_events(plan, Event.Type.PLAN_PENDING) == 1
    assert Notification.objects.filter(cause=f"plan:{plan.pk}").count() == 2  # one email, one SMS
    assert credit_position(customer=customer, currency="USD").reserved == D("300.00")


def test_a_retry_that_waited_on_the_first_offer_gets_its_plan_not_a_credit_decline():
    """The retry finds no plan under the reference, waits on the customer's lock while the
    first request commits, then sees the limit taken by that plan's reservation."""
    customer, merchant = UserFactory(credit_limit=D("300.00")), MerchantFactory()
    held = HeldOpen(lambda: plan_offer(customer=customer, merchant=merchant, offer=_order("300.00")))

    retry, created = plan_offer(customer=customer, merchant=merchant, offer=_order("300.00"))

    first, first_created = held.release()
    assert held.saw_waiter
    assert (retry.pk, created, first_created) == (first.pk, False, True)
    assert Plan.objects.count() == 1


def test_offers_with_one_reference_for_other_customers_at_once_conflict_never_fail():
    """Each customer's lock is its own, so the offers reach the insert together: the unique
    constraint refuses all but one, and those are told of the conflict."""
    merchant = MerchantFactory()
    customers = [UserFactory() for _ in range(6)]

    results = run_at_once(6, lambda i: plan_offer(customer=customers[i], merchant=merchant, offer=_order("300.00")))

    made = [r for r in results if isinstance(r, tuple)]
    conflicts = [r for r in results if isinstance(r, MerchantReferenceConflict)]
    assert (len(made), len(conflicts)) == (1, 5), results
    assert not [r for r in results if isinstance(r, IntegrityError)]
    plan, created = made[0]
    assert created
    assert Plan.objects.get().pk == plan.pk
    assert plan_events(plan, Event.Type.PLAN_PENDING) == 1


def test_offers_with_one_reference_and_other_terms_at_once_one_plan_the_rest_conflict():
    customer, merchant = UserFactory(), MerchantFactory()
    totals = ["100.00", "100.00", "100.00", "200.00", "200.00", "200.00"]

    results = run_at_once(6, lambda i: plan_offer(customer=customer, merchant=merchant, offer=_order(totals[i])))

    plan = Plan.objects.get()
    for total, result in zip(totals, results, strict=True):
        if D(total) == plan.total_amount:
            assert isinstance(result, tuple), result
            assert result[0].pk == plan.pk
        else:
            assert isinstance(result, MerchantReferenceConflict), result
    assert sum(isinstance(r, tuple) and r[1] for r in results) == 1


def _order(total: str) -> Offer:
    return Offer(total_amount=D(total), installment_count=3, merchant_reference="order-77")


# --- one customer's credit spent by several requests at once ---------------------------------------


@pytest.mark.parametrize("named", [False, True], ids=["plan_offer", "plan_offer_named"])
def test_offers_of_one_customer_at_once_never_reserve_past_the_limit(named):
    """Whether the customer is given (plan_offer) or named by its user_id and locked as it is
    found (plan_offer_named, the API's path)."""
    customer, merchant = UserFactory(credit_limit=D("1000.00")), MerchantFactory()

    def offer(_):
        if not named:
            return offered(customer, merchant, "400.00")
        terms = Offer(total_amount=D("400.00"), installment_count=3)
        return plan_offer_named(creator=merchant, user_id=customer.user_id, merchant_id=None, offer=terms)[0]

    results = run_at_once(5, offer)

    made = [r for r in results if isinstance(r, Plan)]
    declined = [r for r in results if isinstance(r, CreditDeclined)]
    assert (len(made), len(declined)) == (2, 3), results
    assert [r.extra for r in declined] == [{}] * 3  # the merchant learns nothing of the customer's money
    assert credit_position(customer=customer, currency="USD").reserved == D("800.00")


@pytest.mark.parametrize("merged", [False, True], ids=["offer: customer found, then locked", "confirm: with the plan"])
def test_the_customers_row_stays_locked_by_the_statement_that_found_it(merged):
    """The offer finds the customer it names locking its row, and the confirm locks the
    customer's row with the plan's: until their transaction ends, nobody else locks either."""
    customer, merchant = UserFactory(), MerchantFactory()
    plan = offered(customer, merchant)
    if merged:
        held = HeldOpen(lambda: _plan_locked(plan.pk, customer_id=customer.pk))
        rows = [("bnpl_plan", plan.pk), ("accounts_user", customer.pk)]
    else:
        held = HeldOpen(
            lambda: plan_parties_resolve(
                creator=merchant, user_id=customer.user_id, merchant_id=None, lock_customer=True
            )
        )
        rows = [("accounts_user", customer.pk)]
    try:
        for table, pk in rows:
            locked = pytest.raises(OperationalError, match="could not obtain lock")
            with locked, transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR NO KEY UPDATE NOWAIT", [pk])  # noqa: S608  # nosec B608
    finally:
        result = held.release()
    assert not isinstance(result, Exception), result
    with transaction.atomic(), connection.cursor() as cursor:  # free again once it ended
        cursor.execute("SELECT 1 FROM accounts_user WHERE id = %s FOR NO KEY UPDATE NOWAIT", [customer.pk])


@pytest.mark.parametrize(("limit", "active"), [("1200.00", 2), ("1100.00", 0)])
def test_two_plans_of_one_customer_confirmed_at_once_fit_the_limit_together_or_not_at_all(limit, active):
    """Each confirm counts the other's reservation: both fit, or (the limit lowered by an
    operator since they were offered) neither does. Never one past the limit."""
    customer, merchant = UserFactory(credit_limit=D("2000.00")), MerchantFactory()
    plans = [offered(customer, merchant, "600.00") for _ in range(2)]
    User.objects.filter(pk=customer.pk).update(credit_limit=D(limit))
    customer.refresh_from_db()

    results = run_at_once(2, lambda i: plan_confirm(plan_id=plans[i].pk, customer=customer))

    assert sum(isinstance(r, Plan) for r in results) == active, results
    assert sum(isinstance(r, CreditDeclined) for r in results) == 2 - active
    position = credit_position(customer=customer, currency="USD")
    assert position.outstanding <= D(limit)
    assert (position.outstanding, position.reserved) == (D("600.00") * active, D("600.00") * (2 - active))
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.ORIGINATION).count() == active
    assert_books_clean()


@pytest.mark.parametrize("paid_by", ["payment", "refund"])
def test_a_confirm_racing_a_payment_on_another_plan_sees_the_debt_before_or_after_it(paid_by, settings):
    """Owing 500.00 with 500.00 offered, the limit lowered to 900.00: the offer fits only once
    100.00 of the debt is paid (or refunded). Whichever commits first, the customer never
    owes more than the limit, and the books balance."""
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    merchant = MerchantFactory()
    for _ in range(ROUNDS // 3):
        customer = UserFactory(credit_limit=D("1000.00"))
        owed = plan_confirm(plan_id=offered(customer, merchant, "500.00").pk, customer=customer)
        offer = offered(customer, merchant, "500.00")
        User.objects.filter(pk=customer.pk).update(credit_limit=D("900.00"))
        customer.refresh_from_db()

        def lower_debt(owed=owed, customer=customer):
            if paid_by == "payment":
                return payment_collect(plan_id=owed.pk, payer=customer, amount=D("100.00"))
            return refund_requested(owed, "100.00", transaction_id=f"rf-{owed.pk}", status=Refund.Status.APPROVED)

        confirm, lowered = run_at_once(
            2,
            lambda i, offer=offer, customer=customer: (
                plan_confirm(plan_id=offer.pk, customer=customer) if i == 0 else lower_debt()
            ),
        )

        assert not isinstance(lowered, Exception), lowered
        position = credit_position(customer=customer, currency="USD")
        if isinstance(confirm, Plan):
            assert (position.outstanding, position.reserved) == (D("900.00"), D("0.00"))
        else:
            assert isinstance(confirm, CreditDeclined), confirm
            assert confirm.extra["outstanding"] == "500.00"  # it read the debt before the payment
            assert (position.outstanding, position.reserved) == (D("400.00"), D("500.00"))
            plan_confirm(plan_id=offer.pk, customer=customer)  # fits now
        assert_books_clean()
