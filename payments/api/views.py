"""Paying plans and installments, and the payments list."""

from django.http import Http404
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import HasRole
from bnpl.selectors import installment_plan_for, plan_scope, plan_visible
from core.idempotency import (
    IDEMPOTENCY_PARAMETER,
    idempotency_gateway_key,
    idempotency_gateway_key_unused,
    idempotent,
)
from core.problems import PROBLEM_CONTENT_TYPE
from core.schema import list_retrieve_schema, problems
from ledger.models import Posting
from payments.api.serializers import CreditTransactionOut, InstallmentPayIn, PaymentOut, PlanPayIn, payment_out
from payments.models import Payment
from payments.selectors import credit_transactions_for
from payments.services import payment_collect

PAYMENT_EXAMPLE = {
    "id": 31,
    "plan_id": 7,
    "user_id": "usr-001",
    "amount": "166.67",
    "currency": "USD",
    "credit_amount": "0.00",
    "excess_credited": "0.00",
    "source": "MANUAL",
    "attempt": None,
    "status": "SUCCEEDED",
    "decline_code": "",
    "created_at": "2026-12-22T09:00:00Z",
    "completed_at": "2026-12-22T09:00:01Z",
    "allocations": [{"installment_id": 11, "late_fee_id": None, "amount": "166.67"}],
}
DECLINED_EXAMPLE = OpenApiExample(
    "Declined",
    value={
        "type": "/problems/payment_declined",
        "title": "Payment declined",
        "status": 402,
        "detail": "The card was declined (card_declined).",
        "code": "payment_declined",
        "decline_code": "card_declined",
        "payment_id": 32,
    },
    response_only=True,
    status_codes=["402"],
    media_type=PROBLEM_CONTENT_TYPE,
)
GATEWAY_UNAVAILABLE_EXAMPLE = OpenApiExample(
    "Gateway unavailable",
    value={
        "type": "/problems/gateway_unavailable",
        "title": "Payment gateway unavailable",
        "status": 502,
        "detail": "The payment gateway did not answer; the payment is pending and will not be charged twice.",
        "code": "gateway_unavailable",
        "payment_id": 33,
    },
    response_only=True,
    status_codes=["502"],
    media_type=PROBLEM_CONTENT_TYPE,
)
PAY_RESPONSES = {201: PaymentOut, **problems(400, 401, 402, 403, 404, 409, 413, 415, 422, 502)}
CAN_PAY = [HasRole.of(User.Role.CUSTOMER, User.Role.OPERATOR)]


class _PayView(APIView):
    """POST: validate, find the target in the caller's scope (else 404), collect the payment."""

    permission_classes = CAN_PAY
    body_class: type

    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        plan_id, installment_id = self.target(request, pk)
        body = self.body_class(data=request.data)
        body.is_valid(raise_exception=True)
        payment = payment_collect(
            plan_id=plan_id,
            installment_id=installment_id,
            amount=body.validated_data.get("amount"),
            payer=request.user,
            gateway_key=idempotency_gateway_key(request),
            gateway_key_unused=idempotency_gateway_key_unused(request),
        )
        # As the service returns it: its customer's public id and its allocations came with it.
        return Response(payment_out(payment), status=201)

    def target(self, request: Request, pk: int) -> tuple[int, int | None]:
        raise NotImplementedError


def _pay_schema(operation_id: str, summary: str, body_class, example: dict):
    return extend_schema_view(
        post=extend_schema(
            operation_id=operation_id,
            summary=summary,
            request=body_class,
            parameters=[IDEMPOTENCY_PARAMETER],
            responses=PAY_RESPONSES,
            examples=[
                OpenApiExample("Amount", value=example, request_only=True),
                OpenApiExample("Paid", value=PAYMENT_EXAMPLE, response_only=True, status_codes=["201"]),
                DECLINED_EXAMPLE,
                GATEWAY_UNAVAILABLE_EXAMPLE,
            ],
        )
    )


@_pay_schema("installments_pay", "Pay an installment's remainder, or part of it", InstallmentPayIn, {"amount": "50.00"})
class InstallmentPayView(_PayView):
    body_class = InstallmentPayIn

    def target(self, request: Request, pk: int) -> tuple[int, int | None]:
        plan_id = installment_plan_for(viewer=request.user, installment_id=pk)
        if plan_id is None:
            raise Http404("No such installment.")
        return plan_id, pk


@_pay_schema(
    "plans_pay",
    "Pay toward a plan: overdue first, oldest first; the whole remainder pays it off",
    PlanPayIn,
    {"amount": "200.00"},
)
class PlanPayView(_PayView):
    body_class = PlanPayIn

    def target(self, request: Request, pk: int) -> tuple[int, int | None]:
        # Only whether the caller may pay it: the service reads the plan under its lock.
        if not plan_visible(viewer=request.user, pk=pk):
            raise Http404("No such plan.")
        return pk, None


@list_retrieve_schema(name="payments", plural="Payments", serializer=PaymentOut, example=PAYMENT_EXAMPLE)
class PaymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = PaymentOut
    filterset_fields = ["status", "plan_id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Payment.objects.none()
        return (
            Payment.objects.filter(plan_scope(self.request.user, "plan__"))
            .select_related("customer")
            .prefetch_related("allocations")
            .order_by("-id")
        )


CREDIT_EXAMPLE = {
    "id": 120,
    "user_id": "usr-001",
    "kind": "REFUND_CREDIT",
    "amount": "5.00",
    "currency": "USD",
    "plan_id": 7,
    "memo": "Refund rf-1001 credited to the customer's balance",
    "created_at": "2026-12-22T09:00:00Z",
}


class CreditTransactionFilter(filters.FilterSet):
    user_id = filters.CharFilter(field_name="party__user_id")
    currency = filters.CharFilter()

    class Meta:
        model = Posting
        fields = ["user_id", "currency"]


@list_retrieve_schema(
    name="credit_transactions",
    plural="Credit balance movements",
    serializer=CreditTransactionOut,
    example=CREDIT_EXAMPLE,
)
class CreditTransactionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Customers see their own movements, merchants those on plans they sold, operators all."""

    serializer_class = CreditTransactionOut
    filterset_class = CreditTransactionFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Posting.objects.none()
        return credit_transactions_for(viewer=self.request.user)
