"""The ledger in the admin: read-only, append-only, searchable."""

from django.contrib import admin

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from payments.models import (
    JournalEntry,
    LedgerAccount,
    LedgerCheckRun,
    Payment,
    PaymentAllocation,
    Posting,
)


class PostingInline(ReadOnlyInline):
    model = Posting
    fields = ("account", "amount", "currency", "plan", "party")


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "plan", "memo", "created_at")
    list_filter = ("kind",)
    search_fields = ("=id", "=plan__id", "memo")
    date_hierarchy = "created_at"
    inlines = [PostingInline]


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = ("id", "entry", "account", "amount", "currency", "plan", "party")
    list_filter = ("account", "currency")
    search_fields = ("=entry__id", "=plan__id", "party__user_id")
    list_select_related = ("entry", "account", "plan", "party")


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("code", "name", "kind")


@admin.register(LedgerCheckRun)
class LedgerCheckRunAdmin(ReadOnlyAdmin):
    list_display = ("checked_at", "ok", "breach_count", "duration_ms")
    list_filter = ("ok",)
    date_hierarchy = "checked_at"


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
