"""The settlements part of the ledger invariants (DESIGN §3, invariant 7), registered with
the ledger's runner: for every merchant and currency,
- the payable in the books equals its captured plans less their merchant fees, less what
  refunds took from it (net of fees given back), less the payouts paid;
- settlements keep their money: what their lines brought in (captures, refunds, fees) is
  what was paid out or is on its way, plus what is still to be carried; every line matches
  its source and every settlement the sum of its lines;
- no payout is above its settlement's net or above what the merchant was owed when it was made.
"""

from collections import defaultdict
from decimal import Decimal

from django.db.models import Case, DecimalField, F, Q, Sum, Value, When
from django.db.models.functions import Coalesce, Round

from bnpl.models import Plan
from core.money import to_money
from ledger.checks import MAX_LISTED, LedgerReport
from ledger.selectors import payable_balances
from refunds.models import Refund
from settlements.models import ZERO, Payout, Settlement, SettlementLine
from settlements.services.settle import CAPTURED, REFUND_TAKEN

MONEY = DecimalField(max_digits=14, decimal_places=2)
BROUGHT_IN = (SettlementLine.Type.CAPTURE, SettlementLine.Type.REFUND, SettlementLine.Type.FEE)


def _add(totals: dict, rows) -> None:
    for merchant, currency, amount in rows:
        totals[(merchant, currency)] += to_money(amount or ZERO)


def payable_expected() -> dict[tuple[int, str], Decimal]:
    """Each merchant's payable per currency as the business rows say it should be."""
    expected: dict[tuple[int, str], Decimal] = defaultdict(lambda: ZERO)
    _add(
        expected,
        Plan.objects.filter(status__in=CAPTURED)
        .values_list("merchant_id", "currency")
        .annotate(total=Sum(F("total_amount") - Coalesce("merchant_fee", Value(ZERO), output_field=MONEY)))
        .order_by(),
    )
    taken = Case(When(payout_status__in=REFUND_TAKEN, then=F("payout_amount")), default=Value(ZERO), output_field=MONEY)
    _add(
        expected,
        Refund.objects.filter(status=Refund.Status.APPROVED)
        .values_list("merchant_id", "currency")
        .annotate(total=Sum(F("merchant_fee_returned") - F("applied_amount") - taken, output_field=MONEY))
        .order_by(),
    )
    _add(
        expected,
        Payout.objects.filter(status=Payout.Status.PAID)
        .values_list("merchant_id", "currency")
        .annotate(total=-Sum("amount"))
        .order_by(),
    )
    return expected


def payable_matches_settlements(report: LedgerReport) -> list[str]:
    """Invariant 7: the books' payable per merchant and currency equals what the plans,
    refunds and paid payouts say; and the settlements keep their money."""
    expected = payable_expected()
    booked = {key: to_money(value) for key, value in payable_balances().items()}
    breaches = [
        f"merchant {merchant} payable in {currency} is {booked.get((merchant, currency), ZERO)}, "
        f"its plans, refunds and payouts make {expected.get((merchant, currency), ZERO)}"
        for merchant, currency in sorted(set(expected) | set(booked))
        if booked.get((merchant, currency), ZERO) != expected.get((merchant, currency), ZERO)
    ]
    return (breaches + _settlements_conserve() + _lines_match_sources())[:MAX_LISTED]


def _settlements_conserve() -> list[str]:
    """What lines brought in = payouts paid or on their way + remainders not yet carried."""
    brought: dict[tuple[int, str], Decimal] = defaultdict(lambda: ZERO)
    _add(
        brought,
        SettlementLine.objects.filter(type__in=BROUGHT_IN)
        .values_list("settlement__merchant_id", "settlement__currency")
        .annotate(total=Sum("net"))
        .order_by(),
    )
    accounted: dict[tuple[int, str], Decimal] = defaultdict(lambda: ZERO)
    sent = Q(payout__status__in=[Payout.Status.PAID, Payout.Status.PENDING])
    _add(
        accounted,
        Payout.objects.filter(status__in=[Payout.Status.PAID, Payout.Status.PENDING])
        .values_list("merchant_id", "currency")
        .annotate(total=Sum("amount"))
        .order_by(),
    )
    carried = SettlementLine.objects.filter(source_settlement__isnull=False).values("source_settlement_id")
    _add(
        accounted,
        Settlement.objects.exclude(pk__in=carried)
        .values_list("merchant_id", "currency")
        .annotate(
            total=Sum(F("net") - Case(When(sent, then=F("payout__amount")), default=Value(ZERO), output_field=MONEY))
        )
        .order_by(),
    )
    return [
        f"merchant {merchant} settlements in {currency} brought in {brought.get((merchant, currency), ZERO)}, "
        f"paid out and left to carry {accounted.get((merchant, currency), ZERO)}"
        for merchant, currency in sorted(set(brought) | set(accounted))
        if brought.get((merchant, currency), ZERO) != accounted.get((merchant, currency), ZERO)
    ]


def _lines_match_sources() -> list[str]:
    """Each capture line says what its plan does, each settlement the sum of its lines."""
    fee = Coalesce("plan__merchant_fee", Value(ZERO), output_field=MONEY)
    wrong_captures = (
        SettlementLine.objects.filter(type=SettlementLine.Type.CAPTURE)
        .exclude(gross=F("plan__total_amount"), fee=fee)
        .values_list("pk", "plan_id")[:MAX_LISTED]
    )
    found = [f"settlement line {line} does not match plan {plan}" for line, plan in wrong_captures]
    # Rounded as the settlement's total was (SQLite sums in floating point).
    wrong_totals = (
        Settlement.objects.annotate(
            lines_net=Round(Coalesce(Sum("lines__net"), Value(ZERO), output_field=MONEY), 2, output_field=MONEY)
        )
        .exclude(net=F("lines_net"))
        .values_list("pk", "net", "lines_net")[:MAX_LISTED]
    )
    found += [f"settlement {pk} has net {net}, its lines make {to_money(lines)}" for pk, net, lines in wrong_totals]
    return found


def payouts_within_settled(report: LedgerReport) -> list[str]:
    """Invariant 7: no payout above its settlement's net, nor above what the merchant was
    owed when it was made."""
    rows = Payout.objects.filter(Q(amount__gt=F("settlement__net")) | Q(amount__gt=F("payable_available")))
    return [
        f"payout {pk} of {amount} exceeds its settlement's net {net} or the payable {available}"
        for pk, amount, net, available in rows.values_list("pk", "amount", "settlement__net", "payable_available")[
            :MAX_LISTED
        ]
    ]
