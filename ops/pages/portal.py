"""The home page, ``/``: a landing page for anonymous visitors (what the service is, how to
sign in, the API's documentation and the health dashboard); for a signed-in customer their
portal (offers to answer, plans with their next due date and what is left, paying an
installment, debt status and spending power); for a merchant the plans they sold, by status,
and their latest settlements (each with its CSV file) and payouts; for an operator the way to
the admin (DESIGN §5). Each reads a fixed number of queries, whatever the number of plans,
settlements and payouts.
"""

import re
import secrets

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from accounts.models import User
from bnpl.models import Installment, Plan
from bnpl.selectors import credit_positions, debt_status_for
from core.problems import DomainError
from ops.pages.common import not_found, page
from payments.services import PaymentDeclined, payment_collect
from settlements.models import Payout, Settlement
from settlements.selectors import payouts_visible, settlements_visible

PLAN_COLUMNS = tuple(field.name for field in Plan._meta.concrete_fields)
# Plans the customer still has to answer, or owes on, or awaits the merchant's capture of.
LIVE = (Plan.Status.PENDING, Plan.Status.AUTHORIZED, Plan.Status.ACTIVE)
FINISHED_SHOWN = 10
MERCHANT_PAGE_SIZE = 25
# The merchant's latest settlements and payouts on the page; every one of them is in the API.
SETTLEMENTS_SHOWN = 10
PAYOUTS_SHOWN = 10
# The pay form's key: made per render (secrets.token_urlsafe(16), 22 characters), so a double
# submit of one form pays once and a new render may pay again. At most 32: with its prefix it
# fits the payment's 64-character gateway key.
PAY_KEY = re.compile(r"[A-Za-z0-9_-]{16,32}")


@never_cache  # it shows one person's money: no shared cache may keep it
# It changes nothing and answers no unsafe method: a POST is told 405, not refused for its CSRF token.
@csrf_exempt
@require_safe
def home(request):
    """``GET /`` (and HEAD): the landing page, or the signed-in user's portal. A merchant's
    unknown ``?status=`` is a 400 page naming it, with every plan listed."""
    user = request.user
    if user.is_authenticated and user.is_customer:
        return page(request, "home.html", {"customer": customer_portal(user)})
    if user.is_authenticated and user.is_merchant:
        context, error = merchant_portal(user, request.GET)
        return page(request, "home.html", {"merchant": context, "filter_error": error}, status=400 if error else 200)
    return page(request, "home.html")


def customer_portal(customer: User) -> dict:
    """What the customer's portal shows, in six queries: their live plans with installments
    (two), the last few finished ones, their debt status (two, of which one reads only what
    is overdue) and their credit per currency (one)."""
    now = timezone.now()
    live = list(
        Plan.objects.filter(customer=customer, status__in=LIVE)
        .select_related("merchant")
        .only(*PLAN_COLUMNS, "merchant__user_id", "merchant__full_name")
        .prefetch_related(Prefetch("installments", queryset=Installment.objects.order_by("sequence")))
        .order_by("-created_at", "-id")
    )
    finished = list(
        Plan.objects.filter(customer=customer)
        .exclude(status__in=LIVE)
        .select_related("merchant")
        .only(*PLAN_COLUMNS, "merchant__user_id", "merchant__full_name")
        .order_by("-updated_at", "-id")[:FINISHED_SHOWN]
    )
    offers = [plan for plan in live if plan.status == Plan.Status.PENDING and not _lapsed(plan, now)]
    debt = debt_status_for(customer=customer)
    # Amounts are never added across currencies: each overdue row carries its plan's.
    currencies = {plan.pk: plan.currency for plan in live}
    overdue = [row | {"currency": currencies.get(row["plan_id"], "")} for row in debt.overdue_installments]
    return {
        "offers": [{"plan": plan, "shop": _shop(plan), "schedule": plan.schedule_shown} for plan in offers],
        "plans": [_plan_row(plan) for plan in live if plan.status != Plan.Status.PENDING],
        "finished": [{"plan": plan, "shop": _shop(plan)} for plan in finished],
        "debt": debt,
        "overdue": overdue,
        "credit": list(credit_positions(customer=customer).values()),
    }


def _lapsed(plan: Plan, now) -> bool:
    return plan.expires_at is not None and plan.expires_at <= now


def _shop(plan: Plan) -> str:
    return plan.merchant.full_name or plan.merchant.user_id


