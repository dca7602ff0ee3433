from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from bnpl.models import Installment
from ledger.accounts import CUSTOMER_CREDIT, CUSTOMER_RECEIVABLE, FEE_INCOME, GATEWAY_CLEARING
from ledger.checks import ledger_check
from ledger.models import AppendOnlyError, JournalEntry, LedgerCheckRun, Posting
from ledger.selectors import credit_balances, credit_balances_of
from ledger.services import Leg, UnbalancedEntry, ledger_post, ledger_post_many

pytestmark = pytest.mark.django_db


def test_ledger_post_refuses_an_unbalanced_entry():
    with pytest.raises(UnbalancedEntry):
        ledger_post(kind="LATE_FEE", legs=[Leg(CUSTOMER_RECEIVABLE, Decimal("1.00"), "USD")])
    with pytest.raises(UnbalancedEntry):  # balanced in total, not per currency
        ledger_post(
            kind="LATE_FEE",
            legs=[Leg(CUSTOMER_RECEIVABLE, Decimal("1.00"), "USD"), Leg(FEE_INCOME, Decimal("-1.00"), "EUR")],
        )
    with pytest.raises(UnbalancedEntry):
        ledger_post_many(kind="LATE_FEE", entries=[(None, "x", [Leg(FEE_INCOME, Decimal("-2.00"), "USD")])])
    assert not JournalEntry.objects.exists()


def test_postings_and_entries_are_append_only(make_plan):
    make_plan()
    posting = Posting.objects.first()

    posting.amount = Decimal("1.00")
    with pytest.raises(AppendOnlyError):
        posting.save()
    with pytest.raises(AppendOnlyError):
        posting.delete()
    with pytest.raises(AppendOnlyError):
        Posting.objects.update(amount=0)
    with pytest.raises(AppendOnlyError):
        JournalEntry.objects.all().delete()


def test_check_ledger_passes_on_healthy_books(make_plan, capsys):
    make_plan()
    call_command("check_ledger")
    assert "Ledger OK" in capsys.readouterr().out
    assert LedgerCheckRun.objects.get().ok


@pytest.mark.breaks_ledger
def test_check_ledger_exits_1_with_a_report_on_broken_books(make_plan, capsys):
    plan = make_plan(total="100.00")
    # Break it the way only a bug or a hand edit could: an unbalanced entry, and an
    # installment that no longer matches the receivable. PostgreSQL would refuse the entry,
    # so there its guard is switched off the way a superuser could (rolled back after).
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # settle the plan's own pending checks
            cursor.execute("ALTER TABLE payments_posting DISABLE TRIGGER posting_entries_balanced")
    entry = JournalEntry.objects.create(kind="LATE_FEE", plan=plan)
    Posting.objects.create(entry=entry, account=Posting.objects.first().account, amount=Decimal("3.00"), currency="USD")
    Installment.objects.filter(plan=plan, sequence=1).update(amount_paid=Decimal("5.00"))

    with pytest.raises(SystemExit) as exited:
        call_command("check_ledger")

    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"entry {entry.pk} does not balance in USD: off by 3.00" in err
    assert f"plan {plan.pk}: receivable in the ledger 100.00 != unpaid installments and fees 95.00" in err
    assert not ledger_check(record=False).ok
    assert LedgerCheckRun.objects.get().ok is False


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_rejects_an_unbalanced_entry_even_from_raw_sql(make_plan):
    """Each INSERT of postings must leave every entry it touched balanced: one leg alone is
    refused, even inside a transaction that would add the other leg later."""
    make_plan()
    account_id = Posting.objects.first().account_id

    def post(legs: list[str]) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("INSERT INTO payments_journalentry (kind, memo, created_at) VALUES ('LATE_FEE', '', now())")
            cursor.execute("SELECT currval(pg_get_serial_sequence('payments_journalentry', 'id'))")
            entry_id = cursor.fetchone()[0]
            for amounts in legs:
                cursor.execute(
                    "INSERT INTO payments_posting (entry_id, account_id, amount, currency) "
                    "SELECT %s, %s, amount, 'USD' FROM unnest(%s::numeric[]) AS amount",
                    [entry_id, account_id, amounts],
                )

    for legs in (["{5.00}"], ["{5.00}", "{-5.00}"], ["{5.00,-4.99}"], ["{5.00,-5.00}", "{1.00}"]):
        with pytest.raises(IntegrityError, match="does not balance"):
            post(legs)
    assert JournalEntry.objects.count() == 1  # only the origination
    post(["{5.00,-5.00}"])  # both legs in one statement
    assert JournalEntry.objects.count() == 2
    assert ledger_check(record=False).ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_refuses_updates_and_deletes_of_postings_from_raw_sql(make_plan):
    make_plan()

    for statement in ("UPDATE payments_posting SET amount = amount * 2", "DELETE FROM payments_posting"):
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    assert ledger_check(record=False).ok


