"""The daily settlement and its payouts, through the services (DESIGN §6)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import F

from accounts.services import merchant_payout_account_set
from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Plan
from bnpl.schedule import business_today
from bnpl.tests.factories import plan_originated
from events.models import Event
from ledger.accounts import PAYOUT_CLEARING
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from ledger.selectors import account_balances, payable_balances
from refunds.models import Refund
from refunds.tests.factories import refund_requested
from settlements.gateways import PayoutResult
from settlements.models import Payout, Settlement, SettlementLine
from settlements.services.payouts import payout_apply, payouts_reconcile
from settlements.services.settle import settle_merchants
from settlements.tests.factories import settled, settlement_of

# Payouts are sent once the settlement commits: in-process here, as without a broker.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_tasks")]

D = Decimal


def _failing(merchant):
    """Give ``merchant`` an account the fake payout gateway refuses (``account_closed``)."""
    with transaction.atomic():
        return merchant_payout_account_set(merchant=merchant, account="123450002", name="Shop", changed_by=merchant)


def test_a_day_of_captures_is_one_settlement_with_a_line_each_and_is_paid_out():
    merchant = MerchantFactory(payout=True)
    first = plan_originated(total="500.00", merchant=merchant)
    second = plan_originated(total="100.00", merchant=merchant)

    run = settled()

    settlement = settlement_of(merchant)
    lines = list(settlement.lines.order_by("plan_id"))
    assert [(line.type, line.plan_id, line.gross, line.fee, line.net) for line in lines] == [
        ("capture", first.pk, D("500.00"), D("20.30"), D("479.70")),
        ("capture", second.pk, D("100.00"), D("4.30"), D("95.70")),
    ]
    assert (settlement.gross, settlement.fees, settlement.net, settlement.line_count) == (
        D("600.00"),
        D("24.60"),
        D("575.40"),
        2,
    )
    assert (run.settlements_created, run.payouts_created, run.finished_at is not None) == (1, 1, True)
    payout = settlement.payout
    assert (payout.status, payout.amount, payout.account_masked) == ("PAID", D("575.40"), "DE89**************3000")
    # The payable is emptied into payout clearing, by one PAYOUT entry.
    assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): D("0.00")}
    assert account_balances(account=PAYOUT_CLEARING) == {"USD": D("-575.40")}
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYOUT).count() == 1
    types = list(Event.objects.filter(merchant=merchant).values_list("type", flat=True).order_by("id"))
    assert types[-2:] == ["settlement.created", "payout.paid"]
    created = Event.objects.get(merchant=merchant, type="settlement.created")
    assert created.data["net"] == "575.40"
    assert created.data["payout"]["amount"] == "575.40"
    assert ledger_check(record=False).ok


def test_amounts_summed_in_sql_are_whole_cents_in_the_database():
    """287.70 + 95.70 + 383.70 is 767.0999999999999 in floating point (SQLite's arithmetic):
    stored so, the paid payout of 767.10 would compare above its settlement's net in SQL."""
    merchant = MerchantFactory(payout=True)
    for total in ("300.00", "100.00", "400.00"):
        plan_originated(total=total, merchant=merchant)

    settled()

    settlement = settlement_of(merchant)
    assert Settlement.objects.filter(pk=settlement.pk, net=D("767.10"), fees=D("32.90"), gross=D("800.00")).exists()
    assert Payout.objects.filter(settlement=settlement, status="PAID", amount=F("settlement__net")).exists()
    assert ledger_check(record=False).ok


def test_settling_again_the_same_day_or_a_later_one_with_nothing_new_settles_nothing():
    merchant = MerchantFactory(payout=True)
    plan_originated(merchant=merchant)
    settled()

    again = settled()

    assert (again.settlements_created, again.payouts_created) == (0, 0)
    assert Settlement.objects.count() == 1
    assert Payout.objects.count() == 1
    assert SettlementLine.objects.count() == 1


def test_one_settlement_per_merchant_and_currency():
    merchant = MerchantFactory(payout=True)
    plan_originated(total="100.00", merchant=merchant, currency="USD")
    plan_originated(total="200.00", merchant=merchant, currency="EUR")
    other = MerchantFactory(payout=True)
    plan_originated(total="300.00", merchant=other)

    settled()

    assert sorted(Settlement.objects.values_list("merchant_id", "currency", "net")) == sorted(
        [(merchant.pk, "USD", D("95.70")), (merchant.pk, "EUR", D("191.70")), (other.pk, "USD", D("287.70"))]
    )
    assert Payout.objects.filter(status="PAID").count() == 3


def test_what_is_not_yet_active_is_not_settled_and_a_plan_of_a_later_day_waits():
    merchant = MerchantFactory(payout=True)
    plan_originated(merchant=merchant, total="100.00")
    yesterday = business_today() - timedelta(days=1)

    assert settled(day=yesterday).settlements_created == 0

    assert settled().settlements_created == 1
    assert not Plan.objects.filter(status=Plan.Status.PENDING).exists()


def test_a_refund_after_the_settlement_is_a_negative_line_next_time_and_a_negative_net_is_carried():
    merchant = MerchantFactory(payout=True)
    plan = plan_originated(total="100.00", merchant=merchant)
    Plan.objects.filter(pk=plan.pk).update(merchant_reference="order-7")
    settled()  # 95.70 paid out
    refund = refund_requested(plan, "40.00", status=Refund.Status.APPROVED)
    assert refund.payout_status == "NONE"  # all of it lowered unpaid installments
    tomorrow = business_today() + timedelta(days=1)

    run = settled(day=business_today())  # the same day is settled: the refund waits
    assert run.settlements_created == 0

    # The next day (the refund was posted before its end): a negative line, no payout.
    with _today(tomorrow):
        settle_merchants(day=tomorrow)
        later = settlement_of(merchant, day=tomorrow)
    line = later.lines.get()
    assert line.merchant_reference == "order-7"  # the refund has none of its own: its plan's
    assert (line.type, line.refund_id, line.gross, line.fee, line.net) == (
        "refund",
        refund.pk,
        D("-40.00"),
        D("0.00"),
        D("-40.00"),
    )
    assert later.net == D("-40.00")
    assert not Payout.objects.filter(settlement=later).exists()
    assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): D("-40.00")}

    # A later sale: the negative net is carried into its settlement and taken from its payout.
    plan_originated(total="200.00", merchant=merchant)
    after = tomorrow + timedelta(days=1)
    with _today(after):
        settle_merchants(day=after)
        third = settlement_of(merchant, day=after)
    assert sorted((line.type, line.net) for line in third.lines.all()) == [
        ("capture", D("191.70")),
        ("carried", D("-40.00")),
    ]
    assert third.payout.amount == D("151.70")
    assert third.payout.status == "PAID"
    assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): D("0.00")}


