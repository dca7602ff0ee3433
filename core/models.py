"""The one model no app owns: the Idempotency-Key records of core.idempotency (an HTTP concern)."""

from django.conf import settings
from django.db import models


class IdempotencyKey(models.Model):
    """A client's Idempotency-Key, scoped to the principal: the request's fingerprint and,
    once done, the response to replay (kept 24 hours)."""

    class Status(models.TextChoices):
        IN_FLIGHT = "IN_FLIGHT", "In flight"
        COMPLETED = "COMPLETED", "Completed"

    # No index of its own: the unique (principal, key) serves every lookup by principal.
    principal = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_FLIGHT)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The rendered bytes, not parsed JSON: a replay must be the same body to the byte.
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        # Created by payments (0004) and moved here without moving a row: the table keeps its name.
        db_table = "payments_idempotencykey"
        constraints = [models.UniqueConstraint(fields=["principal", "key"], name="idempotency_key_per_principal")]

    def __str__(self) -> str:
        return f"{self.principal_id}:{self.key}"
