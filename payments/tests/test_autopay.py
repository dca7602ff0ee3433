"""Autopay: charged on the due date, retried on +1 and +3 days, once per installment and day."""

import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker
from django.db import OperationalError, connections
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import UserFactory
from bnpl.models import Installment, Plan
from bnpl.services.sweep import overdue_sweep
from bnpl.tests.test_concurrency import run_at_once
from config.celery import app
from conftest import wait_until
from events.models import Event, Notification
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from payments.autopay import autopay_chunk, autopay_customer, autopay_customers_due, autopay_run
from payments.models import Payment
from payments.services import payments_attempt_many, payments_reconcile
from payments.tasks import autopay_run_task
from payments.tests.gateways import RecordingGateway

NOTHING_CHARGED = {"succeeded": 0, "failed": 0, "pending": 0, "skipped": 0}
PURCHASE = date(2026, 1, 10)  # monthly: due 2/10, 3/10, 4/10, 5/10
DUES = [date(2026, 2, 10), date(2026, 3, 10), date(2026, 4, 10), date(2026, 5, 10)]


@pytest.fixture
def gateway(settings):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.charges.clear()
    return RecordingGateway.charges


def business_day(day: date):
    """Freeze the clock at 11:00 in the business time zone (UTC+5) of ``day``."""
    return time_machine.travel(datetime.combine(day, day_time(6, 0), tzinfo=UTC), tick=False)


@pytest.fixture
def the_beat_runs(eager_tasks, django_capture_on_commit_callbacks):
    """What beat does on a day: the sweep, then autopay (the task delivered twice); what
    waits for a commit (notifications, events) runs too."""

    def run() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            overdue_sweep()
            autopay_run()
            autopay_run()

    return run


@pytest.mark.django_db
def test_a_plan_is_charged_on_each_due_date_and_completes(make_plan, gateway, the_beat_runs, mailoutbox):
    customer = UserFactory()
    plan = make_plan(customer=customer, total="400.00", purchase_date=PURCHASE)

    for number, due in enumerate(DUES, start=1):
        with business_day(due - timedelta(days=1)):
            the_beat_runs()
            assert Payment.objects.count() == number - 1, "nothing is charged before the due date"
        with business_day(due):
            the_beat_runs()
        installment = plan.installments.get(sequence=number)
        assert installment.status == Installment.Status.PAID
        assert installment.paid_at.date() == due

    payments = list(Payment.objects.order_by("id"))
    assert [(p.source, p.attempt, p.status, p.amount) for p in payments] == [
        (Payment.Source.AUTOPAY, 1, Payment.Status.SUCCEEDED, Decimal("100.00"))
    ] * 4
    # The task ran twice each day; the gateway was asked once per installment, with a key
    # made of the installment and the day.
    installments = list(plan.installments.order_by("sequence"))
    expected = [f"autopay_{i.pk}_{d:%Y%m%d}" for i, d in zip(installments, DUES, strict=True)]
    assert [key for key, _ in gateway] == expected
    plan.refresh_from_db()
    assert plan.status == Plan.Status.COMPLETED
    assert Event.objects.filter(type=Event.Type.INSTALLMENT_PAID).count() == 4
    assert Event.objects.filter(type=Event.Type.PLAN_COMPLETED).count() == 1
    receipts = Notification.objects.filter(kind=Notification.Kind.PAYMENT_RECEIPT)
    assert receipts.count() == 8  # email and SMS for each of the four payments
    assert len([m for m in mailoutbox if m.subject.startswith("Payment received")]) == 4