def _plan_row(plan: Plan) -> dict:
    """An ACTIVE or AUTHORIZED plan as the portal lists it: what is left, the next installment
    due and, when some of it may be paid now, a pay form for it with a fresh key."""
    row = {"plan": plan, "shop": _shop(plan), "remaining": None, "next": None, "payable": None, "pay_key": None}
    if plan.status != Plan.Status.ACTIVE:
        return row
    row["remaining"] = plan.installments_remaining
    open_ones = sorted(
        (
            i
            for i in plan.installments_in_order
            if i.status in (Installment.Status.OVERDUE, Installment.Status.UPCOMING)
        ),
        key=lambda i: (i.due_date, i.sequence),
    )
    if open_ones:
        nxt = open_ones[0]
        row["next"] = nxt
        row["payable"] = nxt.amount_remaining - nxt.amount_reserved
        if row["payable"] > 0:
            row["pay_key"] = secrets.token_urlsafe(16)
    return row


def merchant_portal(merchant: User, query) -> tuple[dict, dict | None]:
    """The plans ``merchant`` sold, newest first, ``?status=`` filtered and ``?page=`` paged,
    with the count in each status (three queries), and their latest settlements and payouts
    (one query each). The error names a bad ``status``."""
    counts = dict(
        Plan.objects.filter(merchant=merchant)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    statuses = [{"value": value, "label": label, "count": counts.get(value, 0)} for value, label in Plan.Status.choices]
    status = query.get("status", "")
    error = None
    plans = Plan.objects.filter(merchant=merchant)
    if status and status not in Plan.Status.values:
        error = {
            "code": "validation_error",
            "field": "status",
            "detail": f"Unknown status {status!r}: choose one of {', '.join(Plan.Status.values)}.",
        }
        status = ""
    if status:
        plans = plans.filter(status=status)
    plans = plans.select_related("customer").only(*PLAN_COLUMNS, "customer__user_id").order_by("-created_at", "-id")
    listed = Paginator(plans, MERCHANT_PAGE_SIZE).get_page(query.get("page"))
    settlements, more_settlements = _latest(
        settlements_visible(merchant).order_by("-business_date", "currency", "-id"), SETTLEMENTS_SHOWN
    )
    payouts, more_payouts = _latest(payouts_visible(merchant).order_by("-created_at", "-id"), PAYOUTS_SHOWN)
    context = {
        "statuses": statuses,
        "status": status,
        "total": sum(counts.values()),
        "listed": listed,
        "settlements": [{"settlement": s, "payout": _payout_of(s)} for s in settlements],
        "more_settlements": more_settlements,
        "payouts": payouts,
        "more_payouts": more_payouts,
        "a_payout_failed": any(payout.status == Payout.Status.FAILED for payout in payouts),
    }
    return context, error


def _latest(rows, shown: int) -> tuple[list, bool]:
    """The first ``shown`` of ``rows`` and whether there are more, in one query: one row more
    is read instead of counting them all."""
    rows = list(rows[: shown + 1])
    return rows[:shown], len(rows) > shown


def _payout_of(settlement: Settlement) -> Payout | None:
    # The selector joins the payout: no query here, None when nothing was paid out.
    try:
        return settlement.payout
    except Payout.DoesNotExist:
        return None


@never_cache
@require_POST
def installment_pay(request, pk: int):
    """``POST /installments/<id>/pay/`` from the customer's portal: pay what is left of one of
    their installments, as ``POST /api/v1/installments/{id}/pay/`` does. The form's ``key``
    makes a double submit pay once. Then the portal, saying what happened; a refusal (a
    declined card's code, nothing left to pay, the gateway down) is the portal again with
    the status of the refusal."""
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("home"), login_url=reverse("login"))
    customer = request.user
    if not customer.is_customer:
        return not_found(request, "Only customers pay installments here.")
    found = Installment.objects.filter(pk=pk, plan__customer=customer).values_list("plan_id", "sequence").first()
    if found is None:
        return not_found(request, "You have no such installment.")
    plan_id, sequence = found
    key = request.POST.get("key", "")
    if not PAY_KEY.fullmatch(key):
        return _portal_again(
            request,
            {
                "code": "validation_error",
                "field": "key",
                "detail": "The form is incomplete: reload the page and pay again.",
            },
            400,
        )
    try:
        payment = payment_collect(
            plan_id=plan_id,
            installment_id=pk,
            payer=customer,
            # Scoped to the customer: a key is theirs alone, and the same key is the same payment.
            gateway_key=f"page_{customer.pk}_{key}",
        )
    except PaymentDeclined as exc:
        code = exc.extra.get("decline_code", "")
        detail = f"Your card was declined ({code}). Nothing was charged; try again or use another card."
        return _portal_again(request, {"code": exc.code, "decline_code": code, "detail": detail}, exc.status_code)
    except DomainError as exc:
        return _portal_again(request, {"code": exc.code, "title": exc.title, "detail": exc.detail}, exc.status_code)
    messages.success(
        request,
        f"Paid {payment.amount} {payment.currency} for installment {sequence} of plan #{plan_id}. Thank you.",
    )
    return redirect("home")


def _portal_again(request, error: dict, status: int):
    return page(request, "home.html", {"customer": customer_portal(request.user), "pay_error": error}, status=status)
