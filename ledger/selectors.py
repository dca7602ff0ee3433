"""Read queries on the books: balances and the rows the invariant checks look for."""

from decimal import Decimal
from functools import reduce
from operator import or_

from django.db import connection
from django.db.models import Q, Sum

from core.db import keys_match, postgresql
from ledger.accounts import (
    CUSTOMER_CREDIT,
    CUSTOMER_RECEIVABLE,
    GATEWAY_CLEARING,
    MERCHANT_FEE_INCOME,
    MERCHANT_PAYABLE,
    PAYOUT_CLEARING,
    ledger_account_ids,
)
from ledger.models import JournalEntry, Posting

_CENT = Decimal("0.01")


def unbalanced_entries(limit: int = 20) -> list[dict]:
    """Invariant 1: entries whose postings do not sum to zero in some currency."""
    rows = (
        Posting.objects.values("entry_id", "currency")
        .annotate(total=Sum("amount"))
        .exclude(total=0)
        .order_by("entry_id")[:limit]
    )
    return list(rows)


def receivable_by_plan() -> dict[int, Decimal]:
    """The customer-receivable balance of every plan that has postings."""
    rows = (
        Posting.objects.filter(account__code=CUSTOMER_RECEIVABLE, plan_id__isnull=False)
        .values("plan_id")
        .annotate(total=Sum("amount"))
    )
    return {row["plan_id"]: row["total"] for row in rows}


# Read by every payment, written out on PostgreSQL: the ORM spent longer composing it than
# the database took to run it (ledger/tests/test_ledger.py holds the two equal).
_CREDIT_SQL = (
    f"SELECT party_id, currency, SUM(amount) FROM {Posting._meta.db_table}"  # noqa: S608 - the model's names  # nosec B608
    " WHERE account_id = %s AND party_id {keys} GROUP BY party_id, currency ORDER BY party_id, currency"
)


def credit_balances(*, customer_id: int) -> dict[str, Decimal]:
    """A customer's credit balance per currency (what the platform holds for them), from
    the ledger: the credit account is a liability, so the balance is minus its postings."""
    return credit_balances_of(customer_ids=[customer_id]).get(customer_id, {})


def credit_balances_of(*, customer_ids) -> dict[int, dict[str, Decimal]]:
    """``credit_balances`` of each of ``customer_ids`` that has a balance, by customer, in one query."""
    ids = sorted(set(customer_ids))
    if postgresql():
        with connection.cursor() as cursor:
            sql, parties = keys_match(_CREDIT_SQL, ids)
            cursor.execute(sql, [ledger_account_ids()[CUSTOMER_CREDIT], parties])
            rows = [{"party_id": party, "currency": currency, "total": total} for party, currency, total in cursor]
    else:
        rows = (
            Posting.objects.filter(account__code=CUSTOMER_CREDIT, party_id__in=ids)
            .values("party_id", "currency")
            .annotate(total=Sum("amount"))
            .order_by("party_id", "currency")
        )
    balances: dict[int, dict[str, Decimal]] = {}
    for row in rows:
        if row["total"]:
            balances.setdefault(row["party_id"], {})[row["currency"]] = (-row["total"]).quantize(_CENT)
    return balances


def negative_credit_balances(limit: int = 20) -> list[dict]:
    """Customers whose credit balance is below zero in some currency (spent more than held)."""
    rows = (
        Posting.objects.filter(account__code=CUSTOMER_CREDIT)
        .values("party_id", "currency")
        .annotate(total=Sum("amount"))
        .filter(total__gt=0)
        .order_by("party_id")[:limit]
    )
    return list(rows)


def account_balances(*, account: str) -> dict[str, Decimal]:
    """The balance of ``account`` per currency (the sum of its postings: debit positive)."""
    rows = Posting.objects.filter(account__code=account).values("currency").annotate(total=Sum("amount"))
    return {row["currency"]: row["total"] for row in rows}


def posted_totals(*, kinds: list[str], accounts: list[str], plans) -> dict[str, Decimal]:
    """Sum of the postings to ``accounts`` in entries of ``kinds`` for the ``plans`` queryset,
    per currency (only the currencies that have such postings)."""
    rows = (
        Posting.objects.filter(entry__kind__in=kinds, account__code__in=accounts, plan__in=plans)
        .values("currency")
        .annotate(total=Sum("amount"))
        .values_list("currency", "total")
    )
    return {currency: (total or Decimal("0")).quantize(Decimal("0.01")) for currency, total in rows}


