"""The books move from the payments app to the ledger app without losing a row.

A database is taken back to the schema before the move (payments at 0010, no ledger app),
filled with plans, payments, entries, postings and a check run (through today's services,
and through the models as they were then), and migrated forward: every row of the four
tables is still there, the same, read through the ledger's models; the PostgreSQL guards
still hold; the daily beat job runs the ledger's task; ``check_ledger`` passes. The test
database is migrated back to the latest state whatever happens.
"""

from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django_celery_beat.models import PeriodicTask

from ledger.models import JournalEntry, LedgerCheckRun, Posting
from payments.services import payment_attempt
from refunds.models import Refund

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BEFORE = ("payments", "0010_idempotency_key_principal_index_dropped")
TABLES = ["payments_ledgeraccount", "payments_journalentry", "payments_posting", "payments_ledgercheckrun"]


def _rows(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} ORDER BY id")  # noqa: S608 - table names are ours  # nosec B608
        return cursor.fetchall()


def _trigger_installed() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_trigger WHERE tgname = 'posting_entries_balanced' "
            "AND tgrelid = 'payments_posting'::regclass"
        )
        return cursor.fetchone() is not None


@pytest.fixture
def before_the_move():
    """``before_the_move()`` takes the database back to the schema before the ledger app and
    returns that schema's models; the latest schema again after the test, whatever happens."""

    def back():
        call_command("migrate", "ledger", "zero", verbosity=0)  # also takes payments back to 0010
        return MigrationExecutor(connection).loader.project_state(BEFORE).apps

    try:
        yield back
    finally:
        call_command("migrate", verbosity=0)


def test_the_books_keep_every_row_when_the_ledger_takes_them_over(make_plan, customer, before_the_move):
    # Rows written by today's code (origination, a payment), on today's schema ...
    plan = make_plan(customer=customer, total="300.00", count=3)
    paid = payment_attempt(plan_id=plan.pk, payer=customer, installment_id=plan.installments.get(sequence=1).pk)
    assert paid.status == "SUCCEEDED"
    old = before_the_move()
    applied = MigrationExecutor(connection).loader.applied_migrations
    assert ("ledger", "0001_initial") not in applied
    assert ("payments", "0011_ledger_models_moved_to_ledger") not in applied
    # ... and through the models as they were before the move.
    OldEntry, OldPosting = old.get_model("payments", "JournalEntry"), old.get_model("payments", "Posting")
    OldAccount = old.get_model("payments", "LedgerAccount")
    accounts = dict(OldAccount.objects.values_list("code", "pk"))
    entry = OldEntry.objects.create(kind="REFUND_CREDIT", memo="written before the move", plan_id=plan.pk)
    OldPosting.objects.bulk_create(
        [
            OldPosting(
                entry=entry,
                account_id=accounts["merchant_payable"],
                amount=Decimal("5.00"),
                currency="USD",
                party_id=plan.merchant_id,
            ),
            OldPosting(
                entry=entry,
                account_id=accounts["customer_credit"],
                amount=Decimal("-5.00"),
                currency="USD",
                party_id=customer.pk,
            ),
        ]
    )
    old.get_model("payments", "LedgerCheckRun").objects.create(ok=True, breaches=[])
    # The beat job as bnpl 0003 made it (a transactional test before this one may have emptied the table).
    every_day, _ = old.get_model("django_celery_beat", "IntervalSchedule").objects.get_or_create(every=1, period="days")
    old.get_model("django_celery_beat", "PeriodicTask").objects.update_or_create(
        name="ledger-check-daily", defaults={"task": "payments.tasks.ledger_check_task", "interval": every_day}
    )
    before = {table: _rows(table) for table in TABLES}
    assert all(before.values())

    call_command("migrate", verbosity=0)
    # The refund the entry written before the move records (invariant 7 reads what refunds took
    # from the merchant's payable off the refunds).
    Refund.objects.create(
        plan=plan,
        merchant_id=plan.merchant_id,
        customer=customer,
        requested_by_id=plan.merchant_id,
        transaction_id="rf-before-the-move",
        amount=Decimal("5.00"),
        currency="USD",
        status=Refund.Status.APPROVED,
        payout_amount=Decimal("5.00"),
        payout_status=Refund.PayoutStatus.CREDITED,
        payout_method=Refund.PayoutMethod.CREDIT,
    )

    assert {table: _rows(table) for table in TABLES} == before
    assert JournalEntry.objects.count() == len(before["payments_journalentry"])
    assert Posting.objects.count() == len(before["payments_posting"])
    assert LedgerCheckRun.objects.count() == len(before["payments_ledgercheckrun"])
    assert set(JournalEntry.objects.filter(plan=plan).values_list("kind", flat=True)) == {
        "ORIGINATION",
        "PAYMENT",
        "REFUND_CREDIT",
    }
    assert ContentType.objects.get_for_model(JournalEntry).app_label == "ledger"
    assert PeriodicTask.objects.get(name="ledger-check-daily").task == "ledger.tasks.ledger_check_task"
    # The guards stayed on the tables: an unbalanced entry is refused, a posting is never changed.
    assert _trigger_installed()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE payments_posting SET amount = amount * 2")
    call_command("check_ledger", verbosity=0)  # exit status 1 (SystemExit) on any breach
