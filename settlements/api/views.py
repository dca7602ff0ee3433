"""Settlements and payouts over REST: merchants read their own, operators all, customers
nothing (403). A settlement's lines come as JSON pages, or as one CSV file (``?format=csv``
or ``Accept: text/csv``) streamed from the database."""

import json

from django.http import Http404, StreamingHttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import User
from accounts.permissions import HasRole
from core.pagination import PagePagination
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


def _visible(queryset, pk: str | None):
    """The row ``pk`` of ``queryset`` (the caller's scope), else 404; ids are ASCII digits."""
    number = str(pk)
    if not (number.isascii() and number.isdigit() and len(number) <= 18):
        raise Http404
    found = queryset.filter(pk=int(number)).first()
    if found is None:
        raise Http404
    return found


@list_retrieve_schema(name="settlements", plural="Settlements", serializer=SettlementOut, example=SETTLEMENT_EXAMPLE)
class SettlementViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A merchant's daily settlements per currency (its own), or every merchant's (operators)."""

    serializer_class = SettlementOut
    filterset_class = SettlementFilter
    permission_classes = SELLERS

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Settlement.objects.none()
        return settlements_visible(self.request.user)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(SettlementOut(_visible(self.get_queryset(), pk)).data)

    @extend_schema(
        operation_id="settlements_lines",
        summary="A settlement's lines: JSON pages, or the whole file as CSV",
        parameters=[
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                enum=["json", "csv"],
                description="`csv` for the settlement file (as `Accept: text/csv`), streamed whole, not paged.",
            ),
            OpenApiParameter("page", OpenApiTypes.INT, description="JSON only: the page number."),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="JSON only: lines per page (at most 100)."),
        ],
        responses={
            (200, "application/json"): SettlementLineOut(many=True),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="The settlement file: a header row, then one row per line (`settlement_id`, "
                "`business_date`, `line_id`, `type`, `plan_id`, `merchant_reference`, `refund_id`, `gross`, "
                "`fee`, `net`, `currency`, `posted_at`).",
            ),
            **problems(401, 403, 404),
        },
        examples=[OpenApiExample("Line", value=LINE_EXAMPLE, response_only=True, media_type="application/json")],
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, CsvRenderer], pagination_class=None)
    def lines(self, request: Request, pk: str | None = None):
        settlement = _visible(self.get_queryset(), pk)
        if request.accepted_renderer.format == "csv":
            response = StreamingHttpResponse(settlement_csv_rows(settlement), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{settlement_csv_filename(settlement)}"'
            return response
        paginator = PagePagination()
        page = paginator.paginate_queryset(settlement_lines(settlement), request, view=self)
        return paginator.get_paginated_response(SettlementLineOut(page, many=True).data)


@list_retrieve_schema(name="payouts", plural="Payouts", serializer=PayoutOut, example=PAYOUT_EXAMPLE)
class PayoutViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Money sent to merchants' bank accounts: ``PENDING`` → ``PAID`` or ``FAILED``."""

    serializer_class = PayoutOut
    filterset_class = PayoutFilter
    permission_classes = SELLERS

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Payout.objects.none()
        return payouts_visible(self.request.user)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(PayoutOut(_visible(self.get_queryset(), pk)).data)
