"""Refunds over REST: merchants and operators request, operators may decide."""

from django.http import Http404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import User
from accounts.permissions import HasRole
from bnpl.selectors import plan_list_for, plan_scope
from config.schema import VALIDATION_EXAMPLE, list_retrieve_schema, problems
from payments.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from refunds.api.serializers import RefundCreateIn, RefundOut
from refunds.models import Refund
from refunds.services import refund_request, refund_status_apply

REFUND_EXAMPLE = {
    "id": 5,
    "plan_id": 7,
    "transaction_id": "rf-1001",
    "user_id": "usr-001",
    "merchant_id": "merchant-001",
    "amount": "80.00",
    "currency": "USD",
    "reason": "Returned item",
    "status": "PENDING",
    "applied_amount": "0.00",
    "payout_amount": "0.00",
    "payout_status": "NONE",
    "created_at": "2026-11-22T10:00:00Z",
    "decided_at": None,
}
OPERATORS = [HasRole.of(User.Role.OPERATOR)]


@list_retrieve_schema(name="refunds", plural="Refunds", serializer=RefundOut, example=REFUND_EXAMPLE)
class RefundViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = RefundOut
    filterset_fields = ["status", "plan_id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Refund.objects.none()
        return Refund.objects.filter(plan_scope(self.request.user, "plan__")).select_related("customer", "merchant")

    def get_permissions(self):
        if self.action == "create":
            return [HasRole.of(User.Role.MERCHANT, User.Role.OPERATOR)()]
        if self.action in ("approve", "reject"):
            return [permission() for permission in OPERATORS]
        return super().get_permissions()

    @extend_schema(
        operation_id="refunds_create",
        summary="Request a refund (PENDING until the merchant or an operator decides)",
        request=RefundCreateIn,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: RefundOut, 200: RefundOut, **problems(400, 401, 403, 404, 409, 413, 415, 422)},
        examples=[
            OpenApiExample(
                "Refund",
                value={"plan_id": 7, "transaction_id": "rf-1001", "amount": "80.00", "reason": "Returned item"},
                request_only=True,
            ),
            OpenApiExample("Created", value=REFUND_EXAMPLE, response_only=True, status_codes=["201", "200"]),
            VALIDATION_EXAMPLE,
        ],
    )
    @idempotent(atomic=True)
    def create(self, request: Request) -> Response:
        body = RefundCreateIn(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        plan = plan_list_for(viewer=request.user).filter(pk=data["plan_id"]).first()
        if plan is None:
            raise Http404("No such plan among yours.")
        refund, created = refund_request(
            plan_id=plan.pk,
            transaction_id=data["transaction_id"],
            amount=data["amount"],
            reason=data["reason"],
            user_id=data.get("user_id"),
            requester=request.user,
            payout_method=data.get("payout_method"),
        )
        return Response(RefundOut(refund).data, status=201 if created else 200)

    def _decide(self, request: Request, status: str) -> Response:
        refund = self.get_object()
        refund = refund_status_apply(refund_id=refund.pk, status=status, source="operator", actor=request.user)
        return Response(RefundOut(refund).data)

    @extend_schema(
        operation_id="refunds_approve",
        summary="Approve a refund (operators): applied to the plan, the rest paid back",
        request=None,
        responses={200: RefundOut, **problems(401, 403, 404, 422)},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, Refund.Status.APPROVED)

    @extend_schema(
        operation_id="refunds_reject",
        summary="Reject a refund (operators)",
        request=None,
        responses={200: RefundOut, **problems(401, 403, 404)},
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, Refund.Status.REJECTED)
