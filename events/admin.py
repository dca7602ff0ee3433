"""Events and notifications in the admin: read-only rows, a manual redeliver."""

from django.contrib import admin

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from events.models import Event, EventDelivery, Notification
from events.services import event_redeliver


class EventDeliveryInline(ReadOnlyInline):
    model = EventDelivery
    fields = ("number", "started_at", "response_status", "duration_ms", "error", "succeeded", "manual", "url")


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "type", "merchant", "delivery_status", "attempts", "created_at", "delivered_at")
    list_filter = ("type", "delivery_status")
    search_fields = ("=public_id", "merchant__user_id")
    date_hierarchy = "created_at"
    list_select_related = ("merchant",)
    readonly_fields = ("next_attempt_at", "give_up_at")
    inlines = [EventDeliveryInline]
    actions = ["redeliver"]

    @admin.action(description="Redeliver the selected events now")
    def redeliver(self, request, queryset) -> None:
        for event in queryset:
            event_redeliver(event_id=event.pk)
        self.message_user(request, f"{queryset.count()} event(s) queued for delivery.")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("kind", "channel", "customer", "cause", "status", "created_at", "sent_at")
    list_filter = ("kind", "channel", "status")
    search_fields = ("=cause", "customer__user_id")
    date_hierarchy = "created_at"
    list_select_related = ("customer",)
