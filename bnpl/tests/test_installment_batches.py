"""The installment writer's batch forms (a batch of payments settled together): each plan
closed, and each customer restored, exactly as the one-at-a-time forms do it."""

import pytest

from accounts.models import User
from accounts.tests.factories import UserFactory
from bnpl.models import Installment, Plan
from bnpl.services.installments import customers_restore_if_clear, plans_close_if_settled
from events.models import Event

pytestmark = [pytest.mark.django_db, pytest.mark.breaks_ledger]  # states set by hand, not booked


def test_only_the_customers_in_debt_with_nothing_overdue_are_restored(make_plan):
    clear, still_overdue, normal = UserFactory(), UserFactory(), UserFactory()
    for customer in (clear, still_overdue, normal):
        make_plan(customer=customer)
    User.objects.filter(pk__in=[clear.pk, still_overdue.pk]).update(status=User.Status.DEBT_USER)
    Installment.objects.filter(customer=still_overdue, sequence=1).update(status=Installment.Status.OVERDUE)

    customers_restore_if_clear(customer_ids=[normal.pk, still_overdue.pk, clear.pk, clear.pk])

    statuses = dict(User.objects.filter(pk__in=[clear.pk, still_overdue.pk, normal.pk]).values_list("pk", "status"))
    assert statuses == {
        clear.pk: User.Status.NORMAL,
        still_overdue.pk: User.Status.DEBT_USER,
        normal.pk: User.Status.NORMAL,
    }
    customers_restore_if_clear(customer_ids=[])  # nothing to ask


def test_each_plan_with_nothing_left_closes_and_the_others_stay_active(make_plan):
    paid, never_paid, open_plan, closed = (make_plan(total="100.00") for _ in range(4))
    Installment.objects.filter(plan=paid).update(status=Installment.Status.PAID, amount_paid=25)
    Installment.objects.filter(plan=never_paid).update(status=Installment.Status.CANCELLED)
    Installment.objects.filter(plan=open_plan, sequence__lt=4).update(status=Installment.Status.PAID, amount_paid=25)
    Plan.objects.filter(pk=closed.pk).update(status=Plan.Status.COMPLETED)
    closed.refresh_from_db()
    Event.objects.all().delete()

    plans_close_if_settled([open_plan, paid, never_paid, closed])

    statuses = dict(Plan.objects.values_list("pk", "status"))
    assert [statuses[p.pk] for p in (paid, never_paid, open_plan, closed)] == [
        Plan.Status.COMPLETED,
        Plan.Status.CANCELLED,
        Plan.Status.ACTIVE,
        Plan.Status.COMPLETED,
    ]
    assert list(Event.objects.values_list("type", "data__plan_id")) == [(Event.Type.PLAN_COMPLETED, paid.pk)]
