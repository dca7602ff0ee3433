"""The double-entry ledger (DESIGN §3): accounts, journal entries and their postings.

Postings are signed: a debit is positive, a credit negative, so an entry balances when its
postings sum to zero per currency. Entries and postings are append-only: a correction is a
new entry. On PostgreSQL a deferred constraint trigger rejects an unbalanced entry at
commit, and row triggers refuse UPDATE and DELETE.
"""

from decimal import Decimal

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

    kind = models.CharField(max_length=32, choices=Kind.choices)
    memo = models.CharField(max_length=255, blank=True)
    plan = models.ForeignKey("bnpl.Plan", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
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
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Ledger check {self.checked_at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'FAILED'}"


class Payment(models.Model):
    """One attempt to collect money for a plan, with what it was meant to pay (allocations).

    PENDING while the gateway is asked (its allocations reserve the amounts, so a second
    payment cannot pay the same cents meanwhile), then SUCCEEDED or FAILED.
    """

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SUCCEEDED = "SUCCEEDED", "Succeeded"
        FAILED = "FAILED", "Failed"

    class Source(models.TextChoices):
        MANUAL = "MANUAL", "Paid by the customer or an operator"
        AUTOPAY = "AUTOPAY", "Automatic payment on the due date"

    plan = models.ForeignKey("bnpl.Plan", on_delete=models.PROTECT, related_name="payments")
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payments")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    # The part of ``amount`` paid from the customer's credit balance; the rest goes to the card.
    credit_amount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    # What the gateway captured beyond the card part, put on the customer's credit balance.
    excess_credited = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.MANUAL)
    # Autopay: 1 on the due date, then 2, 3, ... for the retries.
    attempt = models.PositiveSmallIntegerField(null=True, blank=True)
    # The card charged (a gateway token), kept so a resumed charge uses this card, not today's.
    card_token = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    decline_code = models.CharField(max_length=64, blank=True)
    gateway_reference = models.CharField(max_length=128, blank=True)
    # What the gateway sees as the idempotency key of the charge: a retry never charges twice.
    gateway_key = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(credit_amount__gte=0, credit_amount__lte=models.F("amount")),
                name="payment_credit_within_amount",
            ),
            models.CheckConstraint(condition=models.Q(excess_credited__gte=0), name="payment_excess_not_negative"),
        ]

    def __str__(self) -> str:
        return f"Payment {self.pk} {self.amount} {self.currency} {self.status}"

    @property
    def card_amount(self) -> Decimal:
        return self.amount - self.credit_amount


class PaymentAllocation(models.Model):
    """The part of a payment meant for one installment or one late fee."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    installment = models.ForeignKey(
        "bnpl.Installment", on_delete=models.PROTECT, null=True, blank=True, related_name="allocations"
    )
    late_fee = models.ForeignKey(
        "bnpl.LateFee", on_delete=models.PROTECT, null=True, blank=True, related_name="allocations"
    )
    amount = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="allocation_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(installment__isnull=False, late_fee__isnull=True)
                | models.Q(installment__isnull=True, late_fee__isnull=False),
                name="allocation_one_target",
            ),
        ]

    def __str__(self) -> str:
        target = f"installment {self.installment_id}" if self.installment_id else f"fee {self.late_fee_id}"
        return f"{self.amount} of payment {self.payment_id} to {target}"
