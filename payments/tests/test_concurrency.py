"""Races on PostgreSQL with real threads, each with its own connection and HTTP client."""

import pytest
from django.db import connections

from bnpl.tests.test_concurrency import run_at_once
from conftest import client_for
from payments.checks import ledger_check
from payments.models import Payment

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_twenty_payments_of_the_whole_remainder_pay_it_once(make_plan, customer):
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
    assert installment.amount_paid == installment.amount_due
    assert Payment.objects.filter(status="SUCCEEDED").count() == 1
    assert ledger_check(record=False).ok


def test_fifty_requests_with_one_key_make_one_payment(make_plan, customer):
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
