import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import Exists, OuterRef
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import UserFactory
from bnpl.event_data import installment_event_data
from bnpl.models import Installment, LateFee, Plan, SweepRun
from bnpl.services.sweep import (
    _customers_set_status,
    customers_in_debt_with_nothing_overdue,
    customers_normal_with_something_overdue,
    overdue_sweep,
    sweep_chunk,
)
from events.models import Event
from ledger.accounts import CUSTOMER_RECEIVABLE, FEE_INCOME
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from payments.tests.factories import payment_made

pytestmark = pytest.mark.django_db

TODAY = date(2026, 6, 15)


def test_sweep_marks_past_due_installments_and_customers(make_plan):
    debtor, punctual = UserFactory(), UserFactory()
    late = make_plan(customer=debtor, purchase_date=TODAY - timedelta(days=40))  # 1st due 10 days ago
    make_plan(customer=punctual, purchase_date=TODAY - timedelta(days=20))  # 1st due in 11 days

    run = overdue_sweep(today=TODAY)

    assert run.installments_marked_overdue == 1
    assert run.customers_marked_debt == 1
    first = late.installments.get(sequence=1)
    assert first.status == Installment.Status.OVERDUE
    assert first.overdue_since == TODAY
    assert late.installments.filter(status=Installment.Status.UPCOMING).count() == 3
    debtor.refresh_from_db()
    punctual.refresh_from_db()
    assert debtor.status == User.Status.DEBT_USER
    assert punctual.status == User.Status.NORMAL


def test_a_status_is_set_only_if_it_still_holds_when_written(make_plan):
    """The ids are read before the update: a customer whose installments changed meanwhile
    (read as clear, now overdue; read as overdue, now paid) keeps its status."""
    debtor, punctual = UserFactory(), UserFactory()
    make_plan(customer=debtor, purchase_date=TODAY - timedelta(days=40))
    make_plan(customer=punctual, purchase_date=TODAY - timedelta(days=20))
    overdue_sweep(today=TODAY)

    now = timezone.now()
    assert _customers_set_status([debtor.pk], User.Status.NORMAL, now) == 0
    assert _customers_set_status([punctual.pk], User.Status.DEBT_USER, now) == 0
    debtor.refresh_from_db()
    punctual.refresh_from_db()
    assert (debtor.status, punctual.status) == (User.Status.DEBT_USER, User.Status.NORMAL)


def test_sweep_is_idempotent(make_plan):
    make_plan(purchase_date=TODAY - timedelta(days=70))  # two installments past due

    first, second = overdue_sweep(today=TODAY), overdue_sweep(today=TODAY)

    assert (first.installments_marked_overdue, first.customers_marked_debt) == (2, 1)
    assert (second.installments_marked_overdue, second.customers_marked_debt, second.customers_restored) == (0, 0, 0)
    assert SweepRun.objects.count() == 2
    # Marking moves no money: the amounts stay, nothing is posted, one event per installment.
    assert set(Installment.objects.values_list("amount_due", "amount_paid")) == {(Decimal("125.00"), Decimal("0.00"))}
    assert list(JournalEntry.objects.values_list("kind", flat=True)) == [JournalEntry.Kind.ORIGINATION]
    assert Event.objects.filter(type=Event.Type.INSTALLMENT_OVERDUE).count() == 2


def test_due_today_is_not_overdue_and_grace_days_delay_it(make_plan, settings):
    plan = make_plan(purchase_date=TODAY - timedelta(days=31))  # 1st due 2026-06-14... one month on
    due = plan.installments.get(sequence=1).due_date
    assert overdue_sweep(today=due).installments_marked_overdue == 0
    settings.BNPL_GRACE_DAYS = 2
    assert overdue_sweep(today=due + timedelta(days=2)).installments_marked_overdue == 0
    assert overdue_sweep(today=due + timedelta(days=3)).installments_marked_overdue == 1


