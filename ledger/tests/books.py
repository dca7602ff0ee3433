"""What the books say, for tests that watch the money: the entries of a kind with their
postings, and an account's balance on a plan or for a party."""

from decimal import Decimal

from django.db.models import Count, Sum

from ledger.models import JournalEntry, Posting


def entries(kind: str, *, plan=None) -> list[list[tuple[str, Decimal]]]:
    """The entries of ``kind`` (on ``plan`` when given), oldest first: each its postings as
    sorted ``(account code, amount)`` pairs, zero legs left out."""
    found = JournalEntry.objects.filter(kind=kind).order_by("pk")
    if plan is not None:
        found = found.filter(plan=plan)
    return [
        sorted((p.account.code, p.amount) for p in entry.postings.select_related("account") if p.amount)
        for entry in found
    ]


def balance(account: str, *, plan=None, party=None) -> Decimal:
    """The sum of the postings to ``account`` (on ``plan``, for ``party`` when given)."""
    postings = Posting.objects.filter(account__code=account)
    if plan is not None:
        postings = postings.filter(plan=plan)
    if party is not None:
        postings = postings.filter(party=party)
    return (postings.aggregate(total=Sum("amount"))["total"] or Decimal("0")).quantize(Decimal("0.01"))


def entry_counts() -> dict[str, int]:
    """How many entries of each kind there are (for "nothing changed")."""
    return {
        row["kind"]: row["n"] for row in JournalEntry.objects.values("kind").annotate(n=Count("id")).order_by("kind")
    }


def money_state() -> dict:
    """Every row that holds money, and the books' entries by kind: equal before and after
    a refused request when the refusal changed nothing."""
    # By name: the payments tests use this too, and payments may not import refunds.
    from django.apps import apps

    Plan, Installment, LateFee = (apps.get_model("bnpl", name) for name in ("Plan", "Installment", "LateFee"))
    Payment, Refund = apps.get_model("payments", "Payment"), apps.get_model("refunds", "Refund")
    return {
        "plans": sorted(Plan.objects.values_list("id", "status")),
        "installments": sorted(
            Installment.objects.values_list("id", "status", "amount_due", "amount_paid", "amount_reserved")
        ),
        "late_fees": sorted(LateFee.objects.values_list("id", "status", "amount", "amount_paid", "amount_reserved")),
        "payments": sorted(Payment.objects.values_list("id", "status", "amount", "credit_amount")),
        "refunds": sorted(
            Refund.objects.values_list("id", "status", "applied_amount", "payout_amount", "payout_status")
        ),
        "entries": entry_counts(),
        "postings": Posting.objects.count(),
    }
