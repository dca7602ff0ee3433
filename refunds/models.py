"""Refunds requested by merchants and decided by them (webhook) or by operators (DESIGN §6)."""

from decimal import Decimal

from django.conf import settings
from django.db import models


class Refund(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        PROCESSING = "PROCESSING", "Processing"
        APPROVED = "APPROVED", "Approved"
        REJECTED = "REJECTED", "Rejected"

    class PayoutStatus(models.TextChoices):
        NONE = "NONE", "Nothing to pay back"
        PENDING = "PENDING", "To be paid back"
        PAID = "PAID", "Paid back"
        FAILED = "FAILED", "Payback failed"
        CREDITED = "CREDITED", "Put on the customer's credit balance"

    class PayoutMethod(models.TextChoices):
        CARD = "CARD", "Back to the card"
        CREDIT = "CREDIT", "To the customer's credit balance"

    plan = models.ForeignKey("bnpl.Plan", on_delete=models.PROTECT, related_name="refunds")
    # No index of its own: refund_transaction_per_merchant (merchant, transaction_id) serves
    # every lookup by merchant, and with a second index the planner chose, on stale
    # statistics, the merchant's index for a transaction id's check and scanned all the
    # merchant's refunds on every request.
    merchant = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="refunds")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    transaction_id = models.CharField(max_length=128)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    # On approval: what lowered unpaid installments, and what goes back to the customer.
    applied_amount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    payout_amount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    # On approval with BNPL_REFUND_RETURNS_FEE: the share of the plan's merchant fee given back
    # to the merchant (posted in the refund's entry); zero when the fee is kept.
    merchant_fee_returned = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    payout_status = models.CharField(max_length=8, choices=PayoutStatus.choices, default=PayoutStatus.NONE)
    # Where what exceeds the unpaid remainder goes (the customer's choice, default from settings).
    payout_method = models.CharField(max_length=8, choices=PayoutMethod.choices, default=PayoutMethod.CARD)
    payout_reference = models.CharField(max_length=128, blank=True)
    merchant_reference = models.CharField(max_length=128, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A merchant's transaction id names one refund, whatever races happen.
            models.UniqueConstraint(fields=["merchant", "transaction_id"], name="refund_transaction_per_merchant"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(merchant_fee_returned__gte=0), name="refund_merchant_fee_returned_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"Refund {self.transaction_id} ({self.amount} {self.currency}, {self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in (self.Status.APPROVED, self.Status.REJECTED)


class RefundEvent(models.Model):
    """Every status change asked for, by a webhook or an operator, and whether it applied."""

    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, related_name="events")
    requested_status = models.CharField(max_length=16)
    source = models.CharField(max_length=16)  # "webhook" or "operator"
    outcome = models.CharField(max_length=32)  # "applied", "duplicate", "ignored: ..."
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.refund_id} → {self.requested_status} ({self.outcome})"
