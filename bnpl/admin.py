"""Operators' view of plans, installments, late fees, reminders and sweeps: read-mostly."""

from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.views.decorators.http import require_POST

from bnpl.errors import LateFeeNotWaivable, LateFeePaymentPending
from bnpl.models import Installment, LateFee, Plan, Reminder, SweepChunk, SweepRun
from bnpl.schedule import business_today, days_past_due_bucket
from bnpl.services.installments import late_fee_waive
from bnpl.services.sweep import overdue_sweep
from core.admin import ReadOnlyAdmin, ReadOnlyInline


class InstallmentInline(ReadOnlyInline):
    model = Installment
    fields = ("sequence", "amount_due", "amount_paid", "due_date", "status", "paid_at", "overdue_since")
    ordering = ("sequence",)


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
        "merchant_reference",
        "created_at",
    )
    list_filter = ("status", "capture_mode", "frequency", "currency")
    # The checkout page's secret: whoever holds it may open the customer's offer page.
    exclude = ("checkout_token",)
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
    actions = ["waive_fees"]

    @admin.action(description="Waive the selected late fees (asks why)")
    def waive_fees(self, request, queryset):
        reason = request.POST.get("reason", "").strip()
        if "confirm" not in request.POST or not reason:
            return TemplateResponse(
                request, "admin/bnpl/latefee/waive.html", {**self.admin_site.each_context(request), "fees": queryset}
            )
        for fee in queryset:
            try:
                late_fee_waive(fee_id=fee.pk, operator=request.user, reason=reason)
            except (LateFeeNotWaivable, LateFeePaymentPending) as exc:
                self.message_user(request, f"Fee {fee.pk}: {exc.detail}", messages.WARNING)
                continue
            self.message_user(request, f"Fee {fee.pk} waived.")
        return None


@admin.register(Reminder)
class ReminderAdmin(ReadOnlyAdmin):
    list_display = ("id", "installment", "kind", "outcome", "created_at")
    list_filter = ("kind", "outcome")
    date_hierarchy = "created_at"


class SweepChunkInline(ReadOnlyInline):
    model = SweepChunk
    fields = ("first_plan_id", "last_plan_id", "done_at", "installments_marked_overdue", "late_fees_created")


@admin.register(SweepRun)
class SweepRunAdmin(ReadOnlyAdmin):
    inlines = [SweepChunkInline]

    def get_urls(self):
        run_now = self.admin_site.admin_view(require_POST(self.run_now))
        return [path("run-now/", run_now, name="bnpl_sweeprun_run_now"), *super().get_urls()]

    def run_now(self, request):
        """Run the overdue sweep at once, through its service."""
        run = overdue_sweep()
        if run.skipped:
            self.message_user(request, "Another sweep is running; nothing done.", messages.WARNING)
        else:
            self.message_user(
                request,
                f"Sweep done in {run.duration_ms} ms: {run.installments_marked_overdue} installments overdue, "
                f"{run.customers_marked_debt} customers in debt, {run.customers_restored} restored.",
            )
        return redirect("admin:bnpl_sweeprun_changelist")

    list_display = (
        "started_at",
        "business_date",
        "finished_at",
        "chunks_total",
        "duration_ms",
        "installments_marked_overdue",
        "customers_marked_debt",
        "customers_restored",
        "late_fees_created",
        "skipped",
    )
    list_filter = ("skipped",)
    date_hierarchy = "started_at"
