"""The ledger in the admin: read-only, append-only, searchable."""

from django.contrib import admin

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from ledger.models import JournalEntry, LedgerAccount, LedgerCheckRun, Posting


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