@pytest.mark.breaks_ledger  # late fees no plan row holds
def test_one_entry_is_written_the_same_by_its_one_statement_and_by_the_orm(make_plan):
    """On PostgreSQL ``ledger_post`` writes an entry and its postings in one statement; the
    set-based path (``ledger_post_many``, the ORM) must write the same rows."""
    plan = make_plan(total="100.00")
    legs = [
        Leg(CUSTOMER_RECEIVABLE, Decimal("2.50"), "USD", plan.pk, plan.customer_id),
        Leg(FEE_INCOME, Decimal("0"), "USD", plan.pk, plan.customer_id),  # dropped by both
        Leg(FEE_INCOME, Decimal("-2.00"), "USD", plan.pk, None),
        Leg(FEE_INCOME, Decimal("-0.50"), "USD", None, plan.customer_id),
    ]
    one = ledger_post(kind="LATE_FEE", legs=legs, plan_id=plan.pk, memo="one")
    ledger_post_many(kind="LATE_FEE", entries=[(plan.pk, "many", legs)])
    many = JournalEntry.objects.get(memo="many")

    def rows(entry):
        return list(
            Posting.objects.filter(entry=entry)
            .order_by("id")
            .values_list("account_id", "amount", "currency", "plan_id", "party_id")
        )

    assert rows(one) == rows(many)
    assert len(rows(one)) == 3
    stored = JournalEntry.objects.get(pk=one.pk)
    assert (one.kind, one.memo, one.plan_id, one.created_at) == (
        stored.kind,
        stored.memo,
        stored.plan_id,
        stored.created_at,
    )
    assert (stored.kind, stored.plan_id) == (many.kind, many.plan_id)


@pytest.mark.breaks_ledger  # credit no payment holds
def test_credit_balances_written_out_are_what_the_orm_sums(monkeypatch, make_plan):
    plan = make_plan(total="100.00")
    customer = plan.customer
    for amount, currency in (("-3.10", "USD"), ("-0.40", "USD"), ("-2.00", "EUR"), ("2.00", "EUR")):
        ledger_post(
            kind="REFUND",
            legs=[
                Leg(CUSTOMER_CREDIT, Decimal(amount), currency, plan.pk, customer.pk),
                Leg(GATEWAY_CLEARING, -Decimal(amount), currency, plan.pk, customer.pk),
            ],
        )
    other = make_plan(total="100.00")
    ledger_post(
        kind="REFUND",
        legs=[
            Leg(CUSTOMER_CREDIT, Decimal("-1.25"), "USD", other.pk, other.customer_id),
            Leg(GATEWAY_CLEARING, Decimal("1.25"), "USD", other.pk, other.customer_id),
        ],
    )
    customers = [customer.pk, other.customer_id, plan.merchant_id]
    written = credit_balances(customer_id=customer.pk), credit_balances_of(customer_ids=customers)
    monkeypatch.setattr("ledger.selectors.postgresql", lambda: False)
    orm = credit_balances(customer_id=customer.pk), credit_balances_of(customer_ids=customers)
    assert (
        orm
        == written
        == (
            {"USD": Decimal("3.50")},
            {customer.pk: {"USD": Decimal("3.50")}, other.customer_id: {"USD": Decimal("1.25")}},
        )
    )
