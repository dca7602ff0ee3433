"""Merchant settlements and payouts (DESIGN §6 "Merchant settlement").

Every business day each merchant gets, per currency, a ``Settlement``: its lines are what
changed the merchant's payable and was not settled before (captured plans, refunds, the
merchant fees refunds gave back), with what earlier settlements left unpaid (a negative net
carried, a failed payout's money coming back). A positive net goes to the merchant's bank
account as a ``Payout``, posted to the books only when the payout gateway says it is paid.

Each source is settled once by a partial unique constraint, whatever runs race: a plan in
one capture line, a refund in one refund line (and one fee line), a settlement's remainder
in one carried line, a failed payout in one adjustment line.
"""

from decimal import Decimal

from django.conf import settings
from django.db import models

from accounts.fields import EncryptedTextField

ZERO = Decimal("0.00")


class SettlementRun(models.Model):
    """One run of the daily settlement for a business date: its chunks of merchants (worked
    side by side) and what they made."""

    business_date = models.DateField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    settlements_created = models.PositiveIntegerField(default=0)
    payouts_created = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Settlement run {self.business_date} #{self.pk}"


class SettlementChunk(models.Model):
    """A range of merchant ids a worker settles in one transaction."""

    run = models.ForeignKey(SettlementRun, on_delete=models.CASCADE, related_name="chunks")
    first_merchant_id = models.BigIntegerField()
    last_merchant_id = models.BigIntegerField()
    done_at = models.DateTimeField(null=True, blank=True)
    settlements_created = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Merchants {self.first_merchant_id}-{self.last_merchant_id} of run #{self.run_id}"


class Settlement(models.Model):
    """A merchant's settlement for one business day and currency: the sum of its lines."""

    merchant = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="settlements")
    currency = models.CharField(max_length=3)
    business_date = models.DateField()
    # Everything posted before this instant (the end of the business day) and not settled before.
    cutoff_at = models.DateTimeField()
    gross = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    fees = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    net = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    line_count = models.PositiveIntegerField(default=0)
    run = models.ForeignKey(SettlementRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-business_date", "-id"]
        constraints = [
            # Idempotent per merchant, currency and day: a second run, or two at once, make one.
            models.UniqueConstraint(
                fields=["merchant", "business_date", "currency"], name="settlement_per_merchant_day_currency"
            ),
        ]

    def __str__(self) -> str:
        return f"Settlement {self.business_date} {self.currency} #{self.pk}"


class SettlementLine(models.Model):
    """One thing settled: ``net = gross - fee``, signed from the merchant's side (what it is
    owed is positive)."""

    class Type(models.TextChoices):
        CAPTURE = "capture", "Plan captured"
        REFUND = "refund", "Refund"
        FEE = "fee", "Merchant fee returned by a refund"
        ADJUSTMENT = "adjustment", "Failed payout returned"
        CARRIED = "carried", "Carried from an earlier settlement"

    settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, related_name="lines")
    type = models.CharField(max_length=16, choices=Type.choices)
    # No indexes of their own: the partial unique constraints below are the lookups' indexes.
    plan = models.ForeignKey(
        "bnpl.Plan", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    refund = models.ForeignKey(
        "refunds.Refund", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    # A carried line: the settlement whose unpaid remainder it brings.
    source_settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # An adjustment line: the failed payout whose money it brings back.
    source_payout = models.ForeignKey(
        "settlements.Payout", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    merchant_reference = models.CharField(max_length=128, blank=True)
    gross = models.DecimalField(max_digits=14, decimal_places=2)
    fee = models.DecimalField(max_digits=14, decimal_places=2)
    net = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    posted_at = models.DateTimeField()

    class Meta:
        ordering = ["settlement_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["plan"], condition=models.Q(type="capture"), name="settled_capture_once"),
            models.UniqueConstraint(fields=["refund"], condition=models.Q(type="refund"), name="settled_refund_once"),
            models.UniqueConstraint(fields=["refund"], condition=models.Q(type="fee"), name="settled_fee_once"),
            models.UniqueConstraint(
                fields=["source_settlement"], condition=models.Q(type="carried"), name="settled_carry_once"
            ),
            models.UniqueConstraint(
                fields=["source_payout"], condition=models.Q(type="adjustment"), name="settled_failed_payout_once"
            ),
            models.CheckConstraint(condition=models.Q(net=models.F("gross") - models.F("fee")), name="line_net"),
            models.CheckConstraint(
                condition=models.Q(type__in=["capture", "refund", "fee", "adjustment", "carried"]),
                name="line_type_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.net} {self.currency}"


class Payout(models.Model):
    """Money sent to a merchant's bank account for a settlement: ``PENDING`` until the payout
    gateway answers, then ``PAID`` (posted: merchant payable → payout clearing) or
    ``FAILED`` (nothing posted; the money stays payable and goes with the next settlement)."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        PAID = "PAID", "Paid"
        FAILED = "FAILED", "Failed"

    settlement = models.OneToOneField(Settlement, on_delete=models.PROTECT, related_name="payout")
    merchant = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payouts")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # What the merchant was owed when the payout was made (its payable less the payouts then
    # on their way): the payout is never above it (invariant 7).
    payable_available = models.DecimalField(max_digits=14, decimal_places=2)
    # The account as it was when the payout was made, encrypted like the merchant's, and its
    # holder: every attempt sends to it, so a retry after a timeout asks the bank about the
    # very payout it may have made (an account replaced since gets the next payout).
    account = EncryptedTextField(blank=True, default="", db_default="")
    account_name = models.CharField(max_length=140, blank=True, default="", db_default="")
    # That account, masked (first 4, last 4).
    account_masked = models.CharField(max_length=64, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    reference = models.CharField(max_length=128, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The reconcile task's scan: only the payouts still waiting for the gateway.
            models.Index(fields=["created_at"], name="payout_pending", condition=models.Q(status="PENDING")),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payout_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(amount__lte=models.F("payable_available")), name="payout_within_payable"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["PENDING", "PAID", "FAILED"]), name="payout_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Payout {self.amount} {self.currency} #{self.pk}"