def payable_balances(*, merchant_ids=None) -> dict[tuple[int, str], Decimal]:
    """What the platform owes each merchant per currency (the payable is a liability: minus
    its postings), keyed ``(merchant_id, currency)``; for ``merchant_ids`` (a list or a
    queryset of ids) or every merchant."""
    rows = Posting.objects.filter(account__code=MERCHANT_PAYABLE, party_id__isnull=False)
    if merchant_ids is not None:
        rows = rows.filter(party_id__in=merchant_ids)
    rows = rows.values_list("party_id", "currency").annotate(total=Sum("amount")).order_by()
    return {(party, currency): (-total).quantize(Decimal("0.01")) for party, currency, total in rows}


_K = JournalEntry.Kind
_REFUNDS = (_K.REFUND_APPLIED, _K.REFUND_CREDIT, _K.REFUND_PAYOUT)
# Each money total as (entry kind, account, sign) terms: the total is the sum of the postings
# of each term, times its sign. Every term but the payouts' is a posting with a plan.
MONEY_TOTALS: dict[str, tuple[tuple[str, str, int], ...]] = {
    # Installments and late fees paid through the gateway.
    "collected": ((_K.PAYMENT, GATEWAY_CLEARING, 1),),
    # The totals of plans that became ACTIVE (captured): what the customers were put to owe.
    "processed": ((_K.ORIGINATION, CUSTOMER_RECEIVABLE, 1),),
    # Approved refunds as the books hold them: taken off unpaid installments, credited, or
    # paid back to the card (once paid). The payable's postings of those entries are the
    # refund plus the fee share it gave back (paid from fee income), so both accounts count.
    "refunded": tuple((kind, account, 1) for kind in _REFUNDS for account in (MERCHANT_PAYABLE, MERCHANT_FEE_INCOME)),
    # Merchants' fees charged when plans became ACTIVE, less what refunds gave back (income: credit negative).
    "merchant_fees": ((_K.ORIGINATION, MERCHANT_FEE_INCOME, -1), (_K.REFUND_APPLIED, MERCHANT_FEE_INCOME, -1)),
    # Late fees charged to customers, less those waived: read on the plans' receivables, since
    # the late-fee income leg of a sweep's entry is one per currency, with no plan.
    "late_fees": ((_K.LATE_FEE, CUSTOMER_RECEIVABLE, 1), (_K.FEE_WAIVER, CUSTOMER_RECEIVABLE, 1)),
    # Payouts the payout gateway paid to merchants' bank accounts (no plan: by merchant).
    "paid_out": ((_K.PAYOUT, PAYOUT_CLEARING, -1),),
}


def _terms_of(names) -> Q:
    """The postings of the terms of the totals ``names``: each account with the kinds it counts in."""
    kinds: dict[str, set[str]] = {}
    for name in names:
        for kind, account, _ in MONEY_TOTALS[name]:
            kinds.setdefault(account, set()).add(kind)
    return reduce(or_, (Q(account__code=account, entry__kind__in=sorted(kinds[account])) for account in sorted(kinds)))


def money_totals(*, plans=None, merchant_id: int | None = None) -> dict[str, dict[str, Decimal]]:
    """The money totals of ``MONEY_TOTALS`` per currency, ``{currency: {name: amount}}``, every
    name present (0.00 when none), for the currencies that have such postings: the plan-bound
    ones for the ``plans`` queryset (every plan when None), ``paid_out`` for ``merchant_id``'s
    payouts (every merchant's when None). One query."""
    by_plan, by_merchant = _terms_of(n for n in MONEY_TOTALS if n != "paid_out"), _terms_of(["paid_out"])
    if plans is not None:
        by_plan &= Q(plan__in=plans)
    if merchant_id is not None:
        by_merchant &= Q(party_id=merchant_id)
    rows = (
        Posting.objects.filter(by_plan | by_merchant)
        .values_list("entry__kind", "account__code", "currency")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    sums = {(kind, account, currency): total for kind, account, currency, total in rows}
    totals: dict[str, dict[str, Decimal]] = {}
    for currency in sorted({currency for _, _, currency in sums}):
        totals[currency] = {
            name: sum(
                (sign * sums.get((kind, account, currency), Decimal("0")) for kind, account, sign in terms),
                Decimal("0"),
            ).quantize(_CENT)
            for name, terms in MONEY_TOTALS.items()
        }
    return totals
