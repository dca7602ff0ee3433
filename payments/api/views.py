"""Paying plans and installments, and the payments list."""

from django.db.models import Q
from django.http import Http404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import HasRole
from bnpl.selectors import installment_list_for, plan_list_for
from config.schema import list_retrieve_schema, problems
from payments.api.serializers import InstallmentPayIn, PaymentOut, PlanPayIn
from payments.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from payments.models import Payment
from payments.services import payment_collect

PAYMENT_EXAMPLE = {
    "id": 31,
    "plan_id": 7,
    "user_id": "usr-001",
    "amount": "166.67",
    "currency": "USD",
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
)
PAY_RESPONSES = {201: PaymentOut, **problems(400, 401, 402, 403, 404, 409, 422)}
CAN_PAY = [HasRole.of(User.Role.CUSTOMER, User.Role.OPERATOR)]


def _payment_scope(viewer: User) -> Q:
    if viewer.is_operator:
        return Q()
    if viewer.is_merchant:
        return Q(plan__merchant=viewer)
    return Q(customer=viewer)


def _paid(payment: Payment) -> Response:
    payment = Payment.objects.select_related("customer").prefetch_related("allocations").get(pk=payment.pk)
    return Response(PaymentOut(payment).data, status=201)


class InstallmentPayView(APIView):
    permission_classes = CAN_PAY

    @extend_schema(
        operation_id="installments_pay",
        summary="Pay an installment's remainder, or part of it",
        request=InstallmentPayIn,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses=PAY_RESPONSES,
        examples=[
            OpenApiExample("Partial", value={"amount": "50.00"}, request_only=True),
            OpenApiExample("Paid", value=PAYMENT_EXAMPLE, response_only=True, status_codes=["201"]),
            DECLINED_EXAMPLE,
        ],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        installment = installment_list_for(viewer=request.user).filter(pk=pk).first()
        if installment is None:
            raise Http404("No such installment.")
        body = InstallmentPayIn(data=request.data)
        body.is_valid(raise_exception=True)
        payment = payment_collect(
            plan_id=installment.plan_id,
            installment_id=installment.pk,
            amount=body.validated_data.get("amount"),
            payer=request.user,
        )
        return _paid(payment)


class PlanPayView(APIView):
    permission_classes = CAN_PAY

    @extend_schema(
        operation_id="plans_pay",
        summary="Pay toward a plan: overdue first, oldest first; the whole remainder pays it off",
        request=PlanPayIn,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses=PAY_RESPONSES,
        examples=[
            OpenApiExample("Amount", value={"amount": "200.00"}, request_only=True),
            OpenApiExample("Paid", value=PAYMENT_EXAMPLE, response_only=True, status_codes=["201"]),
            DECLINED_EXAMPLE,
        ],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        plan = plan_list_for(viewer=request.user).filter(pk=pk).first()
        if plan is None:
            raise Http404("No such plan.")
        body = PlanPayIn(data=request.data)
        body.is_valid(raise_exception=True)
        payment = payment_collect(plan_id=plan.pk, amount=body.validated_data["amount"], payer=request.user)
        return _paid(payment)


@list_retrieve_schema(name="payments", plural="Payments", serializer=PaymentOut, example=PAYMENT_EXAMPLE)
class PaymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = PaymentOut
    filterset_fields = ["status", "plan_id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Payment.objects.none()
        return (
            Payment.objects.filter(_payment_scope(self.request.user))
            .select_related("customer")
            .prefetch_related("allocations")
            .order_by("-id")
        )
