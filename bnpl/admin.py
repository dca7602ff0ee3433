from django.contrib import admin

from bnpl.models import Plan


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
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
    search_fields = ("customer__user_id", "merchant__user_id", "merchant_reference")
    date_hierarchy = "created_at"
    list_select_related = ("customer", "merchant")
    # Money and parties are fixed at origination; the services change the rest.
    readonly_fields = [f.name for f in Plan._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
