"""Races on PostgreSQL with real threads, each on its own connection."""

import threading
import time
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.errors import CreditDeclined
from bnpl.models import Installment, LateFee, Plan
from bnpl.services.origination import plan_create
from bnpl.services.sweep import overdue_sweep
from conftest import client_for
from core.models import IdempotencyKey
from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME, GATEWAY_CLEARING
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.tests.books import balance, entries
from payments.models import Payment
from payments.tests.gateways import RecordingGateway

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TODAY = date(2026, 6, 15)


def run_at_once(count: int, work) -> list:
    """Run ``work(i)`` in ``count`` threads released together; returns results or exceptions."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def sweep_held_open(*, today: date, timeout: float = 10) -> threading.Thread:
    """Run the overdue sweep in a thread whose transaction stays open (the installments it
    marked locked, the marks not yet visible) until another connection waits on a lock, then
    commit. Returns the thread once the sweep has run, before it commits."""
    swept = threading.Event()

    def target() -> None:
        try:
            with transaction.atomic():
                overdue_sweep(today=today)
                swept.set()
                deadline = time.monotonic() + timeout
                with connection.cursor() as cursor:
                    while time.monotonic() < deadline:
                        cursor.execute(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                        if cursor.fetchone()[0]:
                            break
                        time.sleep(0.05)
        finally:
            swept.set()
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    swept.wait(timeout)
    return thread


def test_two_sweeps_at_once_mark_and_charge_everything_exactly_once(make_plan, settings):
    for _ in range(20):
        make_plan(purchase_date=TODAY - timedelta(days=70))  # two installments past due each

    runs = run_at_once(2, lambda _: overdue_sweep(today=TODAY, late_fees=True))

    assert not [r for r in runs if isinstance(r, Exception)], runs
    assert sum(r.installments_marked_overdue for r in runs) == 40
    assert sum(r.customers_marked_debt for r in runs) == 20
    assert Installment.objects.filter(status="OVERDUE").count() == 40
    assert LateFee.objects.count() == 40
    assert sum(r.late_fees_created for r in runs) == 40
    # Each fee of 10.00 (the first fee of each installment), owed once and posted once.
    assert set(LateFee.objects.values_list("kind", "amount", "amount_paid", "status")) == {
        (LateFee.Kind.FIRST, Decimal("10.00"), Decimal("0.00"), LateFee.Status.DUE)
    }
    late_fee_income = [a for entry in entries(JournalEntry.Kind.LATE_FEE) for code, a in entry if code == FEE_INCOME]
    assert sum(late_fee_income) == Decimal("-400.00")
    assert balance(CUSTOMER_RECEIVABLE) == 20 * Decimal("500.00") + Decimal("400.00")
    assert ledger_check(record=False).ok


def test_concurrent_plans_cannot_together_exceed_the_credit_limit():
    customer = UserFactory(credit_limit=Decimal("1000.00"))
    merchant = MerchantFactory()

    results = run_at_once(
        6, lambda _: plan_create(customer=customer, merchant=merchant, total_amount=Decimal("400.00"))
    )

    created = [r for r in results if isinstance(r, Plan)]
    refused = [r for r in results if isinstance(r, CreditDeclined)]
    assert (len(created), len(refused)) == (2, 4), results
    assert Plan.objects.filter(customer=customer).count() == 2


def test_twenty_plan_requests_with_one_key_create_one_plan_and_all_get_its_answer():
    """Plan creation claims its key in the plan's own transaction: the requests that arrive
    while the first runs wait for it and replay its answer (none is refused, none doubles)."""
    customer, merchant = UserFactory(), MerchantFactory()
    body = {"user_id": customer.user_id, "total_amount": "200.00"}

    responses = run_at_once(
        20, lambda _: client_for(merchant).post("/api/v1/plans/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-9")
    )

    assert [r for r in responses if isinstance(r, Exception)] == []
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum(r.get("Idempotent-Replayed") == "true" for r in responses) == 19
    assert Plan.objects.filter(customer=customer).count() == 1


def test_a_refused_plan_stores_its_answer_and_leaves_nothing_else():
    """A 422 inside the key's transaction: the plan's work is undone, the answer is kept."""
    customer, merchant = UserFactory(credit_limit=Decimal("100.00")), MerchantFactory()
    body = {"user_id": customer.user_id, "total_amount": "200.00"}
    client = client_for(merchant)

    first = client.post("/api/v1/plans/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-10")
    again = client.post("/api/v1/plans/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-10")

    assert first.status_code == again.status_code == 422
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.get(key="order-10").response_status == 422
    assert Plan.objects.count() == 0


def test_a_sweep_and_payments_on_the_same_plans_at_once_neither_deadlock_nor_double(make_plan, settings):
    """Chunks mark and charge fees while payments settle on the same plans: the plan and
    customer locks (no key) never wait on a chunk's foreign-key checks, and the customers
    are updated after the chunks, so nothing deadlocks and the books balance."""
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.clear()
    plans = [make_plan(purchase_date=TODAY - timedelta(days=70)) for _ in range(8)]  # two past due each
    targets = [(p.customer, p.installments.get(sequence=1).pk) for p in plans]

    def work(index: int):
        if index == 0:
            return overdue_sweep(today=TODAY, late_fees=True, chunk_plans=2)
        customer, installment_id = targets[index - 1]
        return client_for(customer).post(f"/api/v1/installments/{installment_id}/pay/", {}, format="json")

    results = run_at_once(len(targets) + 1, work)

    assert [r for r in results if isinstance(r, Exception)] == []
    assert results[0].finished_at is not None
    assert sorted({r.status_code for r in results[1:]}) == [201]
    assert Installment.objects.filter(sequence=1, status=Installment.Status.PAID).count() == len(plans)
    assert Installment.objects.filter(sequence=2, status=Installment.Status.OVERDUE).count() == len(plans)
    # Each first installment (125.00) charged once and booked once; the fees owed in full.
    payments = list(Payment.objects.order_by("plan_id"))
    assert [(p.plan_id, p.status, p.amount) for p in payments] == [
        (plan.pk, Payment.Status.SUCCEEDED, Decimal("125.00")) for plan in plans
    ]
    assert sorted(RecordingGateway.charges) == sorted((p.gateway_key, Decimal("125.00")) for p in payments)
    assert entries(JournalEntry.Kind.PAYMENT) == [
        [(CUSTOMER_RECEIVABLE, Decimal("-125.00")), (GATEWAY_CLEARING, Decimal("125.00"))]
    ] * len(plans)
    # A fee of 10.00 on each second installment; on a first one only if the sweep marked it
    # before its payment (then owed in full: a payment of the installment does not take it).
    assert set(LateFee.objects.values_list("amount", "amount_paid", "status")) == {
        (Decimal("10.00"), Decimal("0.00"), LateFee.Status.DUE)
    }
    for plan in plans:
        assert sorted(plan.late_fees.values_list("installment__sequence", flat=True)) in ([2], [1, 2])
        owed = sum(plan.late_fees.values_list("amount", flat=True), Decimal("0.00"))
        assert balance(CUSTOMER_RECEIVABLE, plan=plan) == Decimal("375.00") + owed
    RecordingGateway.clear()
    assert ledger_check(record=False).ok
