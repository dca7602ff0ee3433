"""Different payment operations on the same installment at once, on PostgreSQL with real
threads: autopay against a manual payment and against the sweep, reconciliation against a
retry of the same PENDING payment. Each asserts the money: what the gateway (or the card
network) was asked for and took, the installments and fees, and the journal entries."""

import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connections

from accounts.models import User
from accounts.tests.factories import UserFactory
from bnpl.models import Installment, LateFee
from bnpl.services.sweep import overdue_sweep
from bnpl.tests.test_concurrency import run_at_once
from conftest import client_for
from ledger.accounts import CUSTOMER_RECEIVABLE, GATEWAY_CLEARING
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.tests.books import balance, entries
from payments.autopay import autopay_customer
from payments.models import Payment
from payments.services import GatewayUnavailable, payment_collect, payment_resume, payments_reconcile
from payments.tests.gateways import CardNetwork

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PURCHASE = date(2026, 1, 10)  # monthly: due 2/10, 3/10, 4/10, 5/10
FIRST_DUE = date(2026, 2, 10)
HUNDRED = Decimal("100.00")


def paid_once(plan, payment: Payment) -> None:
    """The plan's first installment (100.00) paid by ``payment`` and by nothing else."""
    first = plan.installments.get(sequence=1)
    assert (first.status, first.amount_paid, first.amount_reserved) == (Installment.Status.PAID, HUNDRED, 0)
    assert (payment.status, payment.amount, payment.credit_amount) == (Payment.Status.SUCCEEDED, HUNDRED, 0)
    assert entries(JournalEntry.Kind.PAYMENT, plan=plan) == [
        [(CUSTOMER_RECEIVABLE, -HUNDRED), (GATEWAY_CLEARING, HUNDRED)]
    ]
    assert balance(GATEWAY_CLEARING, plan=plan) == HUNDRED


def test_autopay_and_a_manual_payment_of_the_same_installment_at_once_charge_it_once(make_plan, gateway):
    customer = UserFactory()
    plan = make_plan(customer=customer, total="400.00", purchase_date=PURCHASE)
    first = plan.installments.get(sequence=1)

    def work(index):
        if index == 0:
            return autopay_customer(customer_id=customer.pk, today=FIRST_DUE)
        return client_for(customer).post(f"/api/v1/installments/{first.pk}/pay/", {}, format="json")

    autopaid, manual = run_at_once(2, work)

    assert not isinstance(autopaid, Exception), autopaid
    assert not isinstance(manual, Exception), manual
    payment = Payment.objects.get()  # the loser was refused before recording anything
    if payment.source == Payment.Source.AUTOPAY:
        assert autopaid["succeeded"] == 1
        assert (manual.status_code, manual.json()["code"]) == (409, "nothing_to_pay")
    else:
        assert (autopaid["succeeded"], autopaid["skipped"]) == (0, 1)
        assert (manual.status_code, manual.json()["id"]) == (201, payment.pk)
    assert gateway.charges == [(payment.gateway_key, HUNDRED)], "one charge, of the installment, once"
    paid_once(plan, payment)
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == Decimal("300.00")
    assert ledger_check(record=False).ok


def test_autopay_on_a_retry_day_while_the_sweep_marks_and_charges_fees_pays_each_installment_once(
    make_plan, gateway, settings
):
    """The day after the due date: the sweep marks the installments overdue and charges
    their first late fee while autopay charges the same installments. Whoever goes first,
    each installment is charged and paid once, and a fee is owed only if the sweep got to
    its installment first (then it is owed in full, posted once, and not taken by autopay)."""
    settings.BNPL_GRACE_DAYS = 0
    customers = [UserFactory() for _ in range(6)]
    plans = [make_plan(customer=c, total="400.00", purchase_date=PURCHASE) for c in customers]
    today = FIRST_DUE + timedelta(days=1)

    def work(index):
        if index == 0:
            return overdue_sweep(today=today, late_fees=True, chunk_plans=2)
        return autopay_customer(customer_id=customers[index - 1].pk, today=today)

    results = run_at_once(len(customers) + 1, work)

    assert [r for r in results if isinstance(r, Exception)] == []
    assert results[0].finished_at is not None
    assert [r["succeeded"] for r in results[1:]] == [1] * len(customers)
    payments = {p.plan_id: p for p in Payment.objects.all()}
    assert len(payments) == len(plans) == Payment.objects.count()
    assert sorted(gateway.charges) == sorted((p.gateway_key, HUNDRED) for p in payments.values())
    fees = 0
    for plan in plans:
        paid_once(plan, payments[plan.pk])
        owed = list(plan.late_fees.values_list("status", "amount", "amount_paid"))
        assert owed in ([], [(LateFee.Status.DUE, Decimal("10.00"), Decimal("0.00"))]), owed
        fees += len(owed)
        assert balance(CUSTOMER_RECEIVABLE, plan=plan) == Decimal("300.00") + 10 * len(owed)
    late_fee_income = -sum(
        (amount for entry in entries(JournalEntry.Kind.LATE_FEE) for code, amount in entry if code == "fee_income"),
        Decimal("0"),
    )
    assert late_fee_income == 10 * fees
    # Nothing is overdue any more: nobody is left in debt.
    assert set(User.objects.filter(pk__in=[c.pk for c in customers]).values_list("status", flat=True)) == {
        User.Status.NORMAL
    }
    assert ledger_check(record=False).ok


@pytest.mark.faults
def test_reconciliation_and_a_retry_of_the_same_pending_payment_capture_and_book_it_once(
    make_plan, customer, settings, monkeypatch
):
    """A payment left PENDING by a gateway timeout is retried (``payment_resume``) while
    reconciliation finishes it: the retry's charge is taken by the network and its answer
    held; reconciliation asks with the same key, gets the first capture, and books it; the
    retry's late answer then books nothing more."""
    with CardNetwork() as network:
        settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.NetworkGateway"
        monkeypatch.setenv("BNPL_TEST_CARD_NETWORK_URL", network.url)
        monkeypatch.setenv("BNPL_TEST_CARD_NETWORK_TIMEOUT", "0.5")
        plan = make_plan(customer=customer, total="400.00", purchase_date=PURCHASE)
        first = plan.installments.get(sequence=1)
        network.script = ["timeout before capture", "held after capture"]
        with pytest.raises(GatewayUnavailable):
            payment_collect(plan_id=plan.pk, installment_id=first.pk, payer=customer)
        pending = Payment.objects.get()
        assert pending.status == Payment.Status.PENDING
        monkeypatch.setenv("BNPL_TEST_CARD_NETWORK_TIMEOUT", "10")

        retried: list = []

        def resume() -> None:
            try:
                retried.append(payment_resume(payment_id=pending.pk))
            except Exception as exc:
                retried.append(exc)
            finally:
                connections.close_all()

        retry = threading.Thread(target=resume)
        retry.start()
        assert network.holding.wait(10), "the retry's charge reached the network"
        reconciled = payments_reconcile(older_than_minutes=0)
        network.hold.set()
        retry.join(20)

        assert reconciled == 1
        assert not isinstance(retried[0], Exception), retried
        assert retried[0].status == Payment.Status.SUCCEEDED
        assert network.requests == [pending.gateway_key] * 3  # the timed-out one, the retry, reconciliation
        assert network.captures == {pending.gateway_key: HUNDRED}, "captured once"
    payment = Payment.objects.get()
    paid_once(plan, payment)
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == Decimal("300.00")
    assert ledger_check(record=False).ok
