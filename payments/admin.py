"""Payments and Idempotency-Keys in the admin: read-only (the ledger's rows are in ledger.admin)."""

from django.contrib import admin

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from payments.models import Payment, PaymentAllocation


class AllocationInline(ReadOnlyInline):
    model = PaymentAllocation
    fields = ("installment", "late_fee", "amount")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    # The amount, its currency and the part paid from credit in one column: eleven columns did
    # not fit a 1366 px screen beside the navigation and the filters.
    list_display = (
        "id",
        "plan",
        "customer",
        "amount_shown",
        "source",
        "attempt",
        "status",
        "decline_code",
        "created_at",
    )
    list_filter = ("status", "source", "decline_code", "currency")
    search_fields = ("=id", "=plan__id", "customer__user_id", "gateway_reference")
    date_hierarchy = "created_at"
    list_select_related = ("plan", "customer")
    inlines = [AllocationInline]

    @admin.display(description="Amount", ordering="amount")
    def amount_shown(self, obj: Payment) -> str:
        shown = f"{obj.amount} {obj.currency}"
        return f"{shown} ({obj.credit_amount} from credit)" if obj.credit_amount else shown
