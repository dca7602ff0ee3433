"""Installment payments, their allocations and the Idempotency-Keys of the API.

The ledger's models (entries, postings, accounts, check runs) live in ``ledger.models``.
"""

from decimal import Decimal

from django.conf import settings
from django.db import models


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

    @property
    def allocations_shown(self):
        """Its allocations as an answer lists them: those it was just settled with
        (``settled_allocations``, set by the service), else read (or prefetched)."""
        settled = self.__dict__.get("settled_allocations")
        return settled if settled is not None else self.allocations.all()


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
    # Of ``amount``, what was no longer owed when the payment succeeded (a refund or a waiver
    # lowered it while the payment was PENDING) and went to the customer's credit instead.
    credited = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"), db_default=Decimal("0.00"))

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="allocation_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(credited__gte=0, credited__lte=models.F("amount")),
                name="allocation_credited_within_amount",
            ),
            models.CheckConstraint(
                condition=models.Q(installment__isnull=False, late_fee__isnull=True)
                | models.Q(installment__isnull=True, late_fee__isnull=False),
                name="allocation_one_target",
            ),
        ]

    def __str__(self) -> str:
        target = f"installment {self.installment_id}" if self.installment_id else f"fee {self.late_fee_id}"
        return f"{self.amount} of payment {self.payment_id} to {target}"
