"""The refunds part of the ledger invariants (DESIGN §3), registered with the ledger's runner:
3. no plan is refunded above its total;
4. for every plan, the money paid back to the customer (refund payouts to the card, paid
   or to be paid, and credit granted) never exceeds the money received from them for it;
6. the gateway clearing account equals the succeeded charges less the refunds sent back.
"""

from collections import defaultdict
from decimal import Decimal

from django.db.models import F, Sum

from core.money import to_money
from ledger.accounts import GATEWAY_CLEARING
from ledger.checks import MAX_LISTED, LedgerReport
from ledger.selectors import account_balances
from payments.models import Payment, PaymentAllocation
from refunds.models import Refund

# A payout counts as paid back once decided: PENDING is on its way to the card.
PAID_BACK = (Refund.PayoutStatus.PENDING, Refund.PayoutStatus.PAID, Refund.PayoutStatus.CREDITED)


def over_refunded_plans(report: LedgerReport) -> list[str]:
    rows = (
        Refund.objects.filter(status=Refund.Status.APPROVED)
        .values("plan_id", "plan__total_amount")
        .annotate(refunded=Sum("amount"))
        .filter(refunded__gt=F("plan__total_amount"))
        .order_by("plan_id")
    )
    return [
        f"plan {row['plan_id']} is refunded {to_money(row['refunded'])} above its total {row['plan__total_amount']}"
        for row in rows[:MAX_LISTED]
    ]


def _by_plan(rows) -> dict[int, Decimal]:
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for plan_id, total in rows:
        totals[plan_id] += total
    return totals


def paid_back_within_received(report: LedgerReport) -> list[str]:
    """Invariant 4, per plan. Received: what succeeded payments took (card and credit spent,
    and anything captured beyond). Paid back: refund payouts (to the card or to credit) and
    the credit payments granted (captured beyond, or no longer owed when they settled)."""
    succeeded = Payment.objects.filter(status=Payment.Status.SUCCEEDED)
    received = _by_plan(
        succeeded.values("plan_id")
        .annotate(total=Sum(F("amount") + F("excess_credited")))
        .values_list("plan_id", "total")
    )
    paid_back = _by_plan(
        Refund.objects.filter(payout_status__in=PAID_BACK, payout_amount__gt=0)
        .values("plan_id")
        .annotate(total=Sum("payout_amount"))
        .values_list("plan_id", "total")
    )
    for plan_id, total in succeeded.filter(excess_credited__gt=0).values_list("plan_id", "excess_credited"):
        paid_back[plan_id] += total
    for plan_id, total in (
        PaymentAllocation.objects.filter(payment__status=Payment.Status.SUCCEEDED, credited__gt=0)
        .values("payment__plan_id")
        .annotate(total=Sum("credited"))
        .values_list("payment__plan_id", "total")
    ):
        paid_back[plan_id] += total
    over = sorted(plan_id for plan_id, total in paid_back.items() if total > received.get(plan_id, Decimal(0)))
    return [
        f"plan {plan_id}: paid back {to_money(paid_back[plan_id])} > received {to_money(received.get(plan_id, 0))}"
        for plan_id in over[:MAX_LISTED]
    ]


def gateway_clearing_matches(report: LedgerReport) -> list[str]:
    """Invariant 6, per currency: the clearing account holds the succeeded charges (card
    part and anything captured beyond) less the refunds paid back to cards."""
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for currency, total in (
        Payment.objects.filter(status=Payment.Status.SUCCEEDED)
        .values("currency")
        .annotate(total=Sum(F("amount") - F("credit_amount") + F("excess_credited")))
        .values_list("currency", "total")
    ):
        expected[currency] += total
    for currency, total in (
        Refund.objects.filter(payout_status=Refund.PayoutStatus.PAID)
        .values("currency")
        .annotate(total=Sum("payout_amount"))
        .values_list("currency", "total")
    ):
        expected[currency] -= total
    booked = account_balances(account=GATEWAY_CLEARING)
    return [
        f"gateway clearing in {currency}: {to_money(booked.get(currency, 0))} in the ledger "
        f"!= {to_money(expected.get(currency, 0))} charged less paid back"
        for currency in sorted(expected.keys() | booked.keys())
        if booked.get(currency, Decimal(0)) != expected.get(currency, Decimal(0))
    ]
