"""Plans, installments, late fees, debt status, analytics and spending power over REST."""

from django.db import router
from django.http import Http404
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import HasRole
from bnpl.analytics import dashboard_cache_name, figures_cached, merchant_dashboard
from bnpl.api.serializers import (
    AnalyticsOut,
    AnalyticsQueryIn,
    DebtStatusOut,
    InstallmentOut,
    LateFeeOut,
    LateFeeWaiveIn,
    NoBody,
    PlanCaptureIn,
    PlanCreateIn,
    PlanOut,
    SpendingPowerOut,
    debt_status_out,
    plan_out,
)
from bnpl.models import Installment, LateFee, Plan
from bnpl.selectors import (
    credit_positions,
    debt_status_get_for,
    installment_list_for,
    plan_get_for,
    plan_list_for,
    plan_scope,
)
from bnpl.services.checkout import Offer, plan_capture, plan_confirm, plan_decline, plan_offer_named, plan_void
from bnpl.services.installments import late_fee_waive
from config.db_router import reading_from_replica
from core.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from core.problems import PROBLEM_CONTENT_TYPE, FieldInvalid
from core.schema import VALIDATION_EXAMPLE, list_retrieve_schema, problems

INSTALLMENT_EXAMPLE = {
    "id": 11,
    "plan_id": 7,
    "sequence": 1,
    "amount_due": "166.67",
    "amount_paid": "0.00",
    "amount_remaining": "166.67",
    "due_date": "2026-12-22",
    "status": "UPCOMING",
    "paid_at": None,
}
PLAN_EXAMPLE = {
    "id": 7,
    "user_id": "usr-001",
    "merchant_id": "merchant-001",
    "total_amount": "500.00",
    "currency": "USD",
    "installment_count": 3,
    "frequency": "MONTHLY",
    "status": "ACTIVE",
    "merchant_reference": "order-1001",
    "purchase_date": "2026-11-22",
    "capture_mode": "automatic",
    "authorized_amount": "500.00",
    "checkout_url": None,
    "expires_at": None,
    "confirmed_at": "2026-11-22T10:02:00Z",
    "amount_paid": "0.00",
    "amount_remaining": "500.00",
    "created_at": "2026-11-22T10:00:00Z",
    "installments": [
        INSTALLMENT_EXAMPLE,
        INSTALLMENT_EXAMPLE | {"id": 12, "sequence": 2, "due_date": "2027-01-22"},
        INSTALLMENT_EXAMPLE
        | {"id": 13, "sequence": 3, "amount_due": "166.66", "amount_remaining": "166.66", "due_date": "2027-02-22"},
    ],
}


PLAN_EXAMPLE["schedule"] = [
    {"sequence": i["sequence"], "amount_due": i["amount_due"], "due_date": i["due_date"]}
    for i in PLAN_EXAMPLE["installments"]
]
PENDING_PLAN_EXAMPLE = PLAN_EXAMPLE | {
    "status": "PENDING",
    "checkout_url": "https://bnpl.example.com/checkout/3q2-uWvYc1h0m7Hn5pQkS8dXl4A9bZrE6tGfJoNwKyM/",
    "expires_at": "2026-11-23T10:00:00Z",
    "confirmed_at": None,
    "installments": [],
}


class PlanFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Plan.Status.choices)
    user_id = filters.CharFilter(field_name="customer__user_id", help_text="The customer's user_id.")
    merchant_reference = filters.CharFilter(help_text="The merchant's own reference for the plan (exact).")

    class Meta:
        model = Plan
        fields = ["status", "user_id", "merchant_reference"]


def _problem_example(name: str, status: int, code: str, title: str, detail: str) -> OpenApiExample:
    return OpenApiExample(
        name,
        value={"type": f"/problems/{code}", "title": title, "status": status, "detail": detail, "code": code},
        response_only=True,
        status_codes=[str(status)],
        media_type=PROBLEM_CONTENT_TYPE,
    )


