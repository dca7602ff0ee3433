"""core.db.row_save writes what ``Model.save(update_fields=...)`` writes, and only that."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from bnpl.models import Installment
from core.db import row_save

pytestmark = pytest.mark.django_db


def _stored(installment: Installment) -> tuple:
    return (
        Installment.objects.filter(pk=installment.pk)
        .values_list("amount_reserved", "amount_paid", "status", "paid_at", "updated_at", "amount_due")
        .get()
    )


@pytest.mark.breaks_ledger  # a reservation no payment holds
@pytest.mark.parametrize("written_out", [True, False], ids=["written out", "orm"])
def test_only_the_fields_named_are_saved_and_auto_now_is_set(make_plan, monkeypatch, written_out):
    if written_out and connection.vendor != "postgresql":
        pytest.skip("the written-out UPDATE is PostgreSQL's")
    monkeypatch.setattr("core.db.postgresql", lambda: written_out)
    installment = make_plan(total="400.00").installments.get(sequence=1)
    before = _stored(installment)
    installment.amount_due = Decimal("1.00")  # changed in memory, not named: stays as stored
    installment.amount_reserved = Decimal("0.25")
    installment.status = Installment.Status.PAID
    installment.paid_at = installment.updated_at + timedelta(days=1)

    row_save(installment, ["amount_reserved", "status", "paid_at", "updated_at"])

    reserved, paid, status, paid_at, updated_at, due = _stored(installment)
    assert (reserved, paid, status, paid_at) == (Decimal("0.25"), before[1], "PAID", installment.paid_at)
    assert due == before[5] == Decimal("100.00")
    assert updated_at == installment.updated_at > before[4]


@pytest.mark.parametrize("written_out", [True, False], ids=["written out", "orm"])
def test_a_row_that_is_gone_is_an_error(make_plan, monkeypatch, written_out):
    if written_out and connection.vendor != "postgresql":
        pytest.skip("the written-out UPDATE is PostgreSQL's")
    monkeypatch.setattr("core.db.postgresql", lambda: written_out)
    installment = make_plan(total="400.00").installments.get(sequence=1)
    installment.pk = 10**9
    with pytest.raises(DatabaseError), transaction.atomic():
        row_save(installment, ["amount_reserved"])


def test_a_row_of_some_fields_becomes_the_model_the_orm_reads_with_only_them():
    from accounts.models import User
    from accounts.tests.factories import UserFactory
    from core.db import model_from_row

    user = UserFactory(credit_limit=Decimal("750.25"))
    fields = ("id", "user_id", "status", "credit_limit")
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, user_id, status, credit_limit FROM accounts_user WHERE id = %s", [user.pk])
        ours = model_from_row(User, cursor.fetchone(), fields=fields)
    orms = User.objects.only(*fields).get(pk=user.pk)
    assert [getattr(ours, name) for name in fields] == [getattr(orms, name) for name in fields]
    assert ours.get_deferred_fields() == orms.get_deferred_fields()

    # Out of the model's order, the values would land on the wrong fields: refused.
    with pytest.raises(ValueError, match="field order"):
        model_from_row(User, (user.user_id, user.pk), fields=("user_id", "id"))
