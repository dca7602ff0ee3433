"""Admin pieces shared by the apps, and the admin of the Idempotency-Key records."""

from django.contrib import admin

from core.models import IdempotencyKey


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services write: visible, searchable, never edited by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """Child rows shown with their parent, never added, changed or removed by hand."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ("key", "principal", "method", "path", "status", "response_status", "created_at", "expires_at")
    list_filter = ("status", "method")
    search_fields = ("key", "principal__user_id")
    date_hierarchy = "created_at"
