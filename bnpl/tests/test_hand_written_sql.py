"""The payment path's reads written out for PostgreSQL read what the ORM reads (SQLite keeps
the ORM): the plan's lock by id, its open installments, its late fees due, an installment's plan
for whoever may see it, a customer's debt status for whoever may see it; and the
notifications recorded in one statement are the rows the ORM path records."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict

from accounts.tests.factories import MerchantFactory, OperatorFactory, UserFactory
from bnpl.models import Installment, LateFee, Plan
from bnpl.schedule import business_today
from bnpl.selectors import (
    _DEBT_OVERDUE,
    _INSTALLMENT_PLAN,
    _PLAN_SQL,
    _plan_lock_with_parties,
    debt_status_get_for,
    installment_plan_for,
    plan_get_for_update,
    plan_scope,
    plan_visible,
)
from bnpl.services.checkout import _PLAN_LOCK_SQL
from bnpl.services.installments import _due_fees, _open_installments
from bnpl.services.sweep import overdue_sweep
from bnpl.tests.factories import late_fee_charged
from core.tests.sql_plans import join_methods_without_nested_loops
from events.models import Notification
from events.notifications import notifications_queue

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the statements are PostgreSQL's"),
]


def _values(rows) -> list[dict]:
    return [model_to_dict(row) | {"id": row.pk, "created_at": getattr(row, "created_at", None)} for row in rows]


def test_the_plan_locked_by_id_is_the_plan_the_orm_locks(make_plan):
    plan = make_plan(total="300.00")
    with transaction.atomic():
        written = plan_get_for_update(pk=plan.pk)
        orm = Plan.objects.select_for_update(of=("self",), no_key=True).get(pk=plan.pk)
        assert _values([written]) == _values([orm])
        assert written._state.adding is False
    with pytest.raises(Plan.DoesNotExist), transaction.atomic():
        plan_get_for_update(pk=plan.pk + 1000)


@pytest.mark.breaks_ledger  # a second fee made by hand, not booked
def test_open_installments_and_due_fees_are_what_the_orm_reads(settings, make_plan, monkeypatch):
    settings.BNPL_LATE_FEE_FIRST = Decimal("10.00")
    plan, other, closed = make_plan(total="400.00"), make_plan(total="200.00"), make_plan(total="100.00")
    late_fee_charged(plan)
    Installment.objects.filter(plan=plan, sequence=3).update(status=Installment.Status.PAID)
    Installment.objects.filter(plan=closed).update(status=Installment.Status.PAID)
    LateFee.objects.create(plan=plan, installment=plan.installments.get(sequence=2), amount=Decimal("5.00"))
    plans = [other.pk, plan.pk, closed.pk]

    def read() -> tuple[dict, dict]:
        installments = _open_installments(plans)
        fees = _due_fees(plans)
        return {k: _values(v) for k, v in installments.items()}, {k: _values(v) for k, v in fees.items()}

    written = read()
    monkeypatch.setattr("bnpl.services.installments.postgresql", lambda: False)
    assert written == read()
    installments, fees = written
    assert installments.keys() == {plan.pk, other.pk}, "a plan with nothing open has no entry"
    assert [i.sequence for i in _open_installments([plan.pk])[plan.pk]] == [1, 2, 4]
    expected = Installment.objects.filter(plan=plan, status__in=("UPCOMING", "OVERDUE"))
    assert installments[plan.pk] == _values(expected.order_by("due_date", "sequence"))
    for pk in plans:
        due = _values(LateFee.objects.filter(plan_id=pk, status=LateFee.Status.DUE).order_by("id"))
        assert fees.get(pk, []) == due
    assert len(fees[plan.pk]) == 2


def _recorded() -> list[tuple]:
    return list(
        Notification.objects.order_by("customer_id", "cause", "channel").values_list(
            "customer_id", "kind", "channel", "cause", "subject", "body", "status", "error", "sent_at"
        )
    )


def test_notifications_recorded_in_one_statement_are_the_orm_path_s(monkeypatch, django_capture_on_commit_callbacks):
    both, email_only, neither = UserFactory(), UserFactory(phone_number=""), UserFactory(email="", phone_number="")
    items = [
        (both.pk, Notification.Kind.PAYMENT_RECEIPT, "payment:1", "Paid", "Thank you."),
        (email_only.pk, Notification.Kind.PAYMENT_RECEIPT, "payment:2", "Paid", "Thank you, ' quoted."),
        (neither.pk, Notification.Kind.PAYMENT_RECEIPT, "payment:3", "Paid", "Thank you."),
    ]
    with django_capture_on_commit_callbacks() as sent:
        notifications_queue(items=items)
        notifications_queue(items=items[:1])  # a cause recorded before is left alone
    written = _recorded()
    assert len(sent) == 2  # a send is due: some were PENDING

    Notification.objects.all().delete()
    monkeypatch.setattr("events.notifications.postgresql", lambda: False)
    with django_capture_on_commit_callbacks() as sent_by_orm:
        notifications_queue(items=items)
        notifications_queue(items=items[:1])
    assert _recorded() == written
    assert len(written) == 6
    assert len(sent_by_orm) == len(sent)

    Notification.objects.all().delete()
    with django_capture_on_commit_callbacks() as nothing_to_send:
        notifications_queue(items=items[2:])  # no address at all: SKIPPED, nothing to send
    assert not nothing_to_send


def test_a_plan_is_visible_to_whom_the_orm_shows_it(make_plan):
    plan = make_plan(total="400.00")
    viewers = [plan.customer, plan.merchant, OperatorFactory(), UserFactory(), MerchantFactory()]
    ids = [plan.pk, plan.pk + 1000, 2**63, 0, -1]

    written = [[plan_visible(viewer=v, pk=pk) for pk in ids] for v in viewers]
    orm = [[0 < pk < 2**63 and Plan.objects.filter(plan_scope(v), pk=pk).exists() for pk in ids] for v in viewers]

    assert written == orm
    assert [row[0] for row in written] == [True, True, True, False, False]


def test_the_plan_of_an_installment_is_found_for_whom_the_orm_finds_it(make_plan, monkeypatch):
    plan = make_plan(total="400.00")
    installment = plan.installments.get(sequence=2)
    viewers = [plan.customer, plan.merchant, OperatorFactory(), UserFactory(), MerchantFactory()]
    ids = [installment.pk, installment.pk + 1000, 2**63, -1]

    written = [[installment_plan_for(viewer=v, installment_id=i) for i in ids] for v in viewers]
    monkeypatch.setattr("bnpl.selectors.postgresql", lambda: False)
    orm = [[installment_plan_for(viewer=v, installment_id=i) for i in ids] for v in viewers]

    assert written == orm
    assert [row[0] for row in written] == [plan.pk, plan.pk, plan.pk, None, None]


@pytest.mark.parametrize("currencies", [("USD",), ("USD", "EUR")])
def test_the_debt_status_is_found_for_whom_the_orm_finds_it_with_the_same_figures(make_plan, monkeypatch, currencies):
    customer = UserFactory(credit_limit=Decimal("5000.00"))
    long_ago = business_today() - timedelta(days=75)
    plans = [
        make_plan(customer=customer, total="400.00", purchase_date=long_ago, currency=currency)
        for currency in currencies
    ]
    make_plan(customer=customer, merchant=plans[0].merchant, total="300.00", count=3)  # owed, not overdue
    overdue_sweep(late_fees=True)
    owing_nothing = UserFactory()
    viewers = [customer, plans[0].merchant, OperatorFactory(), owing_nothing, MerchantFactory()]
    user_ids = [customer.user_id, owing_nothing.user_id, plans[0].merchant.user_id, "usr-nobody", "9" * 30]
    today = business_today()

    def answers():
        return [[debt_status_get_for(viewer=v, user_id=u, today=today) for u in user_ids] for v in viewers]

    written = answers()
    monkeypatch.setattr("bnpl.selectors.postgresql", lambda: False)
    orm = answers()

    assert written == orm
    found = [[status is not None for status in row] for row in written]
    # The customer sees itself; its plans' merchant sees it; the operator every customer; a
    # merchant is no customer (404 to all); nobody sees an id that names no one.
    assert found == [
        [True, False, False, False, False],
        [True, False, False, False, False],
        [True, True, False, False, False],
        [False, True, False, False, False],
        [False, False, False, False, False],
    ]
    status = written[0][0]
    assert status.has_overdue
    assert len(status.by_currency) == len(currencies)
    assert [debt.fees_due for debt in status.by_currency if debt.currency == "USD"] == [Decimal("20.00")]


def test_the_point_reads_find_their_joined_rows_by_key_whatever_the_statistics():
    # A plain join let the planner choose a merge join, which on stale statistics walks the
    # joined table's key index from its start: these joins leave it no such choice.
    for sql in (_PLAN_SQL, _plan_lock_with_parties(None), _INSTALLMENT_PLAN, _PLAN_LOCK_SQL[False]):
        assert join_methods_without_nested_loops(sql, [1]) <= {"Nested Loop"}, sql
    assert join_methods_without_nested_loops(_PLAN_LOCK_SQL[True], [1, 1]) <= {"Nested Loop"}
    overdue = [1, Installment.Status.OVERDUE]
    assert join_methods_without_nested_loops(_DEBT_OVERDUE, overdue) <= {"Nested Loop"}
