"""A customer row another transaction holds (a payment's lock) while the sweep runs, on
PostgreSQL with a second connection: the chunk neither waits for it nor marks it, the
others are marked, and the run's close marks it once the holder is done."""

import threading
import time
from datetime import date, timedelta

import psycopg
import pytest
from django.db import connection, connections

from accounts.models import User
from accounts.tests.factories import UserFactory
from bnpl.models import SweepRun
from bnpl.services.sweep import overdue_sweep

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TODAY = date(2026, 6, 15)


def test_the_chunk_skips_a_held_customer_and_the_close_marks_it_once_released(make_plan):
    held, free = UserFactory(), UserFactory()
    for customer in (held, free):
        make_plan(customer=customer, purchase_date=TODAY - timedelta(days=40))  # 1st due 10 days ago
    database = connection.settings_dict
    holder = psycopg.connect(
        host=database["HOST"], port=database["PORT"] or 5432, user=database["USER"], dbname=database["NAME"]
    )
    with holder.cursor() as cursor:  # a transaction of its own, open until the rollback
        cursor.execute("SELECT 1 FROM accounts_user WHERE id = %s FOR NO KEY UPDATE", [held.pk])

    done = []

    def sweep():
        try:
            done.append(overdue_sweep(today=TODAY))
        finally:
            connections.close_all()

    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not SweepRun.objects.filter(chunks_total=1, chunks__done_at__isnull=False).exists():
            assert time.monotonic() < deadline, "the chunk waited for the held customer"
            time.sleep(0.05)
        time.sleep(0.3)  # the close is waiting for the held row now

        # The chunk committed without the held customer; the close cannot finish while it is held.
        assert dict(User.objects.filter(pk__in=[held.pk, free.pk]).values_list("pk", "status")) == {
            held.pk: User.Status.NORMAL,
            free.pk: User.Status.DEBT_USER,
        }
        assert thread.is_alive()
    finally:
        holder.rollback()
        holder.close()
        thread.join(timeout=30)

    assert not thread.is_alive()
    (run,) = done
    assert run.finished_at is not None
    assert (run.installments_marked_overdue, run.customers_marked_debt) == (2, 2)
    held.refresh_from_db()
    assert held.status == User.Status.DEBT_USER
