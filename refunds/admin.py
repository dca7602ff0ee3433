"""Refunds in the admin: read-only rows, decisions through the same service as the webhook."""

from django.contrib import admin, messages

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from refunds.models import Refund, RefundEvent
from refunds.services import RefundAlreadyDecided, RefundExceedsPlan, refund_decide


class RefundEventInline(ReadOnlyInline):
    model = RefundEvent
    fields = ("requested_status", "source", "outcome", "created_at")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("transaction_id", "plan", "merchant", "amount", "status", "payout_status", "created_at")
    list_filter = ("status", "payout_status", "currency")
    search_fields = ("transaction_id", "=plan__id", "merchant__user_id", "customer__user_id")
    date_hierarchy = "created_at"
    list_select_related = ("plan", "merchant")
    inlines = [RefundEventInline]
    actions = ["approve", "reject"]

    def _decide(self, request, queryset, status: str) -> None:
        skipped = []
        for refund in queryset:
            try:
                refund_decide(refund_id=refund.pk, status=status, actor=request.user)
            except RefundAlreadyDecided as exc:
                # Decided before (or by another operator meanwhile): say so, rather than
                # report a decision that changed nothing.
                skipped.append(f"{refund.transaction_id} ({exc.extra['refund_status'].lower()})")
                continue
            except RefundExceedsPlan as exc:
                self.message_user(request, f"{refund.transaction_id}: {exc.detail}", messages.ERROR)
                continue
            self.message_user(request, f"{refund.transaction_id}: {status.lower()}")
        if skipped:
            self.message_user(
                request,
                f"Skipped {len(skipped)} already decided (a final decision never changes): {', '.join(skipped)}",
                messages.WARNING,
            )

    @admin.action(description="Approve the selected refunds")
    def approve(self, request, queryset) -> None:
        self._decide(request, queryset, Refund.Status.APPROVED)

    @admin.action(description="Reject the selected refunds")
    def reject(self, request, queryset) -> None:
        self._decide(request, queryset, Refund.Status.REJECTED)