NOT_PENDING_EXAMPLE = _problem_example(
    "Not pending",
    409,
    "plan_not_pending",
    "Plan is not awaiting the customer",
    "This plan is EXPIRED; only a PENDING plan can be confirmed or declined.",
)
NOT_AUTHORIZED_EXAMPLE = _problem_example(
    "Not authorized",
    409,
    "plan_not_authorized",
    "Plan is not authorized",
    "This plan is ACTIVE; only an AUTHORIZED plan can be captured or voided.",
)
CUSTOMERS = [HasRole.of(User.Role.CUSTOMER)]
SELLERS = [HasRole.of(User.Role.MERCHANT, User.Role.OPERATOR)]


@list_retrieve_schema(name="plans", plural="Plans", serializer=PlanOut, example=PLAN_EXAMPLE)
class PlanViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Customers see their plans, merchants the plans they sold, operators all; else 404."""

    serializer_class = PlanOut
    filterset_class = PlanFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Plan.objects.none()
        return plan_list_for(viewer=self.request.user)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(plan_out(self._plan(request, pk)))

    def get_permissions(self):
        if self.action == "create":
            return [permission() for permission in SELLERS]
        return super().get_permissions()

    def _plan(self, request: Request, pk: str | None) -> Plan:
        """The plan ``pk`` if the caller may see it, else 404."""
        plan = plan_get_for(viewer=request.user, pk=_plan_id(pk))
        if plan is None:
            raise Http404("No such plan.")
        return plan

    @extend_schema(
        operation_id="plans_create",
        summary="Offer a plan to a customer (merchants: PENDING until they confirm; operators: ACTIVE)",
        description=(
            "A merchant's plan is an offer: 201 `PENDING` with its proposed `schedule` and a `checkout_url` "
            "(the customer is also told by email and SMS); nothing is owed until the customer confirms it "
            "(`POST /plans/{id}/confirm/`, from the app or the hosted page). Meanwhile it reserves its amount "
            "against the customer's credit, and lapses (`EXPIRED`) after the checkout time. An operator "
            "(back office, `merchant_id` given) creates the plan `ACTIVE` at once. Customers cannot create plans. "
            "The same `merchant_reference` with the same terms answers 200 with the plan made before. "
            "A customer who cannot take the plan, and a `user_id` that names nobody you can offer to, are both "
            "422 `credit_declined`, with nothing about the customer's money."
        ),
        request=PlanCreateIn,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: PlanOut, 200: PlanOut, **problems(400, 401, 403, 409, 413, 415, 422)},
        examples=[
            OpenApiExample(
                "Merchant offers usr-001 a plan",
                value={
                    "user_id": "usr-001",
                    "total_amount": "500.00",
                    "installment_count": 3,
                    "frequency": "MONTHLY",
                    "currency": "USD",
                    "merchant_reference": "order-1001",
                    "capture_mode": "automatic",
                },
                request_only=True,
            ),
            OpenApiExample("Offered", value=PENDING_PLAN_EXAMPLE, response_only=True, status_codes=["201"]),
            _problem_example(
                "Debt user",
                403,
                "debt_user_forbidden",
                "Customer has overdue debt",
                "Users with DEBT_USER status cannot create new BNPL plans",
            ),
            _problem_example(
                "Declined", 422, "credit_declined", "Credit declined", "The customer cannot take this plan."
            ),
            VALIDATION_EXAMPLE,
        ],
    )
    @idempotent(atomic=True)
    def create(self, request: Request) -> Response:
        body = PlanCreateIn(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        if request.user.is_operator and data["capture_mode"] == Plan.CaptureMode.MANUAL:
            raise FieldInvalid("capture_mode", "A plan made in the back office is ACTIVE at once; leave it automatic.")
        plan, created = plan_offer_named(
            creator=request.user,
            user_id=data.pop("user_id"),
            merchant_id=data.pop("merchant_id", None),
            offer=Offer(**data),
        )
        if not created:
            plan = plan_get_for(viewer=request.user, pk=plan.pk)
        return Response(plan_out(plan), status=201 if created else 200)

    @extend_schema(
        operation_id="plans_confirm",
        summary="The customer agrees to a pending plan: ACTIVE (or AUTHORIZED for manual capture)",
        description=(
            "Only the plan's customer. Re-checks at this moment that the customer is not a DEBT_USER (403) "
            "and that the plan fits their credit (422 `credit_declined`, with their own `credit_limit`, "
            "`outstanding`, `reserved` and `available`). 409 `plan_not_pending` when it was already "
            "confirmed, declined or has expired."
        ),
        request=NoBody,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: PlanOut, **problems(400, 401, 403, 404, 409, 413, 415, 422)},
        examples=[OpenApiExample("Confirmed", value=PLAN_EXAMPLE, response_only=True), NOT_PENDING_EXAMPLE],
    )
    @action(detail=True, methods=["post"], permission_classes=CUSTOMERS)
    @idempotent(atomic=True)
    def confirm(self, request: Request, pk: str | None = None) -> Response:
        body = NoBody(data=request.data)
        if not body.is_valid():
            self._plan(request, pk)  # a plan out of the caller's scope is a 404 before its body is a 400
            raise ValidationError(body.errors)
        # The service locks the plan and holds that it is the caller's (its scope), and answers
        # the plan as it made it: neither read before nor read again after.
        try:
            plan = plan_confirm(plan_id=_plan_id(pk), customer=request.user)
        except Plan.DoesNotExist:
            raise Http404("No such plan.") from None
        return Response(plan_out(plan))

    @extend_schema(
        operation_id="plans_decline",
        summary="The customer refuses a pending plan: DECLINED",
        request=NoBody,
        parameters=[IDEMPOTENCY_PARAMETER],
        # 422: an Idempotency-Key sent before with another request.
        responses={200: PlanOut, **problems(400, 401, 403, 404, 409, 413, 415, 422)},
        examples=[NOT_PENDING_EXAMPLE],
    )
    @action(detail=True, methods=["post"], permission_classes=CUSTOMERS)
    @idempotent(atomic=True)
    def decline(self, request: Request, pk: str | None = None) -> Response:
        return self._moved(request, pk, lambda plan, _: plan_decline(plan_id=plan.pk))

    @extend_schema(
        operation_id="plans_capture",
        summary="Capture an authorized plan, all or part: ACTIVE, the schedule split over what was captured",
        description=(
            "The plan's merchant or an operator. Without `amount`, the whole authorized amount. 422 "
            "`capture_exceeds_authorized` above it; 409 `plan_not_authorized` when the plan is not AUTHORIZED "
            "(already captured, voided, or expired)."
        ),
        request=PlanCaptureIn,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: PlanOut, **problems(400, 401, 403, 404, 409, 413, 415, 422)},
        examples=[
            OpenApiExample("Part of it", value={"amount": "400.00"}, request_only=True),
            NOT_AUTHORIZED_EXAMPLE,
        ],
    )
    @action(detail=True, methods=["post"], permission_classes=SELLERS)
    @idempotent(atomic=True)
    def capture(self, request: Request, pk: str | None = None) -> Response:
        return self._moved(
            request, pk, lambda plan, body: plan_capture(plan_id=plan.pk, amount=body.get("amount")), PlanCaptureIn
        )

    @extend_schema(
        operation_id="plans_void",
        summary="Void an authorized plan: VOIDED, nothing owed",
        request=NoBody,
        parameters=[IDEMPOTENCY_PARAMETER],
        # 422: an Idempotency-Key sent before with another request.
        responses={200: PlanOut, **problems(400, 401, 403, 404, 409, 413, 415, 422)},
        examples=[NOT_AUTHORIZED_EXAMPLE],
    )
    @action(detail=True, methods=["post"], permission_classes=SELLERS)
    @idempotent(atomic=True)
    def void(self, request: Request, pk: str | None = None) -> Response:
        return self._moved(request, pk, lambda plan, _: plan_void(plan_id=plan.pk))

    def _moved(self, request: Request, pk: str | None, move, body_class=NoBody) -> Response:
        """Validate the body, move the caller's plan ``pk`` with ``move(plan, fields)``, show it."""
        plan = self._plan(request, pk)
        body = body_class(data=request.data)
        body.is_valid(raise_exception=True)
        move(plan, body.validated_data)
        return Response(plan_out(plan_get_for(viewer=request.user, pk=plan.pk)))


