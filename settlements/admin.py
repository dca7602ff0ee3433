"""Settlements and payouts in the admin: read-only rows (their money is in the books), the
bank account masked only; the actions call the services: settle yesterday now, send a
pending payout again (the same idempotency key: the bank pays it at most once)."""

from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_POST

from core.admin import ReadOnlyAdmin, ReadOnlyInline
from settlements.models import Payout, Settlement, SettlementChunk, SettlementLine, SettlementRun
from settlements.services.payouts import payout_send
from settlements.services.settle import settle_merchants

LINE_FIELDS = ("type", "plan", "refund", "source_settlement", "source_payout", "gross", "fee", "net", "posted_at")


class SettlementChunkInline(ReadOnlyInline):
    model = SettlementChunk
    fields = ("first_merchant_id", "last_merchant_id", "done_at", "settlements_created")


@admin.register(SettlementRun)
class SettlementRunAdmin(ReadOnlyAdmin):
    list_display = (
        "business_date",
        "started_at",
        "finished_at",
        "chunks_done",
        "chunks_total",
        "settlements_created",
        "payouts_created",
    )
    search_fields = ("=business_date",)
    date_hierarchy = "business_date"
    inlines = [SettlementChunkInline]

    def get_urls(self):
        settle_now = self.admin_site.admin_view(require_POST(self.settle_now))
        return [path("settle-now/", settle_now, name="settlements_settlementrun_settle_now"), *super().get_urls()]

    def settle_now(self, request):
        """Settle yesterday (the business time zone's) through the service, as the nightly job
        does: chunks to the workers when there are any, else here; a day settled settles nothing twice."""
        run = settle_merchants(fan_out=True)
        if run.finished_at is None:
            self.message_user(request, f"Settlement of {run.business_date} started: {run.chunks_total} chunks.")
        else:
            self.message_user(
                request,
                f"Settlement of {run.business_date} done: {run.settlements_created} settlements, "
                f"{run.payouts_created} payouts.",
            )
        return redirect("admin:settlements_settlementrun_changelist")


class SettlementLineInline(ReadOnlyInline):
    model = SettlementLine
    fk_name = "settlement"  # not source_settlement: the settlement a carried line came from
    fields = LINE_FIELDS
    show_change_link = True


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin):
    list_display = ("business_date", "merchant", "currency", "gross", "fees", "net", "line_count", "payout_status")
    list_filter = ("currency", "business_date", "payout__status")
    search_fields = ("merchant__user_id", "=business_date")
    date_hierarchy = "business_date"
    list_select_related = ("merchant", "payout")
    inlines = [SettlementLineInline]

    @admin.display(description="payout")
    def payout_status(self, settlement: Settlement) -> str:
        payout = getattr(settlement, "payout", None)
        return payout.get_status_display() if payout is not None else "-"


@admin.register(SettlementLine)
class SettlementLineAdmin(ReadOnlyAdmin):
    list_display = ("settlement", "type", "plan", "refund", "gross", "fee", "net", "currency", "posted_at")
    list_filter = ("type", "currency")
    search_fields = ("settlement__merchant__user_id", "=settlement__business_date", "=plan__id", "merchant_reference")
    list_select_related = ("settlement",)


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = (
        "settlement",
        "merchant",
        "amount",
        "currency",
        "status",
        "account_masked",
        "failure_code",
        "attempts",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "currency", "failure_code")
    search_fields = ("merchant__user_id", "=settlement__business_date", "reference")
    date_hierarchy = "created_at"
    list_select_related = ("settlement", "merchant")
    # The account as the payout had it, masked: the full number is only on the merchant, encrypted.
    fields = (
        "settlement",
        "merchant",
        "amount",
        "currency",
        "status",
        "payable_available",
        "account_masked",
        "failure_code",
        "reference",
        "attempts",
        "created_at",
        "updated_at",
        "finished_at",
    )
    actions = ["send_again"]

    @admin.action(description="Send again the selected pending payouts")
    def send_again(self, request, queryset) -> None:
        skipped = []
        for payout in queryset.order_by("pk"):
            if payout.status != Payout.Status.PENDING:
                skipped.append(f"#{payout.pk} ({payout.status.lower()})")
                continue
            try:
                sent = payout_send(payout_id=payout.pk)
            except Exception as exc:  # the gateway did not answer: still PENDING, for the reconcile task
                self.message_user(
                    request, f"Payout #{payout.pk}: no answer from the bank ({exc.__class__.__name__})", messages.ERROR
                )
                continue
            level = messages.SUCCESS if sent.status == Payout.Status.PAID else messages.WARNING
            detail = f": {sent.failure_code}" if sent.failure_code else ""
            self.message_user(request, f"Payout #{payout.pk}: {sent.status.lower()}{detail}", level)
        if skipped:
            self.message_user(
                request,
                f"Skipped {len(skipped)} not pending (a paid or failed payout is never sent again): "
                f"{', '.join(skipped)}",
                messages.WARNING,
            )
