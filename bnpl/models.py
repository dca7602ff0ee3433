"""Installment plans (DESIGN §6). The schedule, payments and sweep build on this table."""

from decimal import Decimal

from django.conf import settings
from django.db import models

from bnpl.schedule import build_schedule, business_today


class Plan(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending (offered, awaiting the customer)"
        AUTHORIZED = "AUTHORIZED", "Authorized (awaiting capture)"
        ACTIVE = "ACTIVE", "Active"
        COMPLETED = "COMPLETED", "Completed"
        CANCELLED = "CANCELLED", "Cancelled"
        DECLINED = "DECLINED", "Declined by the customer"
        EXPIRED = "EXPIRED", "Expired"
        VOIDED = "VOIDED", "Voided"

    class CaptureMode(models.TextChoices):
        AUTOMATIC = "automatic", "Automatic (active on confirmation)"
        MANUAL = "manual", "Manual (the merchant captures)"

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
    # The day the plan became ACTIVE (its schedule runs from it); for an offer, the day offered.
    purchase_date = models.DateField()
    capture_mode = models.CharField(
        max_length=16, choices=CaptureMode.choices, default=CaptureMode.AUTOMATIC, db_default=CaptureMode.AUTOMATIC
    )
    # What the customer agreed to (or was offered); total_amount is what is owed, lower after a
    # partial capture.
    authorized_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    # The secret part of the hosted checkout page's address, while the offer is open.
    checkout_token = models.CharField(max_length=64, null=True, blank=True, unique=True)
    # When a PENDING offer or an AUTHORIZED plan lapses (the expiry task), empty otherwise.
    expires_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    # The merchant's fee, charged when the plan became ACTIVE (accounts.pricing, posted in its
    # origination entry); empty for a plan not yet active, and for plans made before fees were.
    merchant_fee = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    # The operator who created the plan in the back office (ACTIVE at once), else empty.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["merchant", "customer"]),
            # The expiry task's scan: only the open offers and authorizations are in it.
            models.Index(
                fields=["expires_at"],
                name="plan_open_expires_at",
                condition=models.Q(status__in=["PENDING", "AUTHORIZED"]),
            ),
            # A customer's open offers and authorizations (the credit they reserve).
            models.Index(
                fields=["customer", "currency"],
                name="plan_open_customer",
                condition=models.Q(status__in=["PENDING", "AUTHORIZED"]),
            ),
        ]
        constraints = [
            # A merchant's retry with the same reference finds its plan instead of making another.
            models.UniqueConstraint(
                fields=["merchant", "merchant_reference"],
                condition=~models.Q(merchant_reference=""),
                name="plan_merchant_reference_unique",
            ),
            models.CheckConstraint(condition=models.Q(total_amount__gt=0), name="plan_total_positive"),
            models.CheckConstraint(
                condition=models.Q(installment_count__gte=2, installment_count__lte=24),
                name="plan_installment_count_2_24",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    status__in=[
                        "PENDING",
                        "AUTHORIZED",
                        "ACTIVE",
                        "COMPLETED",
                        "CANCELLED",
                        "DECLINED",
                        "EXPIRED",
                        "VOIDED",
                    ]
                ),
                name="plan_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(capture_mode__in=["automatic", "manual"]), name="plan_capture_mode_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(authorized_amount__isnull=True)
                | models.Q(total_amount__lte=models.F("authorized_amount")),
                name="plan_total_within_authorized",
            ),
            models.CheckConstraint(
                condition=models.Q(merchant_fee__isnull=True)
                | models.Q(merchant_fee__gte=0, merchant_fee__lte=models.F("total_amount")),
                name="plan_merchant_fee_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"Plan {self.pk} ({self.total_amount} {self.currency})"

    # The installments handed over with the plan by whoever just wrote or read them
    # (bnpl.selectors.plan_installments_loaded), so showing the plan reads no more rows.
    schedule: list["Installment"] | None = None

    @property
    def installments_in_order(self) -> list["Installment"]:
        """The plan's installments by sequence: those handed over with it, else a prefetch's, else read."""
        return self.schedule if self.schedule is not None else list(self.installments.all())

    @property
    def amount_authorized(self) -> Decimal:
        """What the customer agreed to or is offered (plans made before consent: their total)."""
        return self.authorized_amount if self.authorized_amount is not None else self.total_amount

    @property
    def checkout_url(self) -> str | None:
        """The hosted checkout page's address while the offer is open, else None."""
        if self.status != self.Status.PENDING or not self.checkout_token:
            return None
        return f"{settings.BNPL_PUBLIC_URL.rstrip('/')}/checkout/{self.checkout_token}/"

    @property
    def schedule_shown(self) -> list[dict]:
        """``sequence, amount_due, due_date`` of each installment: the plan's own once it has
        them, before that what they would be if it became ACTIVE today."""
        if self.status in (self.Status.PENDING, self.Status.AUTHORIZED):
            return [
                {"sequence": sequence, "amount_due": amount, "due_date": due}
                for sequence, amount, due in build_schedule(
                    total=self.total_amount,
                    count=self.installment_count,
                    frequency=self.frequency,
                    purchase_date=business_today(),
                )
            ]
        return [
            {"sequence": i.sequence, "amount_due": i.amount_due, "due_date": i.due_date}
            for i in self.installments_in_order
        ]

    # Summed in Python over the installments shown, so a prefetch serves every plan of a page.
    @property
    def installments_paid(self) -> Decimal:
        return sum((i.amount_paid for i in self.installments_in_order), Decimal("0.00"))

    @property
    def installments_remaining(self) -> Decimal:
        return sum((i.amount_remaining for i in self.installments_in_order), Decimal("0.00"))


# The states of a plan that became ACTIVE (captured): it was owed, its money moved (origination,
# the merchant's fee, payments, refunds, settlement); an offer or an authorization that ended
# before its capture (declined, expired, voided) took none.
PLAN_CAPTURED_STATUSES = (Plan.Status.ACTIVE, Plan.Status.COMPLETED, Plan.Status.CANCELLED)


class Installment(models.Model):
    class Status(models.TextChoices):
        UPCOMING = "UPCOMING", "Upcoming"
        OVERDUE = "OVERDUE", "Overdue"
        PAID = "PAID", "Paid"
        CANCELLED = "CANCELLED", "Cancelled"

    # No index of its own: the unique (plan, sequence) index serves lookups by plan.
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="installments", db_index=False)
    # The plan's customer, copied here (a plan never changes hands) so that "who has
    # something overdue" is read from the installments alone, without a join per row.
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="installments", db_index=False
    )
    sequence = models.PositiveSmallIntegerField()
    amount_due = models.DecimalField(max_digits=12, decimal_places=2)
    amount_paid = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    # What PENDING payments have claimed of it (their allocations), so that no second payment
    # takes the same cents; kept by bnpl.services.installments alone.
    amount_reserved = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal("0.00"), db_default=Decimal("0.00")
    )
    due_date = models.DateField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPCOMING)
    paid_at = models.DateTimeField(null=True, blank=True)
    overdue_since = models.DateField(null=True, blank=True, help_text="The business day the sweep marked it overdue.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["plan_id", "sequence"]
        indexes = [
            # The sweep's scans: unpaid installments by due date, and the overdue ones. The plan
            # last: a chunk's range of plans is then filtered in the index, not on the table
            # (the past-due rows of every other chunk are never fetched).
            models.Index(fields=["status", "due_date", "plan"], name="installment_status_due_plan"),
            # A customer's overdue installments (debt status, reinstatement after a payment).
            # Partial: only the overdue few are in it, so it costs the sweep one insert per
            # installment it marks and nothing for the others.
            models.Index(
                fields=["customer"], name="installment_overdue_customer", condition=models.Q(status="OVERDUE")
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["plan", "sequence"], name="installment_plan_sequence_unique"),
            models.CheckConstraint(condition=models.Q(amount_due__gte=0), name="installment_amount_due_not_negative"),
            models.CheckConstraint(condition=models.Q(amount_paid__gte=0), name="installment_amount_paid_not_negative"),
            models.CheckConstraint(
                condition=models.Q(amount_reserved__gte=0), name="installment_amount_reserved_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(amount_paid__lte=models.F("amount_due")), name="installment_not_overpaid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["UPCOMING", "OVERDUE", "PAID", "CANCELLED"]),
                name="installment_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Installment {self.sequence}/{self.plan_id}"

    @property
    def amount_remaining(self) -> Decimal:
        return self.amount_due - self.amount_paid


class LateFee(models.Model):
    class Kind(models.TextChoices):
        FIRST = "FIRST", "First (on turning overdue)"
        SECOND = "SECOND", "Second (still unpaid later)"

    class Status(models.TextChoices):
        DUE = "DUE", "Due"
        PAID = "PAID", "Paid"
        WAIVED = "WAIVED", "Waived"

    # No index of its own: the unique (installment, kind) index leads with it.
    installment = models.ForeignKey(Installment, on_delete=models.PROTECT, related_name="late_fees", db_index=False)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="late_fees")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    amount_paid = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    # What PENDING payments have claimed of it, as on Installment.
    amount_reserved = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal("0.00"), db_default=Decimal("0.00")
    )
    # Not indexed: fees are read by plan, and the checks that read every fee due read most fees.
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DUE)
    # Not indexed: nothing looks fees up by who waived them, and every fee the sweep writes
    # would pay for an index entry (of a null, mostly).
    waived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    waived_reason = models.CharField(max_length=500, blank=True)
    waived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Each fee at most once per installment, whatever races the sweep has.
            models.UniqueConstraint(fields=["installment", "kind"], name="late_fee_once_per_installment"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="late_fee_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(amount_paid__gte=0, amount_paid__lte=models.F("amount")),
                name="late_fee_paid_within_amount",
            ),
            models.CheckConstraint(
                condition=models.Q(amount_reserved__gte=0), name="late_fee_amount_reserved_not_negative"
            ),
            # PAID or WAIVED, never both (DESIGN §3, invariant 5): a waiver is recorded exactly
            # on a WAIVED fee, and a fee that settles is PAID only while it is still DUE.
            models.CheckConstraint(
                condition=models.Q(status="WAIVED", waived_at__isnull=False)
                | (~models.Q(status="WAIVED") & models.Q(waived_at__isnull=True)),
                name="late_fee_waived_iff_recorded",
            ),
        ]

    def __str__(self) -> str:
        return f"Late fee {self.kind} on installment {self.installment_id}"

    @property
    def amount_remaining(self) -> Decimal:
        return self.amount - self.amount_paid if self.status == self.Status.DUE else Decimal("0.00")


