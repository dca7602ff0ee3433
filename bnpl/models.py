"""Installment plans (DESIGN §6). The schedule, payments and sweep build on this table."""

from django.conf import settings
from django.db import models


class Plan(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        COMPLETED = "COMPLETED", "Completed"
        CANCELLED = "CANCELLED", "Cancelled"

    class Frequency(models.TextChoices):
        WEEKLY = "WEEKLY", "Weekly"
        BIWEEKLY = "BIWEEKLY", "Every two weeks"
        MONTHLY = "MONTHLY", "Monthly"

    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="plans")
    merchant = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sold_plans")
    total_amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    installment_count = models.PositiveSmallIntegerField(default=4)
    frequency = models.CharField(max_length=16, choices=Frequency.choices, default=Frequency.MONTHLY)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    merchant_reference = models.CharField(max_length=128, blank=True)
    purchase_date = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["merchant", "customer"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(total_amount__gt=0), name="plan_total_positive"),
            models.CheckConstraint(
                condition=models.Q(installment_count__gte=2, installment_count__lte=24),
                name="plan_installment_count_2_24",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["ACTIVE", "COMPLETED", "CANCELLED"]), name="plan_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Plan {self.pk} ({self.total_amount} {self.currency})"
