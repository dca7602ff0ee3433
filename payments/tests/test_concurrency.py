"""Races on PostgreSQL with real threads, each with its own connection and HTTP client."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections

from bnpl.models import Installment
from bnpl.schedule import business_today
from bnpl.services.sweep import overdue_sweep
from bnpl.tests.test_concurrency import run_at_once, sweep_held_open
from conftest import client_for
from ledger.accounts import CUSTOMER_RECEIVABLE, GATEWAY_CLEARING
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.tests.books import entries
from payments.models import Payment
from payments.services import payment_collect
from payments.tests.gateways import RecordingGateway

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def gateway(settings):
    """Every charge the payments ask for, recorded: a payment counted once must be charged once."""
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.clear()
    yield RecordingGateway
    RecordingGateway.clear()


def test_twenty_payments_of_the_whole_remainder_pay_it_once(make_plan, customer, gateway):
    plan = make_plan(customer=customer, total="400.00")
    installment = plan.installments.get(sequence=1)

    def pay(_):
        try:
            return client_for(customer).post(f"/api/v1/installments/{installment.pk}/pay/", {}, format="json")
        finally:
            connections.close_all()

    responses = run_at_once(20, pay)

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {201, 409, 422}, statuses
    installment.refresh_from_db()
    assert installment.amount_paid == installment.amount_due == Decimal("100.00")
    assert installment.amount_reserved == 0
    payment = Payment.objects.get(status="SUCCEEDED")
    assert Payment.objects.count() == 1, "the losers were refused before recording a payment"
    assert gateway.charges == [(payment.gateway_key, Decimal("100.00"))], "charged once"
    assert entries(JournalEntry.Kind.PAYMENT) == [
        [(CUSTOMER_RECEIVABLE, Decimal("-100.00")), (GATEWAY_CLEARING, Decimal("100.00"))]
    ]
    assert ledger_check(record=False).ok


def test_fifty_requests_with_one_key_make_one_payment(make_plan, customer, gateway):
    plan = make_plan(customer=customer, total="400.00")
    path = f"/api/v1/plans/{plan.pk}/pay/"

    def pay(_):
        try:
            return client_for(customer).post(path, {"amount": "25.00"}, format="json", HTTP_IDEMPOTENCY_KEY="same")
        finally:
            connections.close_all()

    responses = run_at_once(50, pay)

    assert Payment.objects.count() == 1
    bodies = {r.content for r in responses if r.status_code == 201}
    assert len(bodies) == 1
    assert {r.status_code for r in responses} <= {201, 409}
    assert all(r.json()["code"] == "idempotency_key_in_flight" for r in responses if r.status_code == 409)
    payment = Payment.objects.get()
    assert gateway.charges == [(payment.gateway_key, Decimal("25.00"))], "charged once"
    assert entries(JournalEntry.Kind.PAYMENT) == [
        [(CUSTOMER_RECEIVABLE, Decimal("-25.00")), (GATEWAY_CLEARING, Decimal("25.00"))]
    ]
    assert ledger_check(record=False).ok


def test_a_part_payment_settled_while_the_sweep_marks_its_installment_keeps_it_overdue(make_plan, customer, gateway):
    # The sweep marks installments without the plan's lock: a payment that read the
    # installment before the mark committed must not write its old status back (the
    # installment would be UPCOMING though past due, marked and charged again next time).
    today = business_today()
    # Already in debt for an older plan: the sweep has no reason to lock the customer's row
    # (which the payment locks too, and would then only read after the sweep committed).
    make_plan(customer=customer, total="100.00", purchase_date=today - timedelta(days=70))
    plan = make_plan(customer=customer, total="400.00", purchase_date=today - timedelta(days=40))
    first = plan.installments.get(sequence=1)
    overdue_sweep(today=today - timedelta(days=20))  # the older plan's first installment only

    sweep = sweep_held_open(today=today)
    payment = payment_collect(plan_id=plan.pk, installment_id=first.pk, amount=Decimal("10.00"), payer=customer)
    sweep.join()

    first.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert (first.status, first.amount_paid) == (Installment.Status.OVERDUE, Decimal("10.00"))
    assert first.overdue_since == today
    assert gateway.charges == [(payment.gateway_key, Decimal("10.00"))]
    assert entries(JournalEntry.Kind.PAYMENT, plan=plan) == [
        [(CUSTOMER_RECEIVABLE, Decimal("-10.00")), (GATEWAY_CLEARING, Decimal("10.00"))]
    ]
    assert ledger_check(record=False).ok
