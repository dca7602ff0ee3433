"""What happened, told to the people it concerns: merchant events (a transactional outbox
delivered as signed webhooks) and customer notifications (email and SMS).

This app imports only ``accounts`` and the shared helpers, so every other app can record
an event or a notification in the transaction of the change that causes it.
"""

import secrets

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


def generate_event_id() -> str:
    """A public event id like ``evt_4f1c…`` (128 bits)."""
    return f"evt_{secrets.token_hex(16)}"


class Event(models.Model):
    """One merchant event, stored in the transaction of its cause and delivered afterwards."""

    class Type(models.TextChoices):
        PLAN_CREATED = "plan.created", "Plan created"
        PLAN_PENDING = "plan.pending", "Plan offered, awaiting the customer"
        PLAN_CONFIRMED = "plan.confirmed", "Plan confirmed by the customer"
        PLAN_DECLINED = "plan.declined", "Plan declined by the customer"
        PLAN_EXPIRED = "plan.expired", "Plan expired"
        PLAN_CAPTURED = "plan.captured", "Plan captured"
        PLAN_VOIDED = "plan.voided", "Plan voided"
        PLAN_COMPLETED = "plan.completed", "Plan completed"
        INSTALLMENT_PAID = "installment.paid", "Installment paid"
        INSTALLMENT_OVERDUE = "installment.overdue", "Installment overdue"
        PAYMENT_FAILED = "payment.failed", "Payment failed"
        REFUND_APPROVED = "refund.approved", "Refund approved"
        REFUND_REJECTED = "refund.rejected", "Refund rejected"
        SETTLEMENT_CREATED = "settlement.created", "Settlement created"
        PAYOUT_PAID = "payout.paid", "Payout paid"
        PAYOUT_FAILED = "payout.failed", "Payout failed"

    class Delivery(models.TextChoices):
        PENDING = "PENDING", "Pending"
        DELIVERED = "DELIVERED", "Delivered"
        FAILED = "FAILED", "Gave up"
        NO_ENDPOINT = "NO_ENDPOINT", "No webhook URL"

    # Unique by a constraint rather than ``unique=True``, which would add a second index
    # (for LIKE searches nobody makes) to every event a sweep writes.
    public_id = models.CharField(max_length=40, default=generate_event_id, editable=False)
    # No index of its own: the (merchant, id) index leads with it.
    merchant = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    type = models.CharField(max_length=32, choices=Type.choices)
    # Decimals and dates are written as strings, the way the API writes them.
    data = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now)
    delivery_status = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next delivery may start; while one runs it is pushed forward (a lease), so
    # the relay does not start a second one.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    give_up_at = models.DateTimeField()
    # Set by the relay when it queues the event: until then it does not queue it again.
    relayed_until = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["public_id"], name="event_public_id_unique")]
        indexes = [
            models.Index(fields=["merchant", "id"], name="event_merchant_id"),
            # The relay's scan: only undelivered events are in this index.
            models.Index(
                fields=["next_attempt_at"], name="event_pending_due", condition=models.Q(delivery_status="PENDING")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"

    def payload(self) -> dict:
        """The JSON document delivered to the merchant and listed by the API."""
        return {"id": self.public_id, "type": self.type, "created_at": self.created_at.isoformat(), "data": self.data}


class EventDelivery(models.Model):
    """One attempt to deliver an event: where, how long, and what came back."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    number = models.PositiveIntegerField()
    url = models.CharField(max_length=500)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    succeeded = models.BooleanField(default=False)
    manual = models.BooleanField(default=False, help_text="Asked for by an operator (redeliver).")

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "event deliveries"

    def __str__(self) -> str:
        return f"Attempt {self.number} of {self.event_id}: {self.response_status or self.error}"


class Notification(models.Model):
    """One message to a customer on one channel, at most once per cause (unique key)."""

    class Kind(models.TextChoices):
        PAYMENT_RECEIPT = "PAYMENT_RECEIPT", "Payment receipt"
        AUTOPAY_FAILED = "AUTOPAY_FAILED", "Automatic payment failed"
        DUE_SOON = "DUE_SOON", "Installment due soon"
        OVERDUE = "OVERDUE", "Installment overdue"
        OFFER = "OFFER", "New plan offered"

    class Channel(models.TextChoices):
        EMAIL = "EMAIL", "Email"
        SMS = "SMS", "SMS"

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SENDING = "SENDING", "Sending"
        SENT = "SENT", "Sent"
        FAILED = "FAILED", "Failed"
        SKIPPED = "SKIPPED", "No address"

    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="notifications")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    # What caused it, e.g. "payment:42" or "installment:7": one message per kind, channel and cause.
    cause = models.CharField(max_length=64)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["kind", "channel", "cause"], name="notification_once_per_cause")]

    def __str__(self) -> str:
        return f"{self.kind} by {self.channel} ({self.cause})"
