"""The double-entry ledger (DESIGN §3): accounts, journal entries and their postings.

The tables were made by the payments app and keep their names (``db_table``); ledger
migration 0001 took over their model state without touching a row. The balance guard and
the append-only triggers on them were installed by payments migrations 0002 and 0008.

Postings are signed: a debit is positive, a credit negative, so an entry balances when its
postings sum to zero per currency. Entries and postings are append-only: a correction is a
new entry. On PostgreSQL a statement trigger refuses any INSERT that leaves an entry
unbalanced, and row triggers refuse UPDATE and DELETE.
"""

from django.conf import settings
from django.db import models


class AppendOnlyError(Exception):
    """Ledger rows are never changed or removed; post a correcting entry instead."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only.")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only.")


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only.")


class LedgerAccount(models.Model):
    class Kind(models.TextChoices):
        ASSET = "ASSET", "Asset"
        LIABILITY = "LIABILITY", "Liability"
        INCOME = "INCOME", "Income"

    code = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, choices=Kind.choices)

    class Meta:
        db_table = "payments_ledgeraccount"
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class JournalEntry(AppendOnlyModel):
    class Kind(models.TextChoices):
        ORIGINATION = "ORIGINATION", "Plan origination"
        PAYMENT = "PAYMENT", "Installment payment"
        LATE_FEE = "LATE_FEE", "Late fee"
        FEE_WAIVER = "FEE_WAIVER", "Late fee waived"
        REFUND_APPLIED = "REFUND_APPLIED", "Refund applied to unpaid installments"
        REFUND_PAYOUT = "REFUND_PAYOUT", "Refund paid back to the customer"
        REFUND_CREDIT = "REFUND_CREDIT", "Refund credited to the customer's balance"
        PAYOUT = "PAYOUT", "Payout to the merchant"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    memo = models.CharField(max_length=255, blank=True)
    plan = models.ForeignKey("bnpl.Plan", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "payments_journalentry"
        ordering = ["-id"]
        verbose_name_plural = "journal entries"

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class Posting(AppendOnlyModel):
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="postings")
    # No index of its own: the (account, plan) and (account, party) indexes lead with it.
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="postings", db_index=False)
    # Debit positive, credit negative.
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    # Sub-ledger dimensions: which plan and which party the amount belongs to. No index of
    # their own: balances are read by account and plan, or account and party (the indexes
    # below), and each posting would pay for two entries more.
    plan = models.ForeignKey(
        "bnpl.Plan", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    party = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )

    class Meta:
        db_table = "payments_posting"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["account", "plan"], name="posting_account_plan"),
            # Per-customer balances (the credit balance) and their movements.
            models.Index(fields=["account", "party"], name="posting_account_party"),
        ]
        constraints = [models.CheckConstraint(condition=~models.Q(amount=0), name="posting_amount_not_zero")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount} {self.currency}"


class LedgerCheckRun(models.Model):
    """One run of the ledger invariant check: its verdict and what it found."""

    checked_at = models.DateTimeField(auto_now_add=True, db_index=True)
    ok = models.BooleanField()
    breach_count = models.PositiveIntegerField(default=0)
    breaches = models.JSONField(default=list, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "payments_ledgercheckrun"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Ledger check {self.checked_at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'FAILED'}"
