"""No plan of the sweep may depend on statistics being fresh after a mass change
(docs/SCALING.md, "Statistics older than the last mass change"): autovacuum may be off, or
not round yet, when the next sweep runs. The customers it restores and the ones its close
marks are found with set operations, hashed or sorted whatever the statistics say; the
join forms they replace loop over every overdue installment for each debtor."""

import re
from datetime import date, timedelta

import pytest
from django.db import connection

from accounts.models import User
from bnpl.models import Installment
from bnpl.services.sweep import (
    customers_in_debt_with_nothing_overdue,
    customers_normal_with_something_overdue,
    overdue_sweep,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

TODAY = date(2026, 6, 15)


@pytest.fixture
def stale_statistics(make_plan):
    """A mass change the statistics have not seen: analysed while nothing was overdue and
    nobody in debt, then a sweep marked 300 installments and their customers."""
    for _ in range(300):
        make_plan(purchase_date=TODAY - timedelta(days=40))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE accounts_user, bnpl_installment")
    run = overdue_sweep(today=TODAY)
    assert (run.installments_marked_overdue, run.customers_marked_debt) == (300, 300)


def test_the_restore_and_the_close_never_loop_on_statistics_older_than_a_mass_change(stale_statistics):
    # The statistics are stale: the planner expects next to no overdue installment or debtor.
    for rows in (
        Installment.objects.filter(status=Installment.Status.OVERDUE),
        User.objects.filter(status=User.Status.DEBT_USER),
    ):
        assert _estimated(rows) <= 30 < rows.count() == 300

    for found in (customers_in_debt_with_nothing_overdue(), customers_normal_with_something_overdue()):
        plan = found.explain()
        assert "SetOp" in plan, plan
        assert "Nested Loop" not in plan, plan
    assert list(customers_in_debt_with_nothing_overdue()) == []
    assert list(customers_normal_with_something_overdue()) == []


def _estimated(rows) -> int:
    """The rows the planner expects ``rows`` to return."""
    return int(re.search(r"rows=(\d+)", rows.explain())[1])


def test_an_idle_sweep_on_statistics_older_than_a_mass_change_restores_and_marks_as_on_fresh_ones(
    stale_statistics,
):
    paid_up = Installment.objects.filter(status=Installment.Status.OVERDUE).order_by("customer_id")[:100]
    paid_up_customers = set(paid_up.values_list("customer_id", flat=True))
    Installment.objects.filter(pk__in=list(paid_up.values_list("pk", flat=True))).update(
        status=Installment.Status.CANCELLED
    )
    set_back = User.objects.filter(status=User.Status.DEBT_USER).exclude(pk__in=paid_up_customers).order_by("pk")[:7]
    User.objects.filter(pk__in=list(set_back.values_list("pk", flat=True))).update(status=User.Status.NORMAL)

    run = overdue_sweep(today=TODAY)

    assert (run.customers_restored, run.customers_marked_debt) == (100, 7)
    restored = set(User.objects.filter(status=User.Status.NORMAL, plans__isnull=False).values_list("pk", flat=True))
    assert restored == paid_up_customers