def _plan_id(pk: str | None) -> int:
    """The plan id in a path, or 404: ASCII digits of a bigint only ("²" is a digit to
    str.isdigit, and ids have at most 18 digits)."""
    number = str(pk)
    if number.isascii() and number.isdigit() and len(number) < 19:
        return int(number)
    raise Http404("No such plan.")


class InstallmentFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Installment.Status.choices)
    due_before = filters.DateFilter(field_name="due_date", lookup_expr="lte", help_text="Due on or before.")
    due_after = filters.DateFilter(field_name="due_date", lookup_expr="gte", help_text="Due on or after.")
    plan_id = filters.NumberFilter(field_name="plan_id")

    class Meta:
        model = Installment
        fields = ["status", "due_before", "due_after", "plan_id"]


@list_retrieve_schema(
    name="installments", plural="Installments", serializer=InstallmentOut, example=INSTALLMENT_EXAMPLE
)
class InstallmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = InstallmentOut
    filterset_class = InstallmentFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Installment.objects.none()
        return installment_list_for(viewer=self.request.user)


LATE_FEE_EXAMPLE = {
    "id": 3,
    "plan_id": 7,
    "installment_id": 11,
    "kind": "FIRST",
    "amount": "10.00",
    "amount_paid": "0.00",
    "status": "DUE",
    "waived_reason": "",
    "waived_at": None,
    "created_at": "2026-12-23T00:05:00Z",
}