def test_a_failed_payout_keeps_the_money_payable_and_goes_with_the_next_settlement():
    merchant = _failing(MerchantFactory(payout=True))
    plan_originated(total="100.00", merchant=merchant)

    settled()

    payout = Payout.objects.get()
    assert (payout.status, payout.failure_code, payout.account_masked) == ("FAILED", "account_closed", "*****0002")
    assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): D("95.70")}
    assert Event.objects.filter(merchant=merchant, type="payout.failed").count() == 1

    # The account is fixed; the next day has no sales, the failed money alone is settled and paid.
    with transaction.atomic():
        merchant_payout_account_set(
            merchant=merchant, account="DE89370400440532013000", name="Shop", changed_by=merchant
        )
    tomorrow = business_today() + timedelta(days=1)
    with _today(tomorrow):
        settle_merchants(day=tomorrow)
        retry = settlement_of(merchant, day=tomorrow)
    line = retry.lines.get()
    assert (line.type, line.source_payout_id, line.net) == ("adjustment", payout.pk, D("95.70"))
    assert retry.payout.status == "PAID"
    assert retry.payout.amount == D("95.70")
    assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): D("0.00")}


def test_a_merchant_without_an_account_is_settled_and_not_paid():
    merchant = MerchantFactory()
    plan_originated(total="100.00", merchant=merchant)

    settled()

    assert settlement_of(merchant).net == D("95.70")
    assert not Payout.objects.exists()


def test_a_payout_is_never_above_the_payable_and_the_rest_is_carried():
    merchant = MerchantFactory(payout=True)
    plan = plan_originated(total="100.00", merchant=merchant)
    yesterday = business_today() - timedelta(days=1)
    Plan.objects.filter(pk=plan.pk).update(activated_at=plan.activated_at - timedelta(days=1))
    # Refunded today, before yesterday's settlement ran: the payable is lower than the day's net.
    refund_requested(plan, "60.00", status=Refund.Status.APPROVED)

    settled(day=yesterday)

    settlement = settlement_of(merchant, day=yesterday)
    assert settlement.net == D("95.70")
    assert settlement.payout.amount == D("35.70") == settlement.payout.payable_available
    # Today's settlement: the refund's line, and the 60.00 not paid carried against it.
    settled()
    today = settlement_of(merchant)
    assert sorted((line.type, line.net) for line in today.lines.all()) == [
        ("carried", D("60.00")),
        ("refund", D("-60.00")),
    ]
    assert today.net == D("0.00")
    assert not Payout.objects.filter(settlement=today).exists()


def test_a_refund_returning_the_fee_has_a_fee_line(settings):
    settings.BNPL_REFUND_RETURNS_FEE = True
    merchant = MerchantFactory(payout=True)
    plan = plan_originated(total="100.00", merchant=merchant)
    refund = refund_requested(plan, "50.00", status=Refund.Status.APPROVED)

    settled()

    lines = {line.type: line for line in settlement_of(merchant).lines.all()}
    assert (lines["fee"].refund_id, lines["fee"].gross, lines["fee"].fee, lines["fee"].net) == (
        refund.pk,
        D("0.00"),
        D("-2.15"),
        D("2.15"),
    )
    assert settlement_of(merchant).net == D("95.70") - D("50.00") + D("2.15")