@pytest.mark.django_db
def test_a_declined_card_is_retried_on_day_one_and_three_then_the_customer_is_in_debt(
    make_plan, gateway, the_beat_runs, settings, sms_outbox
):
    settings.BNPL_GRACE_DAYS = 3  # overdue from the fourth day on, after the last retry
    settings.BNPL_AUTOPAY_RETRY_DAYS = [1, 3]
    customer = UserFactory(card_last4="0002")  # the fake gateway declines it
    plan = make_plan(customer=customer, total="400.00", purchase_date=PURCHASE)
    first = plan.installments.get(sequence=1)
    due = DUES[0]

    attempts_by_day = {}
    for offset in range(5):
        with business_day(due + timedelta(days=offset)):
            the_beat_runs()
        attempts_by_day[offset] = Payment.objects.count()

    assert attempts_by_day == {0: 1, 1: 2, 2: 2, 3: 3, 4: 3}
    payments = list(Payment.objects.order_by("id"))
    assert [(p.attempt, p.status, p.decline_code) for p in payments] == [
        (1, Payment.Status.FAILED, "card_declined"),
        (2, Payment.Status.FAILED, "card_declined"),
        (3, Payment.Status.FAILED, "card_declined"),
    ]
    assert [key for key, _ in gateway] == [
        f"autopay_{first.pk}_{(due + timedelta(days=d)):%Y%m%d}" for d in (0, 1, 3)
    ], "one charge a day, whatever the task deliveries"
    first.refresh_from_db()
    customer.refresh_from_db()
    assert first.status == Installment.Status.OVERDUE
    assert first.amount_paid == 0
    assert customer.status == User.Status.DEBT_USER
    # The merchant heard of each failure and of the overdue installment; the customer got
    # one notice per failed attempt, by email and SMS.
    assert Event.objects.filter(type=Event.Type.PAYMENT_FAILED).count() == 3
    assert Event.objects.filter(type=Event.Type.INSTALLMENT_OVERDUE, data__installment_id=first.pk).count() == 1
    assert Notification.objects.filter(kind=Notification.Kind.AUTOPAY_FAILED).count() == 6
    assert len([m for m in sms_outbox if "could not charge" in m.body]) == 3


@pytest.mark.django_db
def test_autopay_skips_customers_who_switched_it_off_or_have_no_card(make_plan, gateway, eager_tasks, as_user):
    off = UserFactory()
    as_user(off).patch("/api/v1/auth/me/", {"autopay": False}, format="json")
    no_card = UserFactory(card_token="")
    on = UserFactory()
    for customer in (off, no_card, on):
        make_plan(customer=customer, purchase_date=PURCHASE)

    assert autopay_customers_due(today=DUES[0]) == [on.pk]
    assert autopay_run(today=DUES[0]) == 1
    assert list(Payment.objects.values_list("customer_id", flat=True)) == [on.pk]
    # A task already queued for someone who turns autopay off meanwhile charges nothing.
    assert autopay_customer(customer_id=off.pk, today=DUES[0]) == NOTHING_CHARGED


@pytest.mark.django_db
def test_autopay_runs_in_chunks_and_one_failing_customer_does_not_stop_a_chunk(
    make_plan, gateway, monkeypatch, eager_tasks
):
    customers = [UserFactory() for _ in range(5)]
    for customer in customers:
        make_plan(customer=customer, purchase_date=PURCHASE)
    broken = customers[1].pk
    attempt = payments_attempt_many
    batches = []

    def failing_for_one(charges):
        batches.append(sorted({charge.payer_id for charge in charges}))
        if any(charge.payer_id == broken for charge in charges):
            raise RuntimeError("a bug met by one customer's data")
        return attempt(charges)

    monkeypatch.setattr("payments.autopay.payments_attempt_many", failing_for_one)
    first, last = customers[0].pk, customers[2].pk

    assert autopay_chunk(first=first, last=last, today=DUES[0]) == {
        "succeeded": 2,
        "failed": 0,
        "pending": 0,
        "skipped": 0,
        "errors": 1,
    }
    # The chunk's batch failed whole (nothing of it was written), then each customer was
    # charged alone.
    assert batches == [[c.pk for c in customers[:3]], *([c.pk] for c in customers[:3])]
    monkeypatch.setattr("payments.autopay.payments_attempt_many", attempt)
    # The two charged are not due any more: the one that failed and the two others are, in
    # two chunks (2 and 1).
    assert autopay_run(today=DUES[0], chunk_customers=2) == 3
    assert sorted(Payment.objects.values_list("customer_id", flat=True)) == sorted(c.pk for c in customers)
    assert len(gateway) == 5