@list_retrieve_schema(name="late_fees", plural="Late fees", serializer=LateFeeOut, example=LATE_FEE_EXAMPLE)
class LateFeeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = LateFeeOut
    filterset_fields = ["status", "plan_id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return LateFee.objects.none()
        return LateFee.objects.filter(plan_scope(self.request.user, "plan__")).order_by("-id")

    @extend_schema(
        operation_id="late_fees_waive",
        summary="Waive a late fee (operators), recording who and why",
        description=(
            "Waives what is still due of the fee and reverses it in the ledger. 409 "
            "`late_fee_not_waivable` when it is already waived or paid; 409 `late_fee_payment_pending` "
            "while a payment of it is in progress (its card being charged): retry once that payment "
            "has succeeded (the fee is then paid) or failed (it can then be waived)."
        ),
        request=LateFeeWaiveIn,
        responses={200: LateFeeOut, **problems(400, 401, 403, 404, 409, 413, 415)},
        examples=[
            OpenApiExample("Reason", value={"reason": "Customer was in hospital"}, request_only=True),
            OpenApiExample(
                "Waived",
                value=LATE_FEE_EXAMPLE
                | {
                    "status": "WAIVED",
                    "waived_reason": "Customer was in hospital",
                    "waived_at": "2026-12-24T09:00:00Z",
                },
                response_only=True,
            ),
        ],
    )
    @action(detail=True, methods=["post"], permission_classes=[HasRole.of(User.Role.OPERATOR)])
    def waive(self, request: Request, pk: str | None = None) -> Response:
        fee = self.get_object()
        body = LateFeeWaiveIn(data=request.data)
        body.is_valid(raise_exception=True)
        fee = late_fee_waive(fee_id=fee.pk, operator=request.user, reason=body.validated_data["reason"])
        return Response(LateFeeOut(fee).data)


DEBT_IN_USD = {
    "currency": "USD",
    "total_debt": "760.00",
    "overdue_amount": "250.00",
    "fees_due": "10.00",
    "overdue_by_bucket": {"1-30": "250.00", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"},
}
OVERDUE_EXAMPLE = {
    "id": 21,
    "plan_id": 9,
    "currency": "USD",
    "amount_due": "250.00",
    "amount_remaining": "250.00",
    "due_date": "2026-11-07",
    "days_overdue": 15,
    "bucket": "1-30",
}
DEBT_EXAMPLE = {
    "user_id": "debt-user-001",
    "user_status": "DEBT_USER",
    "has_overdue": True,
    **DEBT_IN_USD,
    "by_currency": [DEBT_IN_USD],
    "overdue_installments": [OVERDUE_EXAMPLE],
}
DEBT_IN_EUR = {
    "currency": "EUR",
    "total_debt": "120.00",
    "overdue_amount": "0.00",
    "fees_due": "0.00",
    "overdue_by_bucket": {"1-30": "0.00", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"},
}
DEBT_IN_TWO_CURRENCIES_EXAMPLE = DEBT_EXAMPLE | {
    **dict.fromkeys(DEBT_IN_USD, None),
    "overdue_by_bucket": dict.fromkeys(("1-30", "31-60", "61-90", "90+")),
    "by_currency": [DEBT_IN_EUR, DEBT_IN_USD],
}


class DebtStatusView(APIView):
    @extend_schema(
        operation_id="debt_retrieve",
        summary="A customer's debt status: what is owed, what is overdue, fees due (per currency)",
        description=(
            "Amounts in different currencies are never added together: `by_currency` has the figures of each "
            "currency the customer owes in. The top-level `total_debt`, `overdue_amount`, `fees_due` and "
            "`overdue_by_bucket` are those of `currency` when the customer owes in one currency only (the default "
            "currency, all zero, when nothing is owed), and null (each bucket null) when they owe in several."
        ),
        responses={200: DebtStatusOut, **problems(401, 404)},
        examples=[
            OpenApiExample("In debt", value=DEBT_EXAMPLE, response_only=True),
            OpenApiExample("Owing in two currencies", value=DEBT_IN_TWO_CURRENCIES_EXAMPLE, response_only=True),
        ],
    )
    def get(self, request: Request, user_id: str) -> Response:
        status = debt_status_get_for(viewer=request.user, user_id=user_id)
        if status is None:
            raise Http404("No customer with this user_id.")
        return Response(debt_status_out(status))


ANALYTICS_IN_USD = {
    "currency": "USD",
    "total_revenue": "1250.00",
    "outstanding": "3400.00",
    "overdue_installments": 2,
    "overdue_amount": "200.00",
    "refunds_total": "80.00",
    "processed_total": "5200.00",
    "merchant_fees_total": "212.50",
    "late_fees_total": "20.00",
    "payouts_total": "4600.00",
}
ANALYTICS_EXAMPLE = {
    "currency": "USD",
    "total_revenue": "1250.00",
    "outstanding": "3400.00",
    "overdue_installments": 2,
    "overdue_amount": "200.00",
    "overdue_by_bucket": {"1-30": 2, "31-60": 0, "61-90": 0, "90+": 0},
    "success_rate": 0.9,
    "refunds_total": "80.00",
    "processed_total": "5200.00",
    "merchant_fees_total": "212.50",
    "late_fees_total": "20.00",
    "payouts_total": "4600.00",
    "plans_by_status": dict.fromkeys(Plan.Status.values, 0) | {"PENDING": 2, "ACTIVE": 12, "COMPLETED": 3},
    "by_currency": [ANALYTICS_IN_USD],
}


class AnalyticsView(APIView):
    permission_classes = [HasRole.of(User.Role.MERCHANT, User.Role.OPERATOR)]

    @extend_schema(
        operation_id="analytics_dashboard",
        summary="Merchant analytics: a merchant's own plans; an operator's all or one merchant's",
        description=(
            "Amounts in different currencies are never added together: `by_currency` has the amounts of each "
            "currency the plans that became ACTIVE are in. The top-level amounts (`total_revenue`, `outstanding`, "
            "`overdue_amount`, `refunds_total`, `processed_total`, `merchant_fees_total`, `late_fees_total`, "
            "`payouts_total`) are those of `currency` when there is one currency only (the "
            "default currency, all zero, when no plan became ACTIVE), and null when there are several. Counts "
            "(`overdue_installments`, `overdue_by_bucket`, `success_rate`, `plans_by_status`) cover every currency. "
            "The figures are computed over whole tables in the background and served from a cache: at most "
            "90 seconds old by default, their age in seconds in the `Age` header; a 503 while their first "
            "computation is still under way."
        ),
        parameters=[AnalyticsQueryIn],
        responses={200: AnalyticsOut, **problems(400, 401, 403, 404)},
        examples=[OpenApiExample("Dashboard", value=ANALYTICS_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request) -> Response:
        query = AnalyticsQueryIn(data=request.query_params)
        query.is_valid(raise_exception=True)  # a 400 naming merchant_id, not a NUL sent to PostgreSQL
        plans, merchant = Plan.objects.all(), None
        if request.user.is_merchant:
            merchant = request.user
        elif merchant_id := query.validated_data.get("merchant_id"):
            merchant = User.objects.filter(user_id=merchant_id, role=User.Role.MERCHANT).first()
            if merchant is None:
                raise Http404("No merchant has this user_id.")
        if merchant is not None:
            plans = plans.filter(merchant=merchant)
        # Aggregates over many rows that may lag a little: the replica's work, when there is one,
        # and served from the cache (bnpl.analytics.figures_cached: at most FIGURES_CACHE_SECONDS
        # old, their age in the Age header; computed by one process at a time).
        with reading_from_replica():
            figures = figures_cached(
                dashboard_cache_name(merchant),
                lambda: merchant_dashboard(plans=plans, merchant=merchant),
                using=router.db_for_read(Plan),
            )
        headers = {} if figures.computed_at is None else {"Age": str(int(figures.age))}
        return Response(AnalyticsOut(figures.value).data, headers=headers)


SPENDING_POWER_EXAMPLE = {
    "user_status": "NORMAL",
    "by_currency": [
        {
            "currency": "EUR",
            "credit_limit": "5000.00",
            "outstanding": "0.00",
            "reserved": "300.00",
            "available": "4700.00",
        },
        {
            "currency": "USD",
            "credit_limit": "5000.00",
            "outstanding": "1200.00",
            "reserved": "500.00",
            "available": "3300.00",
        },
    ],
}


class SpendingPowerView(APIView):
    """The signed-in customer's credit, per currency (accounts' ``auth/me/`` is the profile)."""

    permission_classes = CUSTOMERS

    @extend_schema(
        operation_id="auth_me_spending_power",
        summary="Your spending power (customers): per currency, limit, owed, reserved and available",
        description=(
            "One entry per currency you owe or have reserved in, and the default currency: your `credit_limit` "
            "(the same in each), `outstanding` (unpaid installments and late fees due), `reserved` (offers "
            "awaiting your answer and authorized plans not yet captured) and `available`, what a new plan in "
            "that currency may total. Amounts in different currencies are never added together. A DEBT_USER "
            "may take no new plan until what is overdue is paid, whatever `available` says. Merchants and "
            "operators: 403."
        ),
        responses={200: SpendingPowerOut, **problems(401, 403)},
        examples=[OpenApiExample("Two currencies", value=SPENDING_POWER_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request) -> Response:
        positions = credit_positions(customer=request.user)
        return Response(
            SpendingPowerOut({"user_status": request.user.status, "by_currency": list(positions.values())}).data
        )
