"""Merchants list their events to catch up on anything their endpoint missed."""

from django.http import Http404
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from accounts.models import User
from accounts.permissions import HasRole
from core.filters import UtcIsoDateTimeFilter
from core.schema import problems
from events.api.serializers import EventOut
from events.models import Event
from events.selectors import event_list_for

EVENT_EXAMPLE = {
    "id": "evt_5d41402abc4b2a76b9719d911017c592",
    "type": "installment.paid",
    "created_at": "2026-12-22T09:00:01Z",
    "data": {
        "installment_id": 11,
        "plan_id": 7,
        "merchant_reference": "order-1001",
        "sequence": 1,
        "amount_due": "125.00",
        "amount_paid": "125.00",
        "currency": "USD",
        "due_date": "2026-12-22",
        "status": "PAID",
        "payment_id": 31,
    },
    "merchant_id": "merchant-001",
    "delivery_status": "DELIVERED",
    "delivery_attempts": 1,
    "delivered_at": "2026-12-22T09:00:02Z",
}


class EventCursorPagination(CursorPagination):
    """Newest first; follow ``next`` to page back. Stable while new events arrive."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_paginated_response_schema(self, schema: dict) -> dict:
        # DRF's own example for "next" ends in a stray '"' (and names another API): ours.
        page = super().get_paginated_response_schema(schema)
        page["properties"]["next"]["example"] = "https://bnpl.example.com/api/v1/events/?cursor=cD0xMjM%3D"
        page["properties"]["previous"]["example"] = "https://bnpl.example.com/api/v1/events/?cursor=cj0xJnA9MTI0"
        return page

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None and not str(cursor.position).isdigit():
            raise NotFound(self.invalid_cursor_message)  # a forged position, not one we made
        return cursor


class EventFilter(filters.FilterSet):
    type = filters.ChoiceFilter(choices=Event.Type.choices)
    delivery_status = filters.ChoiceFilter(choices=Event.Delivery.choices)
    merchant_id = filters.CharFilter(field_name="merchant__user_id", help_text="Operators: one merchant's events.")
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = Event
        fields = ["type", "delivery_status", "merchant_id", "created_after"]


@extend_schema_view(
    list=extend_schema(
        operation_id="events_list",
        summary="Your events, newest first (cursor-paginated): catch up on what your endpoint missed",
        responses={200: EventOut(many=True), **problems(400, 401, 403, 404)},
        # One event: drf-spectacular wraps it in the paginator's page (next, previous, results).
        examples=[OpenApiExample("Page", value=EVENT_EXAMPLE, response_only=True)],
    ),
    retrieve=extend_schema(
        operation_id="events_retrieve",
        summary="One of your events, by its id",
        responses={200: EventOut, **problems(401, 403, 404)},
        examples=[OpenApiExample("One", value=EVENT_EXAMPLE, response_only=True)],
    ),
)
class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Merchants see their own events, operators everyone's; customers have none (403)."""

    serializer_class = EventOut
    permission_classes = [HasRole.of(User.Role.MERCHANT, User.Role.OPERATOR)]
    pagination_class = EventCursorPagination
    filterset_class = EventFilter
    lookup_field = "public_id"
    lookup_url_kwarg = "id"
    lookup_value_regex = r"evt_[0-9a-f]{1,64}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Event.objects.none()
        return event_list_for(viewer=self.request.user)

    def get_object(self) -> Event:
        event = self.get_queryset().filter(public_id=self.kwargs["id"]).first()
        if event is None:
            raise Http404("No such event among yours.")
        return event
