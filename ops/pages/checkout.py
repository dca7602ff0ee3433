"""The hosted checkout page of an offer, ``/checkout/<token>/``: its customer reads the terms
(merchant, total, the schedule with dates and amounts, capture mode, expiry) and confirms or
declines (DESIGN §5, §6 "Plans"). The token is the secret in the link the customer was sent;
only that customer, signed in, sees the page: anyone else, and a link that is unknown, spent
or lapsed, gets the same 404.
"""

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from bnpl.errors import CreditDeclined
from bnpl.models import Plan
from bnpl.selectors import credit_position
from bnpl.services.checkout import plan_confirm, plan_decline
from core.problems import DomainError
from ops.pages.common import not_found, page

NOT_OPEN = (
    "This checkout link is not valid: the offer may have been confirmed, declined or expired, or be someone else's."
)
ACTIONS = ("confirm", "decline")


def _offer(request, token: str) -> Plan | None:
    """The signed-in customer's open offer behind ``token``, with its merchant; None otherwise."""
    if not request.user.is_customer:
        return None
    return (
        Plan.objects.select_related("merchant")
        .only(*(f.name for f in Plan._meta.concrete_fields), "merchant__user_id", "merchant__full_name")
        .filter(checkout_token=token, customer=request.user, status=Plan.Status.PENDING)
        .first()
    )


def _shop(plan: Plan) -> str:
    return plan.merchant.full_name or plan.merchant.user_id


def _context(request, plan: Plan, **more) -> dict:
    return {
        "plan": plan,
        "shop": _shop(plan),
        "schedule": plan.schedule_shown,
        "credit": credit_position(customer=request.user, currency=plan.currency, excluding_plan_id=plan.pk),
        **more,
    }


@never_cache  # one customer's offer: no shared cache may keep it
@require_http_methods(["GET", "HEAD", "POST"])
def checkout(request, token: str):
    """GET: the offer's page. POST ``action=confirm|decline``: the customer's answer, then
    their portal with the result; a refusal (409, 403, 422) is the page again, saying why."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url=reverse("login"))
    plan = _offer(request, token)
    if plan is None:
        return _already_answered(request) or not_found(request, NOT_OPEN)
    if request.method != "POST":
        if plan.expires_at is not None and plan.expires_at <= timezone.now():
            return not_found(request, NOT_OPEN)  # lapsed: the expiry task has not run yet
        return page(request, "pages/checkout.html", _context(request, plan))
    action = request.POST.get("action")
    if action not in ACTIONS:
        return page(
            request,
            "pages/checkout.html",
            _context(
                request,
                plan,
                error={"code": "validation_error", "field": "action", "detail": "Choose Confirm or Decline."},
            ),
            status=400,
        )
    shop = _shop(plan)
    try:
        if action == "confirm":
            plan = plan_confirm(plan_id=plan.pk, customer=request.user)
        else:
            plan = plan_decline(plan_id=plan.pk)
    except DomainError as exc:
        error = {"code": exc.code, "title": exc.title, "detail": exc.detail}
        if isinstance(exc, CreditDeclined):
            error["figures"] = exc.extra  # the customer's own: limit, owed, reserved, available
        return page(request, "pages/checkout.html", _context(request, plan, error=error), status=exc.status_code)
    messages.success(request, _result(plan, shop=shop))
    return redirect("home")


def _result(plan: Plan, *, shop: str) -> str:
    """What the customer's answer did, in a sentence for the portal."""
    if plan.status == Plan.Status.ACTIVE:
        first = plan.installments_in_order[0]
        return (
            f"Confirmed: plan #{plan.pk} with {shop} is active. The first installment, "
            f"{first.amount_due} {plan.currency}, is due on {first.due_date:%Y-%m-%d}."
        )
    if plan.status == Plan.Status.AUTHORIZED:
        return (
            f"Confirmed: plan #{plan.pk} with {shop} is authorized for {plan.amount_authorized} {plan.currency}. "
            "Nothing is due until the merchant captures it when your order ships."
        )
    return f"Declined: you owe nothing on the offer from {shop} (plan #{plan.pk})."


def _already_answered(request):
    """A second submit of the form (a double click, the back button): the plan it names, if
    it is this customer's, has been answered already; the portal says how."""
    if request.method != "POST" or not request.user.is_customer:
        return None
    plan_id = request.POST.get("plan", "")
    if not (plan_id.isascii() and plan_id.isdigit() and len(plan_id) < 19):
        return None
    plan = Plan.objects.filter(pk=int(plan_id), customer=request.user).only("pk", "status").first()
    if plan is None or plan.status == Plan.Status.PENDING:
        return None
    messages.info(request, f"Plan #{plan.pk} was answered already: it is {plan.get_status_display().lower()}.")
    return redirect("home")
