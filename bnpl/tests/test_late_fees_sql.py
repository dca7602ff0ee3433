"""The sweep's late fees are charged on PostgreSQL by one statement (bnpl's SQL for the fees,
the ledger's SQL for their entry and postings); elsewhere through the ORM and
``ledger_post_many``. Both leave the same rows."""

from datetime import date, timedelta
from decimal import Decimal

import pytest

from bnpl.models import LateFee, Plan
from bnpl.services import late_fees
from bnpl.services.late_fees import late_fees_charge
from bnpl.services.sweep import overdue_sweep
from ledger.models import JournalEntry

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

TODAY = date(2026, 6, 15)


def _plans(make_plan) -> list[Plan]:
    """A plan capped by its first fee, one with three installments past due (capped on the
    way), one in another currency."""
    purchased = TODAY - timedelta(days=100)
    return [
        make_plan(total="40.00", purchase_date=TODAY - timedelta(days=40)),
        make_plan(total="1000.00", count=4, purchase_date=purchased),
        make_plan(total="300.00", count=3, purchase_date=purchased, currency="EUR"),
    ]


def _written(plans: list[Plan], entries_before: set[int]) -> dict:
    """The fees of ``plans`` and the late-fee entries written since ``entries_before``, with
    the plans and customers named by their place in ``plans``."""
    plan_no = {plan.pk: n for n, plan in enumerate(plans)}
    party_no = {plan.customer_id: n for n, plan in enumerate(plans)}
    fees = [
        (plan_no[plan_id], sequence, kind, amount, amount_paid, status)
        for plan_id, sequence, kind, amount, amount_paid, status in LateFee.objects.filter(plan__in=plans)
        .order_by("id")
        .values_list("plan_id", "installment__sequence", "kind", "amount", "amount_paid", "status")
    ]
    entries = []
    for entry in (
        JournalEntry.objects.filter(kind=JournalEntry.Kind.LATE_FEE).exclude(pk__in=entries_before).order_by("id")
    ):
        postings = [
            (code, amount, currency, plan_no.get(plan_id), party_no.get(party_id))
            for code, amount, currency, plan_id, party_id in entry.postings.order_by("id").values_list(
                "account__code", "amount", "currency", "plan_id", "party_id"
            )
        ]
        entries.append((entry.kind, entry.memo, entry.plan_id, postings))
    return {"fees": fees, "entries": sorted(entries, key=lambda e: e[1])}


def test_late_fees_in_one_statement_write_what_the_orm_path_writes(make_plan, monkeypatch, settings):
    settings.BNPL_LATE_FEE_CAP_AMOUNT = Decimal("35.00")  # the second round meets it
    by_sql, by_orm = _plans(make_plan), _plans(make_plan)
    overdue_sweep(today=TODAY, late_fees=False)

    def charge(plans: list[Plan], today: date, *, orm: bool) -> int:
        if orm:  # the path taken off PostgreSQL
            monkeypatch.setattr(late_fees, "postgresql", lambda: False)
        try:
            return late_fees_charge(today=today, plans=(plans[0].pk, plans[-1].pk), memo="Late fees, round")
        finally:
            monkeypatch.undo()

    written = {}
    for name, plans in (("sql", by_sql), ("orm", by_orm)):
        before = set(JournalEntry.objects.values_list("pk", flat=True))
        counts = [charge(plans, TODAY, orm=name == "orm"), charge(plans, TODAY + timedelta(days=7), orm=name == "orm")]
        written[name] = {"counts": counts, **_written(plans, before)}

    assert all(written["sql"]["counts"])
    assert {fee[2] for fee in written["sql"]["fees"]} == {"FIRST", "SECOND"}
    assert len(written["sql"]["entries"]) == 4  # USD and EUR, each round
    assert written["sql"] == written["orm"]
