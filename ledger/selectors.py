"""Read queries on the books: balances and the rows the invariant checks look for."""

from decimal import Decimal

from django.db.models import Sum

from ledger.accounts import CUSTOMER_CREDIT, CUSTOMER_RECEIVABLE, MERCHANT_PAYABLE
from ledger.models import Posting


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


def credit_balances(*, customer_id: int) -> dict[str, Decimal]:
    """A customer's credit balance per currency (what the platform holds for them), from
    the ledger: the credit account is a liability, so the balance is minus its postings."""
    rows = (
        Posting.objects.filter(account__code=CUSTOMER_CREDIT, party_id=customer_id)
        .values("currency")
        .annotate(total=Sum("amount"))
        .order_by("currency")
    )
    return {row["currency"]: (-row["total"]).quantize(Decimal("0.01")) for row in rows if row["total"]}


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