def test_a_refund_still_paying_back_waits_for_its_payback(settings):
    merchant = MerchantFactory(payout=True)
    customer = UserFactory()
    plan = plan_originated(total="100.00", merchant=merchant, customer=customer)
    refund = refund_requested(plan, "100.00", status=Refund.Status.APPROVED)
    assert refund.payout_status in {"NONE", "PAID", "CREDITED", "PENDING"}
    Refund.objects.filter(pk=refund.pk).update(payout_status=Refund.PayoutStatus.PENDING)

    settled()

    assert not SettlementLine.objects.filter(type="refund").exists()


@pytest.mark.faults
def test_a_payout_gateway_timeout_leaves_it_pending_and_the_reconcile_pays_it_once(settings):
    settings.BNPL_PAYOUT_GATEWAY = "settlements.tests.gateways.TimingOutPayoutGateway"
    merchant = MerchantFactory(payout=True)
    plan_originated(total="100.00", merchant=merchant)

    settled()

    payout = Payout.objects.get()
    assert payout.status == "PENDING"
    assert payout.attempts == 1
    assert payable_balances(merchant_ids=[merchant.pk]) == {(merchant.pk, "USD"): D("95.70")}

    settings.BNPL_PAYOUT_GATEWAY = "settlements.gateways.FakePayoutGateway"
    assert payouts_reconcile(older_than_minutes=0) == 1
    assert payouts_reconcile(older_than_minutes=0) == 0
    payout.refresh_from_db()
    assert payout.status == "PAID"
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYOUT).count() == 1
    # An answer arriving late for a payout already settled changes nothing.
    assert payout_apply(payout_id=payout.pk, result=PayoutResult("failed", "account_closed")).status == "PAID"
    assert Event.objects.filter(type="payout.paid").count() == 1


def test_the_settle_command_takes_a_date_and_refuses_a_bad_one(capsys):
    merchant = MerchantFactory(payout=True)
    plan_originated(merchant=merchant)

    call_command("settle_merchants", "--date", business_today().isoformat())
    assert "1 settlements, 1 payouts" in capsys.readouterr().out

    with pytest.raises(CommandError, match="--date"):
        call_command("settle_merchants", "--date", "2026-13-01")
    with pytest.raises(CommandError, match="after today"):
        call_command("settle_merchants", "--date", (business_today() + timedelta(days=2)).isoformat())


@pytest.mark.breaks_ledger
def test_invariant_seven_sees_a_payable_that_does_not_match():
    merchant = MerchantFactory(payout=True)
    plan_originated(total="100.00", merchant=merchant)
    settled()
    Settlement.objects.filter(merchant=merchant).update(net=D("1.00"))
    Payout.objects.filter(merchant=merchant).update(payable_available=D("5000.00"), amount=D("5000.00"))

    breaches = ledger_check(record=False).breaches

    assert any("payable in USD" in b for b in breaches)
    assert any("settlements in USD brought in" in b for b in breaches)
    assert any("has net 1.00, its lines make 95.70" in b for b in breaches)
    assert any("exceeds its settlement's net" in b for b in breaches)


class _today:
    """Move the business day (``business_today``) to ``day`` for the settlement services."""

    def __init__(self, day):
        from unittest import mock

        self.patches = [
            mock.patch("settlements.services.settle.business_today", return_value=day),
            mock.patch("settlements.tests.factories.business_today", return_value=day),
        ]

    def __enter__(self):
        for patch in self.patches:
            patch.start()

    def __exit__(self, *exc):
        for patch in self.patches:
            patch.stop()


def test_the_settlement_file_has_a_row_per_line_and_defuses_formulas():
    from settlements.reports import COLUMNS, settlement_csv_rows

    merchant = MerchantFactory(payout=True)
    plan = plan_originated(total="100.00", merchant=merchant)
    Plan.objects.filter(pk=plan.pk).update(merchant_reference="=HYPERLINK(1)")
    settled()

    rows = list(settlement_csv_rows(settlement_of(merchant)))

    assert rows[0] == ",".join(COLUMNS) + "\r\n"
    assert len(rows) == 2
    assert f",capture,{plan.pk},'=HYPERLINK(1),,100.00,4.30,95.70,USD," in rows[1]


@pytest.mark.faults
def test_a_retry_after_a_timeout_goes_to_the_account_the_payout_was_made_for(settings):
    """The bank may have paid before it timed out: the retry asks it about that payout, to that
    account, even though the merchant replaced (or closed) its account meanwhile."""
    settings.BNPL_PAYOUT_GATEWAY = "settlements.tests.gateways.TimingOutPayoutGateway"
    merchant = MerchantFactory(payout=True)
    plan_originated(total="100.00", merchant=merchant)
    settled()
    _failing(merchant)  # the account on file now ends 0002: the fake bank would refuse it

    settings.BNPL_PAYOUT_GATEWAY = "settlements.gateways.FakePayoutGateway"
    assert payouts_reconcile(older_than_minutes=0) == 1

    payout = Payout.objects.get()
    assert (payout.status, payout.account_masked) == ("PAID", "DE89**************3000")