@pytest.mark.django_db
def test_an_installment_paid_by_hand_before_the_due_date_is_not_charged(make_plan, gateway, as_user, customer):
    plan = make_plan(customer=customer, purchase_date=PURCHASE)
    first = plan.installments.get(sequence=1)
    as_user(customer).post(f"/api/v1/installments/{first.pk}/pay/", {}, format="json")

    assert autopay_customer(customer_id=customer.pk, today=DUES[0]) == NOTHING_CHARGED
    assert Payment.objects.filter(source=Payment.Source.AUTOPAY).count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ten_deliveries_of_one_customer_task_at_once_charge_once(make_plan, gateway):
    customer = UserFactory()
    plan = make_plan(customer=customer, purchase_date=PURCHASE)

    def run(_):
        try:
            return autopay_customer(customer_id=customer.pk, today=DUES[0])
        finally:
            connections.close_all()

    results = run_at_once(10, run)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert Payment.objects.count() == 1
    assert Payment.objects.get().status == Payment.Status.SUCCEEDED
    assert plan.installments.get(sequence=1).status == Installment.Status.PAID
    # Those that found the payment made under today's key answered with it, no new charge:
    # one charge, not ten with one key.
    payment = Payment.objects.get()
    assert gateway == [(f"autopay_{payment.allocations.get().installment_id}_20260210", Decimal("125.00"))]
    assert payment.amount == Decimal("125.00")
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYMENT).count() == 1
    assert ledger_check(record=False).ok


@pytest.mark.faults
@pytest.mark.django_db
def test_a_payment_left_pending_by_a_gateway_timeout_is_finished_once_with_its_key(
    make_plan, customer, as_user, settings
):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.TimeoutGateway"
    plan = make_plan(customer=customer, purchase_date=PURCHASE)
    first = plan.installments.get(sequence=1)
    pay = f"/api/v1/installments/{first.pk}/pay/"
    answer = as_user(customer).post(pay, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-timeout")
    assert answer.status_code == 502
    payment = Payment.objects.get()
    assert payment.status == Payment.Status.PENDING
    # The client retries with its key: the same answer, no second payment, no second charge.
    again = as_user(customer).post(pay, {}, format="json", HTTP_IDEMPOTENCY_KEY="k-timeout")
    assert (again.status_code, again["Idempotent-Replayed"]) == (502, "true")
    assert again.json()["payment_id"] == payment.pk
    assert Payment.objects.count() == 1

    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.charges.clear()
    assert payments_reconcile(older_than_minutes=5) == 0, "too fresh: it may still be in flight"
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        assert payments_reconcile(older_than_minutes=5) == 1
        assert payments_reconcile(older_than_minutes=5) == 0

    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert RecordingGateway.charges == [(payment.gateway_key, Decimal("125.00"))], "asked again with the same key"
    first.refresh_from_db()
    assert first.status == Installment.Status.PAID


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_beat_task_delivered_twice_to_real_workers_charges_once(make_plan, gateway, settings):
    assert not app.conf.task_always_eager
    settings.BNPL_AUTOPAY_CHUNK_CUSTOMERS = 2  # two chunks, taken by two worker threads at once
    customers = [UserFactory() for _ in range(3)]
    for customer in customers:
        make_plan(customer=customer, purchase_date=PURCHASE)
    app.control.purge()

    with business_day(DUES[0]):
        # Two beat processes (or one delivery retried): the task is queued twice before a
        # worker gets to it, so each chunk is queued twice too.
        runs = [autopay_run_task.apply_async(ignore_result=False) for _ in range(2)]
        with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10):
            assert [run.get(timeout=30) for run in runs] == [3, 3]
            assert wait_until(lambda: Payment.objects.filter(status=Payment.Status.SUCCEEDED).count() == 3)
            time.sleep(0.5)  # the duplicate chunks run too

    assert Payment.objects.count() == 3
    assert sorted(Payment.objects.values_list("customer_id", flat=True)) == sorted(c.pk for c in customers)
    assert len(gateway) == 3


@pytest.mark.django_db
def test_a_database_failure_fails_the_whole_chunk_so_that_it_is_retried(make_plan, gateway, monkeypatch):
    """Simulated, not an injected fault: the customer's charge raises the OperationalError
    Django raises when PostgreSQL is gone, and the chunk must let it out (the task is
    retried) instead of counting it as one customer's error."""
    customer = UserFactory()
    make_plan(customer=customer, purchase_date=PURCHASE)

    def database_gone(charges):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("payments.autopay.payments_attempt_many", database_gone)
    with pytest.raises(OperationalError):
        autopay_chunk(first=customer.pk, last=customer.pk, today=DUES[0])
