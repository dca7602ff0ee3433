"""Payments made as a batch (autopay's chunks): each charge ends as it would alone, what one
reserves is taken from what the ones before it left, and the batch's statements do not grow
with its size."""

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import UserFactory
from bnpl.models import Installment
from core.problems import DomainError
from events.models import Event, Notification
from ledger.checks import ledger_check
from ledger.selectors import credit_balances
from payments.models import Payment
from payments.services import (
    Charge,
    NothingToPay,
    PlanNotPayable,
    payment_attempt,
    payments_attempt_many,
)
from payments.tests.gateways import RecordingGateway

pytestmark = pytest.mark.django_db

PURCHASE = date(2026, 1, 10)


@pytest.fixture
def gateway(settings):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.clear()
    return RecordingGateway.charges


def first(plan) -> Installment:
    return plan.installments.get(sequence=1)


def with_credit(settings, make_plan, customer) -> None:
    """3.00 of credit for ``customer``: the gateway captured that much beyond a payment."""
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.OvercapturingGateway"
    plan = make_plan(customer=customer, total="20.00", purchase_date=PURCHASE)
    payment_attempt(plan_id=plan.pk, payer=customer, installment_id=first(plan).pk)
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    assert credit_balances(customer_id=customer.pk) == {"USD": Decimal("3.00")}


def test_a_batch_ends_each_charge_as_it_would_end_alone(settings, make_plan, gateway):
    spender = UserFactory()
    with_credit(settings, make_plan, spender)
    gateway.clear()
    small, other_small = (make_plan(customer=spender, total="8.00", purchase_date=PURCHASE) for _ in range(2))
    declined = UserFactory(card_last4="0002")
    declined_plan = make_plan(customer=declined, total="400.00", purchase_date=PURCHASE)
    payer = UserFactory()
    plan = make_plan(customer=payer, total="400.00", purchase_date=PURCHASE)
    earlier = payment_attempt(plan_id=plan.pk, payer=payer, amount=Decimal("1.00"), gateway_key="earlier-key")
    closed = make_plan(customer=payer, total="100.00", purchase_date=PURCHASE)
    closed.status = closed.Status.COMPLETED
    closed.save(update_fields=["status"])
    gateway.clear()

    charges = [
        Charge(small.pk, spender.pk, installment_id=first(small).pk, gateway_key="k-small"),
        Charge(other_small.pk, spender.pk, installment_id=first(other_small).pk, gateway_key="k-other"),
        Charge(declined_plan.pk, declined.pk, installment_id=first(declined_plan).pk, source=Payment.Source.AUTOPAY),
        Charge(plan.pk, payer.pk, installment_id=first(plan).pk),
        Charge(plan.pk, payer.pk, installment_id=first(plan).pk),  # reserved just before, in this batch
        Charge(plan.pk, payer.pk, amount=Decimal("150.00")),  # the whole plan: what the first left
        Charge(plan.pk, payer.pk, gateway_key="earlier-key"),
        Charge(closed.pk, payer.pk),
    ]
    outcomes = payments_attempt_many(charges)

    paid_small, paid_other, failed, paid_first, again, whole, found, refused = outcomes
    # Credit first, shared in the batch: 2.00 pays the first plan's installment, 1.00 of the next.
    assert (paid_small.status, paid_small.credit_amount, paid_small.card_amount) == (
        Payment.Status.SUCCEEDED,
        Decimal("2.00"),
        Decimal("0.00"),
    )
    assert (paid_other.status, paid_other.credit_amount, paid_other.card_amount) == (
        Payment.Status.SUCCEEDED,
        Decimal("1.00"),
        Decimal("1.00"),
    )
    assert credit_balances(customer_id=spender.pk) == {}
    assert (failed.status, failed.decline_code) == (Payment.Status.FAILED, "card_declined")
    assert first(declined_plan).amount_reserved == Decimal("0.00")
    assert (paid_first.status, paid_first.amount) == (Payment.Status.SUCCEEDED, Decimal("99.00"))
    assert isinstance(again, NothingToPay)
    # The whole plan after its first installment: 150.00 of the second and third.
    assert [(a.installment.sequence, a.amount) for a in whole.allocations.order_by("id")] == [
        (2, Decimal("100.00")),
        (3, Decimal("50.00")),
    ]
    assert found.pk == earlier.pk
    assert found.found_under_key
    assert isinstance(refused, PlanNotPayable)
    assert all(isinstance(outcome, DomainError) for outcome in (again, refused))

    assert [installment.status for installment in plan.installments.order_by("sequence")] == [
        Installment.Status.PAID,
        Installment.Status.PAID,
        Installment.Status.UPCOMING,
        Installment.Status.UPCOMING,
    ]
    assert first(small).status == first(other_small).status == Installment.Status.PAID
    assert sorted(amount for _, amount in gateway) == sorted(
        [Decimal("1.00"), Decimal("100.00"), Decimal("99.00"), Decimal("150.00")]
    ), "the card parts, each once; nothing for the refused, the found and the credit-paid"
    assert Event.objects.filter(type=Event.Type.INSTALLMENT_PAID).count() == 2 + 1 + 2  # the 20.00 plan's first too
    failed_event = Event.objects.get(type=Event.Type.PAYMENT_FAILED)
    assert failed_event.data["payment_id"] == failed.pk
    assert Notification.objects.filter(cause=f"payment:{failed.pk}", kind=Notification.Kind.AUTOPAY_FAILED).exists()
    receipts = Notification.objects.filter(kind=Notification.Kind.PAYMENT_RECEIPT).values_list("cause", flat=True)
    assert {f"payment:{p.pk}" for p in (paid_small, paid_other, paid_first, whole)} <= set(receipts)
    assert Payment.objects.filter(status=Payment.Status.PENDING).count() == 0
    assert ledger_check(record=False).ok