class Reminder(models.Model):
    class Kind(models.TextChoices):
        DUE_SOON = "DUE_SOON", "Due soon"
        OVERDUE = "OVERDUE", "Overdue"

    class Outcome(models.TextChoices):
        SENT = "SENT", "Sent"
        FAILED = "FAILED", "Failed"

    installment = models.ForeignKey(Installment, on_delete=models.CASCADE, related_name="reminders")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.SENT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["installment", "kind"], name="reminder_once_per_installment_kind")
        ]

    def __str__(self) -> str:
        return f"{self.kind} reminder for installment {self.installment_id}"


class SweepRun(models.Model):
    """One run of the overdue sweep: when, what it changed, how long it took.

    A run is split into chunks of plans (``SweepChunk``), done by workers side by side; the
    chunk that finishes last updates the customers and closes the run (``finished_at``).
    """

    business_date = models.DateField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True, help_text="Empty while chunks are still running.")
    duration_ms = models.PositiveIntegerField(default=0)
    late_fees = models.BooleanField(default=False, help_text="Whether this run charges late fees.")
    chunks_total = models.PositiveIntegerField(default=0)
    installments_marked_overdue = models.PositiveIntegerField(default=0)
    customers_marked_debt = models.PositiveIntegerField(default=0)
    customers_restored = models.PositiveIntegerField(default=0)
    late_fees_created = models.PositiveIntegerField(default=0)
    skipped = models.BooleanField(default=False, help_text="Another sweep was running.")

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Sweep {self.started_at:%Y-%m-%d %H:%M:%S}"


class SweepChunk(models.Model):
    """The plans ``first_plan_id``..``last_plan_id`` of one sweep run: one task's share."""

    run = models.ForeignKey(SweepRun, on_delete=models.CASCADE, related_name="chunks")
    first_plan_id = models.BigIntegerField()
    last_plan_id = models.BigIntegerField()
    done_at = models.DateTimeField(null=True, blank=True)
    installments_marked_overdue = models.PositiveIntegerField(default=0)
    late_fees_created = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["run_id", "first_plan_id"]
        constraints = [models.UniqueConstraint(fields=["run", "first_plan_id"], name="sweep_chunk_once_per_run")]

    def __str__(self) -> str:
        return f"Plans {self.first_plan_id}-{self.last_plan_id}"
