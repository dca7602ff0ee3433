"""Operators' view of plans, installments, late fees, reminders and sweeps: read-mostly."""

from django.contrib import admin

from bnpl.models import Installment, LateFee, Plan, Reminder, SweepRun
from bnpl.schedule import business_today, days_past_due_bucket
from config.admin import ReadOnlyAdmin


class InstallmentInline(admin.TabularInline):
    model = Installment
    fields = ("sequence", "amount_due", "amount_paid", "due_date", "status", "paid_at", "overdue_since")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("sequence",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Plan)
class PlanAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "customer",
        "merchant",
        "total_amount",
        "currency",
        "installment_count",
        "status",
        "created_at",
    )
    list_filter = ("status", "frequency", "currency")
    search_fields = ("=id", "customer__user_id", "merchant__user_id", "merchant_reference")
    date_hierarchy = "created_at"
    list_select_related = ("customer", "merchant")
    inlines = [InstallmentInline]


@admin.register(Installment)
class InstallmentAdmin(ReadOnlyAdmin):
    list_display = ("id", "plan", "sequence", "amount_due", "amount_paid", "due_date", "status", "days_past_due")
    list_filter = ("status",)
    search_fields = ("=plan__id", "plan__customer__user_id")
    date_hierarchy = "due_date"
    list_select_related = ("plan",)

    @admin.display(description="Days past due")
    def days_past_due(self, obj: Installment) -> str:
        if obj.status != Installment.Status.OVERDUE:
            return "-"
        days = (business_today() - obj.due_date).days
        return f"{days} ({days_past_due_bucket(days)})"


@admin.register(LateFee)
class LateFeeAdmin(ReadOnlyAdmin):
    list_display = ("id", "plan", "installment", "kind", "amount", "status", "waived_by", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("=plan__id", "plan__customer__user_id", "waived_reason")
    date_hierarchy = "created_at"


@admin.register(Reminder)
class ReminderAdmin(ReadOnlyAdmin):
    list_display = ("id", "installment", "kind", "outcome", "created_at")
    list_filter = ("kind", "outcome")
    date_hierarchy = "created_at"


@admin.register(SweepRun)
class SweepRunAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "business_date",
        "duration_ms",
        "installments_marked_overdue",
        "customers_marked_debt",
        "customers_restored",
        "late_fees_created",
        "skipped",
    )
    list_filter = ("skipped",)
    date_hierarchy = "started_at"