def test_paid_installments_are_never_marked(make_plan):
    plan = make_plan(purchase_date=TODAY - timedelta(days=40))
    payment_made(plan, installment=plan.installments.get(sequence=1))

    assert overdue_sweep(today=TODAY, late_fees=True).installments_marked_overdue == 0
    assert list(plan.installments.values_list("status", flat=True).order_by("sequence")) == [
        "PAID",
        "UPCOMING",
        "UPCOMING",
        "UPCOMING",
    ]
    assert not LateFee.objects.filter(plan=plan).exists()


def test_sweep_restores_customers_with_nothing_overdue(make_plan):
    customer = UserFactory(status=User.Status.DEBT_USER)

    run = overdue_sweep(today=TODAY)

    assert run.customers_restored == 1
    customer.refresh_from_db()
    assert customer.status == User.Status.NORMAL


def test_sweep_runs_a_fixed_number_of_queries_whatever_the_rows(make_plan):
    def queries_for(plans: int) -> int:
        for _ in range(plans):
            make_plan(purchase_date=TODAY - timedelta(days=100), count=6)
        with CaptureQueriesContext(connection) as captured:
            overdue_sweep(today=TODAY, late_fees=True)
        return len(captured)

    # 12 plans stay under SQLite's 999 parameters per INSERT, so no batching blurs the count.
    assert queries_for(1) == queries_for(12)


def test_late_fees_first_then_second_capped_and_posted(make_plan, settings):
    # 40.00 plan: cap = min(25 % = 10.00, 68.00) = 10.00, so the first fee alone fills it.
    small = make_plan(total="40.00", purchase_date=TODAY - timedelta(days=40))
    big = make_plan(total="1000.00", purchase_date=TODAY - timedelta(days=40))

    overdue_sweep(today=TODAY, late_fees=True)
    assert sorted(LateFee.objects.values_list("plan_id", "kind", "amount")) == sorted(
        [(small.pk, "FIRST", Decimal("10.00")), (big.pk, "FIRST", Decimal("10.00"))]
    )
    overdue_sweep(today=TODAY + timedelta(days=6), late_fees=True)
    assert LateFee.objects.count() == 2  # second fee only 7 days after turning overdue
    overdue_sweep(today=TODAY + timedelta(days=7), late_fees=True)
    assert LateFee.objects.filter(plan=big, kind="SECOND").get().amount == Decimal("7.00")
    assert not LateFee.objects.filter(plan=small, kind="SECOND").exists()  # capped
    overdue_sweep(today=TODAY + timedelta(days=30), late_fees=True)  # installment 2 of each is late now
    assert LateFee.objects.filter(plan=big, installment__sequence=2).get().kind == "FIRST"
    overdue_sweep(today=TODAY + timedelta(days=30), late_fees=True)
    assert LateFee.objects.count() == 4  # each at most once per installment; the small plan is capped
    # The fees a sweep charges are one entry per currency: a line owed per fee, one of income.
    entries = JournalEntry.objects.filter(kind=JournalEntry.Kind.LATE_FEE).order_by("id")
    assert entries.count() == 3
    assert list(entries[0].postings.order_by("id").values_list("account__code", "amount", "plan_id", "party_id")) == [
        (CUSTOMER_RECEIVABLE, Decimal("10.00"), small.pk, small.customer_id),
        (CUSTOMER_RECEIVABLE, Decimal("10.00"), big.pk, big.customer_id),
        (FEE_INCOME, Decimal("-20.00"), None, None),
    ]
    assert entries[0].plan_id is None
    assert entries[0].memo.endswith(": 2 in USD")
    assert ledger_check(record=False).ok


def test_late_fee_cap_applies_across_installments_of_one_plan(make_plan, settings):
    settings.BNPL_LATE_FEE_CAP_AMOUNT = Decimal("15.00")
    plan = make_plan(total="1000.00", count=4, purchase_date=TODAY - timedelta(days=100))  # 3 past due

    overdue_sweep(today=TODAY, late_fees=True)

    assert list(plan.late_fees.order_by("installment__sequence").values_list("amount", flat=True)) == [
        Decimal("10.00"),
        Decimal("5.00"),
    ]


def test_late_fees_are_off_by_default(make_plan, settings):
    assert settings.BNPL_LATE_FEES_ENABLED is False
    make_plan(purchase_date=TODAY - timedelta(days=40))
    overdue_sweep(today=TODAY)
    assert not LateFee.objects.exists()