def test_a_refused_batch_member_leaves_nothing_written_and_the_others_are_paid(make_plan, gateway):
    customer = UserFactory()
    plan = make_plan(customer=customer, total="400.00", purchase_date=PURCHASE)
    other = make_plan(customer=customer, total="400.00", purchase_date=PURCHASE)

    outcomes = payments_attempt_many(
        [
            Charge(plan.pk, customer.pk, amount=Decimal("999.00")),  # more than is owed
            Charge(other.pk, customer.pk, installment_id=first(other).pk),
            Charge(plan.pk + other.pk + 1000, customer.pk),  # no such plan
        ]
    )

    assert outcomes[0].code == "overpayment"
    assert outcomes[1].status == Payment.Status.SUCCEEDED
    assert type(outcomes[2]).__name__ == "DoesNotExist"
    assert Payment.objects.count() == 1
    assert set(plan.installments.values_list("amount_reserved", "amount_paid")) == {(Decimal("0.00"), Decimal("0.00"))}


def test_a_batch_is_made_in_slices_each_reserved_charged_and_settled_before_the_next(make_plan, gateway, monkeypatch):
    from payments import services

    plans = [make_plan(customer=UserFactory(), total="400.00", purchase_date=PURCHASE) for _ in range(5)]
    seen = []
    ask = services._gateway_result

    def watched(payment):
        seen.append(
            (
                Payment.objects.filter(status=Payment.Status.PENDING).count(),
                Payment.objects.filter(status=Payment.Status.SUCCEEDED).count(),
            )
        )
        return ask(payment)

    monkeypatch.setattr(services, "BATCH_SIZE", 2)
    monkeypatch.setattr(services, "_gateway_result", watched)
    outcomes = payments_attempt_many([Charge(p.pk, p.customer_id, installment_id=first(p).pk) for p in plans])

    # (PENDING, SUCCEEDED) at each call: a slice of two reserved, then settled before the next.
    assert seen == [(2, 0), (2, 0), (2, 2), (2, 2), (1, 4)]
    assert [outcome.status for outcome in outcomes] == [Payment.Status.SUCCEEDED] * 5
    assert ledger_check(record=False).ok


def test_a_key_asked_twice_in_one_batch_refuses_the_batch_and_writes_nothing(make_plan, gateway):
    plan, other = (make_plan(customer=UserFactory(), total="400.00", purchase_date=PURCHASE) for _ in range(2))

    with pytest.raises(ValueError, match="twice"):
        payments_attempt_many(
            [
                Charge(plan.pk, plan.customer_id, installment_id=first(plan).pk, gateway_key="same"),
                Charge(other.pk, other.customer_id, installment_id=first(other).pk, gateway_key="same"),
            ]
        )

    assert Payment.objects.count() == 0
    assert gateway == []
    assert {first(p).amount_reserved for p in (plan, other)} == {Decimal("0.00")}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite keeps the ORM's statement per row")
def test_a_batch_sends_as_many_statements_for_six_charges_as_for_two(make_plan, gateway):
    plans = [make_plan(customer=UserFactory(), total="400.00", purchase_date=PURCHASE) for _ in range(8)]
    charges = [Charge(p.pk, p.customer_id, installment_id=first(p).pk) for p in plans]

    def statements(batch: list[Charge]) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            outcomes = payments_attempt_many(batch)
        assert {outcome.status for outcome in outcomes} == {Payment.Status.SUCCEEDED}
        # The fake gateway's own lookup of the card, one per charge, is the card network's part.
        return [query["sql"] for query in queries if "card_last4" not in query["sql"]]

    two, six = statements(charges[:2]), statements(charges[2:])

    assert len(six) == len(two)
    assert len(gateway) == 8
    assert all(first(p).status == Installment.Status.PAID for p in plans)
    assert ledger_check(record=False).ok
