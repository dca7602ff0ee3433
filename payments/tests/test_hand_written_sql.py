"""The reads of a payment as it is settled (the payment, its allocations with their rows),
written out for PostgreSQL, read what the ORM reads (SQLite keeps the ORM)."""

from decimal import Decimal

import pytest
from django.db import connection
from django.forms.models import model_to_dict

from bnpl.tests.factories import late_fee_charged
from payments.models import Payment
from payments.selectors import allocations_with_rows, payment_with_customer
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