def test_sweep_overdue_command(make_plan, capsys):
    make_plan(purchase_date=date.today() - timedelta(days=45))
    call_command("sweep_overdue")
    assert "1 installments overdue" in capsys.readouterr().out


def test_plan_life_with_a_frozen_clock(api_client, merchant, settings):
    """Created, first installment overdue after the sweep, customer DEBT_USER, new plan
    refused with 403, debt status showing the overdue amount and days."""
    settings.BNPL_TIME_ZONE = "UTC"
    customer = UserFactory()
    client = api_client
    client.force_authenticate(merchant)  # a JWT issued now would not be valid in the travelled time
    with time_machine.travel("2026-03-01 10:00:00Z", tick=False):
        created = client.post(PLANS, {"user_id": customer.user_id, "total_amount": "400.00"}, format="json")
        assert created.status_code == 201
        client.force_authenticate(customer)
        confirmed = client.post(f"{PLANS}{created.json()['id']}/confirm/", format="json")
        assert confirmed.json()["installments"][0]["due_date"] == "2026-04-01"
        client.force_authenticate(merchant)
    with time_machine.travel("2026-04-01 23:00:00Z", tick=False):
        overdue_sweep()
        assert Installment.objects.filter(status="OVERDUE").count() == 0  # due today is not late
    with time_machine.travel("2026-04-11 10:00:00Z", tick=False):
        overdue_sweep()
        customer.refresh_from_db()
        assert customer.status == User.Status.DEBT_USER
        refused = client.post(PLANS, {"user_id": customer.user_id, "total_amount": "10.00"}, format="json")
        assert refused.status_code == 403
        assert refused.json()["code"] == "debt_user_forbidden"
        debt = client.get(f"/api/v1/debt/{customer.user_id}/").json()
    assert debt["user_status"] == "DEBT_USER"
    assert debt["has_overdue"] is True
    assert debt["overdue_amount"] == "100.00"
    assert debt["total_debt"] == "400.00"
    assert debt["overdue_installments"][0]["days_overdue"] == 10
    assert debt["overdue_installments"][0]["due_date"] == "2026-04-01"
    assert debt["overdue_installments"][0]["bucket"] == "1-30"
    assert Plan.objects.count() == 1


PLANS = "/api/v1/plans/"


def test_a_sweep_in_chunks_does_what_one_chunk_does(make_plan):
    plans = [make_plan(purchase_date=TODAY - timedelta(days=70)) for _ in range(7)]  # two past due each

    run = overdue_sweep(today=TODAY, late_fees=True, chunk_plans=2)

    assert run.chunks_total == 4
    assert run.finished_at is not None
    assert sorted(run.chunks.values_list("installments_marked_overdue", flat=True)) == [2, 4, 4, 4]
    assert (run.installments_marked_overdue, run.late_fees_created, run.customers_marked_debt) == (14, 14, 7)
    assert Installment.objects.filter(status=Installment.Status.OVERDUE).count() == 14
    assert Event.objects.filter(type=Event.Type.INSTALLMENT_OVERDUE).count() == 14
    assert set(User.objects.filter(pk__in=[p.customer_id for p in plans]).values_list("status", flat=True)) == {
        User.Status.DEBT_USER
    }


def test_a_chunk_done_twice_changes_nothing_the_second_time(make_plan):
    make_plan(purchase_date=TODAY - timedelta(days=40))
    run = overdue_sweep(today=TODAY, late_fees=True)
    chunk = run.chunks.get()

    assert sweep_chunk(chunk_id=chunk.pk) is False  # a redelivered task

    run.refresh_from_db()
    assert (run.installments_marked_overdue, run.late_fees_created) == (1, 1)
    assert LateFee.objects.count() == 1


