"""The payment path's statements written out for PostgreSQL (the payment and its allocations
reserved, the payer locked, the payment under a key, the payment and its allocations with
their rows as it is settled) write and read what the ORM does (SQLite keeps the ORM)."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict

from accounts.tests.factories import UserFactory
from bnpl.tests.factories import late_fee_charged
from core.tests.sql_plans import join_methods_without_nested_loops
from payments.models import Payment
from payments.selectors import (
    _ALLOCATIONS_WITH_ROWS,
    _PAYMENTS_WITH_CUSTOMERS,
    _matching,
    allocations_with_rows,
    payer_locked,
    payment_under_key,
    payment_with_customer,
)
from payments.tests.factories import payment_pending

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the statement is PostgreSQL's"),
]


def test_the_payment_with_its_customer_is_what_the_orm_reads(settings, make_plan, customer, monkeypatch):
    pending = payment_pending(settings, make_plan(customer=customer, total="300.00"), "40.00")

    written = payment_with_customer(payment_id=pending.pk)
    monkeypatch.setattr("payments.selectors.postgresql", lambda: False)
    orm = payment_with_customer(payment_id=pending.pk)

    assert model_to_dict(written) | {"created_at": written.created_at} == model_to_dict(orm) | {
        "created_at": orm.created_at
    }
    assert written.customer.user_id == orm.customer.user_id == customer.user_id
    assert written.card_amount == orm.card_amount
    with pytest.raises(Payment.DoesNotExist):
        payment_with_customer(payment_id=pending.pk + 1000)


def test_the_allocations_with_their_rows_are_what_the_orm_reads(settings, make_plan, customer, monkeypatch):
    settings.BNPL_LATE_FEE_FIRST = Decimal("10.00")
    plan = make_plan(customer=customer, total="400.00")
    late_fee_charged(plan)
    pending = payment_pending(settings, plan, "150.00")  # the overdue 100.00, the fee, 40.00 of the next

    written = allocations_with_rows(payment_id=pending.pk)
    monkeypatch.setattr("payments.selectors.postgresql", lambda: False)
    orm = allocations_with_rows(payment_id=pending.pk)

    def shown(allocations):
        return [
            (
                model_to_dict(a),
                a.installment and model_to_dict(a.installment) | {"updated_at": a.installment.updated_at},
                a.late_fee and model_to_dict(a.late_fee),
            )
            for a in allocations
        ]

    assert shown(written) == shown(orm)
    assert [(a.installment_id is not None, a.late_fee_id is not None, a.amount) for a in written] == [
        (True, False, Decimal("100.00")),
        (False, True, Decimal("10.00")),
        (True, False, Decimal("40.00")),
    ]
    assert allocations_with_rows(payment_id=pending.pk + 1000) == []


def _reserved(payment: Payment) -> tuple:
    row = model_to_dict(payment, exclude=["id", "plan", "gateway_key"])
    allocations = [
        (a.installment.sequence if a.installment else None, a.late_fee_id is not None, a.amount, a.credited)
        for a in payment.allocations.select_related("installment").order_by("id")
    ]
    return row, allocations


def test_a_payment_reserved_by_the_written_out_statements_is_what_the_orm_writes(settings, make_plan, monkeypatch):
    settings.BNPL_LATE_FEE_FIRST = Decimal("10.00")
    customer = UserFactory()
    written_plan, orm_plan = make_plan(customer=customer, total="400.00"), make_plan(customer=customer, total="400.00")
    for plan in (written_plan, orm_plan):
        late_fee_charged(plan)

    written = payment_pending(settings, written_plan, "150.00")
    for module in ("payments.services", "payments.selectors", "core.db", "bnpl.services.installments"):
        monkeypatch.setattr(f"{module}.postgresql", lambda: False)
    orm = payment_pending(settings, orm_plan, "150.00")

    assert _reserved(Payment.objects.get(pk=written.pk)) == _reserved(Payment.objects.get(pk=orm.pk))
    assert model_to_dict(written) == model_to_dict(Payment.objects.get(pk=written.pk))  # as returned
    assert written.created_at == Payment.objects.get(pk=written.pk).created_at
    assert len(_reserved(written)[1]) == 3


def test_the_payment_under_a_key_and_the_payer_locked_are_what_the_orm_reads(
    settings, make_plan, customer, monkeypatch
):
    pending = payment_pending(settings, make_plan(customer=customer, total="300.00"), "40.00")

    written = (payment_under_key(gateway_key=pending.gateway_key), payment_under_key(gateway_key="none"))
    with transaction.atomic():
        payer = payer_locked(customer_id=customer.pk)
    monkeypatch.setattr("payments.selectors.postgresql", lambda: False)
    orm = (payment_under_key(gateway_key=pending.gateway_key), payment_under_key(gateway_key="none"))
    with transaction.atomic():
        orm_payer = payer_locked(customer_id=customer.pk)

    assert model_to_dict(written[0]) == model_to_dict(orm[0])
    assert written[0].pk == orm[0].pk == pending.pk
    assert written[1] is orm[1] is None
    assert (payer.pk, payer.card_token) == (orm_payer.pk, orm_payer.card_token) == (customer.pk, customer.card_token)


def test_the_settling_reads_find_their_joined_rows_by_key_whatever_the_statistics():
    # A merge join walked the installments' whole key index for one allocation once the
    # allocations' statistics were stale: the joins leave the planner no such choice.
    for sql in (_ALLOCATIONS_WITH_ROWS, _PAYMENTS_WITH_CUSTOMERS):
        for keys in ([1], [1, 2]):  # one payment's statement, and a batch's
            assert join_methods_without_nested_loops(*_matching(sql, keys)) <= {"Nested Loop"}
