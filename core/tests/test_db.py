"""core.db.row_save and rows_save write what ``Model.save(update_fields=...)`` writes, and only that;
atomic_refusing_first joins its caller's transaction without a savepoint, and nothing half-done commits."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.tests.factories import UserFactory
from bnpl.models import Installment
from core.db import RowSaves, atomic_refusing_first, row_save, rows_save

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


@pytest.mark.breaks_ledger  # reservations no payment holds
@pytest.mark.parametrize("written_out", [True, False], ids=["written out", "orm"])
def test_many_rows_are_saved_with_their_own_values_in_one_statement(make_plan, monkeypatch, written_out):
    if written_out and connection.vendor != "postgresql":
        pytest.skip("the written-out UPDATE is PostgreSQL's")
    monkeypatch.setattr("core.db.postgresql", lambda: written_out)
    installments = list(make_plan(total="400.00").installments.order_by("sequence"))
    others = [_stored(installment) for installment in installments[2:]]
    for n, installment in enumerate(installments[:2], start=1):
        installment.amount_reserved = Decimal(n)
        installment.amount_due = Decimal("1.00")  # not named: stays as stored

    with CaptureQueriesContext(connection) as queries:
        rows_save(installments[:2], ["amount_reserved", "updated_at"])

    assert len(queries) == (1 if written_out else 2)
    assert [_stored(i)[0] for i in installments[:2]] == [Decimal("1.00"), Decimal("2.00")]
    assert {_stored(i)[5] for i in installments[:2]} == {Decimal("100.00")}
    assert all(_stored(i)[4] == i.updated_at for i in installments[:2])
    assert [_stored(installment) for installment in installments[2:]] == others
    installments[0].pk = 10**9
    with pytest.raises(DatabaseError), transaction.atomic():
        rows_save(installments[:2], ["amount_reserved"])


@pytest.mark.breaks_ledger  # reservations no payment holds
def test_row_saves_write_each_row_with_only_the_columns_it_changed(make_plan):
    first, second = make_plan(total="400.00").installments.order_by("sequence")[:2]
    saves = RowSaves()
    first.amount_reserved = Decimal("3.00")
    saves.add(first, ["amount_reserved"])
    second.amount_paid = Decimal("4.00")
    saves.add(second, ["amount_paid"])
    first.amount_paid = Decimal("5.00")
    saves.add(first, ["amount_paid"])  # the same row again: both its columns
    # Meanwhile another writer marks the second one OVERDUE: not overwritten by the stale status in memory.
    Installment.objects.filter(pk=second.pk).update(status=Installment.Status.OVERDUE)

    saves.save()

    assert _stored(first)[:3] == (Decimal("3.00"), Decimal("5.00"), Installment.Status.UPCOMING)
    assert _stored(second)[:3] == (Decimal("0.00"), Decimal("4.00"), Installment.Status.OVERDUE)
    saves.save()  # forgotten once saved: nothing to write again


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


class Refused(Exception):
    pass


def _named(user_pk: int) -> str:
    return User.objects.filter(pk=user_pk).values_list("full_name", flat=True).get()


@atomic_refusing_first()
def _locks_then_refuses(user_pk: int) -> None:
    User.objects.select_for_update().filter(pk=user_pk).get()  # reads and locks: not a write
    raise Refused()


@atomic_refusing_first()
def _writes_then_refuses(user_pk: int) -> None:
    User.objects.filter(pk=user_pk).update(full_name="half-done")
    raise Refused()


@atomic_refusing_first()
def _writes(user_pk: int) -> bool:
    User.objects.filter(pk=user_pk).update(full_name="after")
    return connection.in_atomic_block


def test_inside_a_transaction_a_service_that_refuses_first_sets_no_savepoint_and_leaves_it_usable():
    """The caller's transaction goes on after a refusal that came before any write (an
    Idempotency-Key keeps the refusal as its answer)."""
    user = UserFactory(full_name="before")
    with transaction.atomic(), CaptureQueriesContext(connection) as sent:
        with pytest.raises(Refused):
            _locks_then_refuses(user.pk)
        assert not connection.needs_rollback
        User.objects.filter(pk=user.pk).update(full_name="after")  # the caller's own work goes on
    assert not [q["sql"] for q in sent.captured_queries if "SAVEPOINT" in q["sql"]], sent.captured_queries
    assert _named(user.pk) == "after"


def test_inside_a_transaction_anything_raised_after_a_write_dooms_the_callers_transaction():
    """A refusal after a write would otherwise commit the write with the caller's work:
    the caller's transaction is marked to roll back, and its next statement fails."""
    user = UserFactory(full_name="before")
    with transaction.atomic():
        with pytest.raises(Refused):
            _writes_then_refuses(user.pk)
        assert connection.needs_rollback
        with pytest.raises(TransactionManagementError):
            _named(user.pk)
    assert _named(user.pk) == "before"


@pytest.mark.django_db(transaction=True)
def test_alone_it_is_a_transaction_of_its_own():
    user = UserFactory(full_name="before")
    with pytest.raises(Refused):
        _writes_then_refuses(user.pk)
    assert _named(user.pk) == "before"
    assert _writes(user.pk)
    assert _named(user.pk) == "after"
