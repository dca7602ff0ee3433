"""Refunds over REST: merchants and operators request, operators may decide."""

from django.http import Http404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import User
from accounts.permissions import HasRole
from bnpl.models import Plan
from bnpl.selectors import plan_scope
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from core.problems import PROBLEM_CONTENT_TYPE
from core.schema import VALIDATION_EXAMPLE, ProblemSerializer, list_retrieve_schema, problems
from core.serializers import StrictSerializer
from refunds.api.serializers import RefundCreateIn, RefundOut, refund_out
from refunds.models import Refund
from refunds.services import refund_decide, refund_request

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
    "payout_method": "CARD",
    "payout_status": "NONE",
    "created_at": "2026-11-22T10:00:00Z",
    "decided_at": None,
}
OPERATORS = [HasRole.of(User.Role.OPERATOR)]
DECIDED_EXAMPLE = OpenApiExample(
    "Already decided",
    value={
        "type": "/problems/refund_already_decided",
        "title": "Refund already decided",
        "status": 409,
        "detail": "Refund rf-1001 is already REJECTED; a final decision never changes.",
        "code": "refund_already_decided",
        "refund_status": "REJECTED",
    },
    status_codes=["409"],
    response_only=True,
    media_type=PROBLEM_CONTENT_TYPE,
)
DECIDE_RESPONSES = {
    200: RefundOut,
    **problems(400, 401, 403, 404, 415, 422),
    (409, PROBLEM_CONTENT_TYPE): OpenApiResponse(
        ProblemSerializer,
        description="`refund_already_decided`: the refund is already APPROVED or REJECTED (`refund_status`); "
        "or `idempotency_key_in_flight`: a request with this Idempotency-Key is still running.",
    ),
}


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
        try:
            # The plan is found within the merchant's scope as it is locked: out of scope is absent.
            refund, created = refund_request(
                plan_id=data["plan_id"],
                transaction_id=data["transaction_id"],
                amount=data["amount"],
                reason=data["reason"],
                user_id=data.get("user_id"),
                requester=request.user,
                payout_method=data.get("payout_method"),
            )
        except Plan.DoesNotExist:
            raise Http404("No such plan among yours.") from None
        return Response(refund_out(refund), status=201 if created else 200)

    def _decide(self, request: Request, status: str) -> Response:
        refund = self.get_object()
        # The decision takes no body: a field sent with it ({"amount": "5.00"}) would be a
        # partial approval the service never makes, so it is a 400 naming it, not ignored.
        StrictSerializer(data=request.data or {}).is_valid(raise_exception=True)
        refund = refund_decide(refund_id=refund.pk, status=status, actor=request.user)
        return Response(RefundOut(refund).data)

    # Not atomic=True: approving may pay the customer back through the gateway after its
    # transaction, so the key is claimed first and the answer stored when the work is done.
    @extend_schema(
        operation_id="refunds_approve",
        summary="Approve a refund (operators): applied to the plan, the rest paid back",
        description=(
            "A refund already APPROVED or REJECTED is a 409 `refund_already_decided` (its `refund_status` "
            "says which), approving it again included: a final decision never changes. To retry an approval "
            "safely, send an `Idempotency-Key`: the same key replays the first answer."
        ),
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses=DECIDE_RESPONSES,
        examples=[DECIDED_EXAMPLE],
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, Refund.Status.APPROVED)

    @extend_schema(
        operation_id="refunds_reject",
        summary="Reject a refund (operators)",
        description=(
            "A refund already APPROVED or REJECTED is a 409 `refund_already_decided` (its `refund_status` "
            "says which), rejecting it again included. With an `Idempotency-Key`, a retry replays the first "
            "answer."
        ),
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses=DECIDE_RESPONSES,
        examples=[DECIDED_EXAMPLE],
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def reject(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, Refund.Status.REJECTED)
