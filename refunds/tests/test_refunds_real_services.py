"""Refunds against the real PostgreSQL, Redis broker and a Celery worker."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connections

from accounts.models import User
from accounts.tests.factories import MerchantFactory
from bnpl.models import Installment
from bnpl.schedule import business_today
from bnpl.tests.test_concurrency import run_at_once, sweep_held_open
from config.celery import app
from conftest import broker_unreachable, client_for
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from refunds.models import Refund
from refunds.services import RefundExceedsPlan, refund_request, refund_status_apply

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def merchant():
    return MerchantFactory(webhook_secret="whsec_real_services")


def drive_to_approved(webhook, merchant) -> list[dict]:
    return [
        webhook(merchant, {"refund_id": "rf-async", "status": status}).json() for status in ("processing", "approved")
    ]


@pytest.mark.faults
@pytest.mark.redis
def test_webhook_goes_through_a_real_worker_and_falls_back_to_sync_without_a_broker(webhook, make_plan, merchant):
    assert not app.conf.task_always_eager
    plan = make_plan(merchant=merchant, total="100.00")
    client_for(merchant).post(
        "/api/v1/refunds/", {"plan_id": plan.pk, "transaction_id": "rf-async", "amount": "30.00"}, format="json"
    )
    app.control.purge()

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        answers = drive_to_approved(webhook, merchant)
        refund = Refund.objects.get()
        for _ in range(100):  # the worker applies them in the background
            refund.refresh_from_db()
            if refund.status == Refund.Status.APPROVED:
                break
            time.sleep(0.1)
    assert [a["processing_mode"] for a in answers] == ["async", "async"]
    assert refund.status == Refund.Status.APPROVED
    assert refund.applied_amount == Decimal("30.00")
    assert list(refund.events.values_list("requested_status", "outcome")) == [
        ("PROCESSING", "applied"),
        ("APPROVED", "applied"),
    ]

    # The same calls with the broker unreachable: processed at once, same end state.
    second = make_plan(merchant=merchant, total="100.00")
    Refund.objects.all().update(transaction_id="rf-done")
    client_for(merchant).post(
        "/api/v1/refunds/", {"plan_id": second.pk, "transaction_id": "rf-async", "amount": "30.00"}, format="json"
    )
    with broker_unreachable():
        answers = drive_to_approved(webhook, merchant)
    assert [a["processing_mode"] for a in answers] == ["sync", "sync"]
    refund = Refund.objects.get(transaction_id="rf-async")
    assert (refund.status, refund.applied_amount) == (Refund.Status.APPROVED, Decimal("30.00"))


def test_thirty_concurrent_creations_with_one_transaction_id_make_one_refund(make_plan, merchant):
    plan = make_plan(merchant=merchant, total="100.00")

    def create(_):
        try:
            body = {"plan_id": plan.pk, "transaction_id": "rf-race", "amount": "20.00"}
            return client_for(merchant).post("/api/v1/refunds/", body, format="json")
        finally:
            connections.close_all()

    responses = run_at_once(30, create)

    assert Refund.objects.count() == 1
    assert sorted({r.status_code for r in responses}) == [200, 201]
    assert [r.status_code for r in responses].count(201) == 1
    assert {r.json()["id"] for r in responses} == {Refund.objects.get().pk}


def test_concurrent_approvals_that_together_exceed_the_plan_cannot_both_apply(make_plan, merchant):
    plan = make_plan(merchant=merchant, total="100.00")
    # Two refunds that only together exceed the total: a state refund_request refuses, written
    # past it on purpose to show the approval's own guard (as if requested through another channel).
    refunds = [
        Refund.objects.create(
            plan=plan,
            merchant=merchant,
            customer=plan.customer,
            requested_by=merchant,
            transaction_id=f"big-{i}",
            amount=Decimal("60.00"),
            currency="USD",
        )
        for i in range(2)
    ]

    results = run_at_once(
        2, lambda i: refund_status_apply(refund_id=refunds[i].pk, status="APPROVED", source="operator")
    )

    assert sum(isinstance(r, Refund) and r.status == "APPROVED" for r in results) == 1, results
    assert sum(isinstance(r, RefundExceedsPlan) for r in results) == 1
    assert Refund.objects.filter(status="APPROVED").count() == 1


@pytest.mark.parametrize("actions", [("approve", "approve"), ("approve", "reject")], ids=["same", "opposite"])
def test_two_operators_deciding_one_refund_at_once_one_decides_the_other_gets_a_409(
    make_plan, merchant, operator, actions
):
    plan = make_plan(merchant=merchant, total="100.00")
    refund, _ = refund_request(
        plan_id=plan.pk, transaction_id="rf-both", amount=Decimal("40.00"), reason="", requester=merchant
    )

    responses = run_at_once(
        2, lambda i: client_for(operator).post(f"/api/v1/refunds/{refund.pk}/{actions[i]}/", format="json")
    )

    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 409], [r.content for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    loser = next(r for r in responses if r.status_code == 409).json()
    refund.refresh_from_db()
    assert refund.status == winner["status"] == loser["refund_status"]
    assert loser["code"] == "refund_already_decided"
    applied = JournalEntry.objects.filter(plan=plan, kind=JournalEntry.Kind.REFUND_APPLIED).count()
    assert applied == (1 if refund.status == Refund.Status.APPROVED else 0)
    assert sorted(refund.events.values_list("outcome", flat=True)) in (
        ["applied", "duplicate"],
        ["applied", f"ignored: from {refund.status}"],
    )
    assert ledger_check(record=False).ok


def test_a_refund_applied_while_the_sweep_marks_its_installment_keeps_it_overdue(make_plan, merchant):
    # The sweep marks installments without the plan's lock: a refund that read the
    # installment before the mark committed must write back only what it changed, not the
    # old status (the installment would be UPCOMING though past due, its customer NORMAL).
    today = business_today()
    plan = make_plan(merchant=merchant, total="100.00", purchase_date=today - timedelta(days=40))
    refund, _ = refund_request(
        plan_id=plan.pk, transaction_id="rf-sweep", amount=Decimal("80.00"), reason="", requester=merchant
    )

    sweep = sweep_held_open(today=today)
    refund = refund_status_apply(refund_id=refund.pk, status=Refund.Status.APPROVED, source="operator")
    sweep.join()

    first = plan.installments.get(sequence=1)  # 25.00, 5.00 of it refunded: the last ones went first
    assert refund.status == Refund.Status.APPROVED
    assert (first.status, first.amount_due) == (Installment.Status.OVERDUE, Decimal("20.00"))
    assert User.objects.get(pk=plan.customer_id).status == User.Status.DEBT_USER
    assert ledger_check(record=False).ok
