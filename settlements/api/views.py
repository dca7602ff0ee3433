"""Settlements and payouts over REST: merchants read their own, operators all, customers
nothing (403). A settlement's lines come as JSON pages, or as one CSV file (``?format=csv``
or ``Accept: text/csv``) streamed from the database."""

import json

from django.http import StreamingHttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request

from accounts.models import User
from accounts.permissions import HasRole
from core.schema import list_retrieve_schema, problems
from settlements.api.serializers import PayoutOut, SettlementLineOut, SettlementOut
from settlements.models import Payout, Settlement
from settlements.reports import settlement_csv_filename, settlement_csv_rows
from settlements.selectors import payouts_visible, settlement_lines, settlements_visible

SETTLEMENT_EXAMPLE = {
    "id": 3,
    "merchant_id": "merchant-001",
    "business_date": "2026-12-03",
    "currency": "USD",
    "gross": "600.00",
    "fees": "24.60",
    "net": "575.40",
    "line_count": 2,
    "cutoff_at": "2026-12-03T19:00:00Z",
    "payout_id": 2,
    "payout_amount": "575.40",
    "payout_status": "PAID",
    "created_at": "2026-12-03T19:30:02Z",
}
LINE_EXAMPLE = {
    "id": 41,
    "type": "capture",
    "plan_id": 7,
    "merchant_reference": "order-1001",
    "refund_id": None,
    "gross": "500.00",
    "fee": "20.30",
    "net": "479.70",
    "currency": "USD",
    "posted_at": "2026-12-03T10:15:00Z",
}
CSV_EXAMPLE = (
    "settlement_id,business_date,line_id,type,plan_id,merchant_reference,refund_id,gross,fee,net,currency,posted_at\r\n"
    "3,2026-12-03,41,capture,7,order-1001,,500.00,20.30,479.70,USD,2026-12-03T10:15:00+00:00\r\n"
    "3,2026-12-03,42,refund,7,,5,-100.00,0.00,-100.00,USD,2026-12-03T16:40:00+00:00\r\n"
)
LINES_ANSWER = (
    "The lines in id order: as JSON, a page of them; as CSV (`?format=csv` or `Accept: text/csv`), the "
    "settlement file, sent as an attachment (`Content-Disposition`), whole: a header row, then one row per "
    "line. Amounts have two decimals and are signed from the merchant's side (`net = gross - fee`)."
)
PAYOUT_EXAMPLE = {
    "id": 2,
    "settlement_id": 3,
    "merchant_id": "merchant-001",
    "amount": "575.40",
    "currency": "USD",
    "status": "PAID",
    "account": "DE89**************3000",
    "failure_code": "",
    "created_at": "2026-12-03T19:30:02Z",
    "finished_at": "2026-12-03T19:30:03Z",
}
SELLERS = [HasRole.of(User.Role.MERCHANT, User.Role.OPERATOR)]


class CsvRenderer(BaseRenderer):
    """Names ``text/csv`` for content negotiation: the file itself is streamed by the view.
    A problem answered to a CSV request is rendered as its JSON (``application/problem+json``)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return json.dumps(data).encode()


class SettlementFilter(filters.FilterSet):
    business_date_from = filters.DateFilter(field_name="business_date", lookup_expr="gte")
    business_date_to = filters.DateFilter(field_name="business_date", lookup_expr="lte")
    currency = filters.CharFilter(max_length=3)
    merchant_id = filters.CharFilter(
        field_name="merchant__user_id", max_length=64, help_text="Operators: one merchant."
    )

    class Meta:
        model = Settlement
        fields = ["business_date_from", "business_date_to", "currency", "merchant_id"]


class PayoutFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Payout.Status.choices)
    currency = filters.CharFilter(max_length=3)
    merchant_id = filters.CharFilter(
        field_name="merchant__user_id", max_length=64, help_text="Operators: one merchant."
    )

    class Meta:
        model = Payout
        fields = ["status", "currency", "merchant_id"]


@list_retrieve_schema(
    name="settlements", plural="Settlements", serializer=SettlementOut, example=SETTLEMENT_EXAMPLE, roles_only=True
)
class SettlementViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A merchant's daily settlements per currency (its own), or every merchant's (operators)."""

    serializer_class = SettlementOut
    filterset_class = SettlementFilter
    permission_classes = SELLERS

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Settlement.objects.none()
        return settlements_visible(self.request.user)

    @extend_schema(
        operation_id="settlements_lines",
        summary="A settlement's lines: JSON pages, or the whole file as CSV",
        description="What the settlement is made of, one line per capture, refund, fee given back, failed payout "
        "returned (adjustment) or earlier remainder (carried).",
        parameters=[
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                enum=["json", "csv"],
                description="`csv` for the settlement file (as `Accept: text/csv`), streamed whole, not paged.",
            ),
            OpenApiParameter("page", OpenApiTypes.INT, description="JSON only: the page number."),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="JSON only: lines per page (at most 100)."),
            OpenApiParameter(
                "Content-Disposition",
                OpenApiTypes.STR,
                location=OpenApiParameter.HEADER,
                response=[200],
                description='CSV only: `attachment; filename="settlement-<business_date>-<currency>-<id>.csv"`.',
            ),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(SettlementLineOut(many=True), description=LINES_ANSWER),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=LINES_ANSWER),
            **problems(401, 403, 404),
        },
        examples=[
            OpenApiExample("Line", value=LINE_EXAMPLE, response_only=True, media_type="application/json"),
            OpenApiExample("File", value=CSV_EXAMPLE, response_only=True, media_type="text/csv"),
        ],
    )
    # The JSON answer is a page (the schema says so through the pagination class); the
    # settlement filters of the list do not apply to one settlement's lines.
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, CsvRenderer], filter_backends=[])
    def lines(self, request: Request, pk: str | None = None):
        settlement = self.get_object()  # in the caller's scope, else 404
        if request.accepted_renderer.format == "csv":
            response = StreamingHttpResponse(settlement_csv_rows(settlement), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{settlement_csv_filename(settlement)}"'
            return response
        page = self.paginate_queryset(settlement_lines(settlement))
        return self.get_paginated_response(SettlementLineOut(page, many=True).data)


@list_retrieve_schema(name="payouts", plural="Payouts", serializer=PayoutOut, example=PAYOUT_EXAMPLE, roles_only=True)
class PayoutViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Money sent to merchants' bank accounts: ``PENDING`` → ``PAID`` or ``FAILED``."""

    serializer_class = PayoutOut
    filterset_class = PayoutFilter
    permission_classes = SELLERS

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Payout.objects.none()
        return payouts_visible(self.request.user)