def test_a_sweep_resumes_the_open_run_and_leaves_a_stale_one(make_plan, settings):
    plan = make_plan(purchase_date=TODAY - timedelta(days=40))
    started = timezone.now()
    # A run whose chunk task was lost: open, its chunk not done.
    lost = SweepRun.objects.create(business_date=TODAY, started_at=started, chunks_total=1)
    lost.chunks.create(first_plan_id=plan.pk, last_plan_id=plan.pk)

    run = overdue_sweep(today=TODAY)

    assert run.pk == lost.pk
    assert run.finished_at is not None
    assert (run.installments_marked_overdue, run.customers_marked_debt) == (1, 1)

    stale = SweepRun.objects.create(
        business_date=TODAY, started_at=started - timedelta(minutes=settings.BNPL_SWEEP_STALE_MINUTES + 1)
    )
    again = overdue_sweep(today=TODAY)
    assert again.pk not in (lost.pk, stale.pk)
    assert again.finished_at is not None
    assert again.installments_marked_overdue == 0  # done already: nothing twice


def test_a_run_whose_closing_was_lost_is_closed_by_the_next_sweep(make_plan):
    make_plan(purchase_date=TODAY - timedelta(days=40))
    run = SweepRun.objects.create(business_date=TODAY, started_at=timezone.now(), chunks_total=1)
    run.chunks.create(first_plan_id=1, last_plan_id=1, done_at=timezone.now())

    closed = overdue_sweep(today=TODAY)

    assert closed.pk == run.pk
    assert closed.finished_at is not None


def test_a_sweep_with_no_plans_finishes_at_once():
    customer = UserFactory(status=User.Status.DEBT_USER)

    run = overdue_sweep(today=TODAY, fan_out=True)

    assert (run.chunks_total, run.customers_restored) == (0, 1)
    assert run.finished_at is not None
    customer.refresh_from_db()
    assert customer.status == User.Status.NORMAL


def test_the_overdue_event_says_what_the_other_installment_events_say(make_plan):
    """The sweep builds its events in SQL on PostgreSQL: the same document as in Python."""
    plan = make_plan(purchase_date=TODAY - timedelta(days=40), total="300.01")
    Plan.objects.filter(pk=plan.pk).update(merchant_reference="order-5")
    plan.refresh_from_db()

    overdue_sweep(today=TODAY)

    installment = plan.installments.get(sequence=1)
    event = Event.objects.get(type=Event.Type.INSTALLMENT_OVERDUE)
    assert event.merchant_id == plan.merchant_id
    assert event.public_id.startswith("evt_")
    assert len(event.public_id) == 36
    assert event.data == json.loads(json.dumps(installment_event_data(installment, plan), cls=DjangoJSONEncoder))


def test_the_restore_keeps_a_debtor_with_something_overdue_and_the_close_marks_one_set_back_by_hand(make_plan):
    kept, set_back, paid_up = UserFactory(), UserFactory(), UserFactory()
    for customer in (kept, set_back):
        make_plan(customer=customer, purchase_date=TODAY - timedelta(days=40))
    overdue_sweep(today=TODAY)
    User.objects.filter(pk=set_back.pk).update(status=User.Status.NORMAL)
    User.objects.filter(pk=paid_up.pk).update(status=User.Status.DEBT_USER)  # its debt cancelled since
    # The set operations find who the joins they replace find (docs/SCALING.md says why not joins).
    overdue = Installment.objects.filter(status=Installment.Status.OVERDUE, customer_id=OuterRef("pk"))
    for found, joined in (
        (
            customers_in_debt_with_nothing_overdue(),
            User.objects.filter(status=User.Status.DEBT_USER).exclude(Exists(overdue)),
        ),
        (
            customers_normal_with_something_overdue(),
            User.objects.filter(status=User.Status.NORMAL).filter(Exists(overdue)),
        ),
    ):
        assert sorted(found) == sorted(joined.values_list("pk", flat=True)) != []

    run = overdue_sweep(today=TODAY)

    # Nothing newly overdue, so no chunk marks a customer: the run's close does.
    assert (run.installments_marked_overdue, run.customers_restored, run.customers_marked_debt) == (0, 1, 1)
    statuses = dict(User.objects.filter(pk__in=[kept.pk, set_back.pk, paid_up.pk]).values_list("pk", "status"))
    assert statuses == {kept.pk: "DEBT_USER", set_back.pk: "DEBT_USER", paid_up.pk: "NORMAL"}
