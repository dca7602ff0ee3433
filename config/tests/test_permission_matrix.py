"""Who may do what: every endpoint and method, for every role, on its own object and on a
foreign one, answers exactly the status the table below says (DESIGN §5).

Two disjoint worlds, made through the services: in world A ``customer`` bought from
``merchant``, in world B ``other customer`` from ``other merchant``. Each world has a
plan with installments, a payment, a pending refund, a late fee, a credit-balance
movement, a merchant event, and the day settled with its payout paid. A role's *own*
object is its world's, the *foreign* one the other world's; the anonymous caller and the
operator (who sees everything) are tried on world A's. A table cell is a pair
``(own, foreign)`` where an object is involved, else one status.

The worlds are made once for the module; each cell runs in a savepoint rolled back
after it, so a cell that pays, refunds or waives leaves nothing behind for the next. An
error answer must be a problem document; a list must show the caller's world's object
and never the other world's (both to an operator).

``test_every_route_and_method_has_a_row`` walks the URL resolver and tries every method
on every route: one that is served (anything but 405) and has no row fails the run, so
a new endpoint cannot slip in without saying who may call it. The admin is covered by a
coarser row per page list (``admin_rows``) and otherwise left to Django's admin, which
lets in staff only (operators) and checks its own model permissions.
"""

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.contrib import admin
from django.db import transaction
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.services import merchant_webhook_secret_rotate
from accounts.tests.factories import DEFAULT_PASSWORD, MerchantFactory, OperatorFactory, UserFactory
from bnpl.models import Installment, LateFee, Plan
from bnpl.schedule import business_today
from bnpl.services.checkout import Offer, plan_confirm, plan_offer
from bnpl.services.origination import plan_create
from bnpl.services.sweep import overdue_sweep
from conftest import PiiCheckingClient
from core.signatures import signature_header
from events.models import Event
from ledger.models import Posting
from payments.models import Payment
from payments.selectors import credit_transactions_for
from payments.services import payment_collect
from refunds.models import Refund
from refunds.services import refund_request, refund_status_apply
from settlements.models import Payout, Settlement
from settlements.services.payouts import payout_send
from settlements.tests.factories import settled

ROLES = ("anonymous", "customer", "other_customer", "merchant", "other_merchant", "operator")
PARTIES = ("customer", "other_customer", "merchant", "other_merchant")
PROBE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
ADMIN_PREFIX = "/admin/"


# --- The worlds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One world's parties and objects."""

    customer: User
    merchant: User
    plan: Plan
    installment: Installment  # unpaid
    payment: Payment
    refund: Refund  # pending
    late_fee: LateFee  # due
    credit: Posting  # a credit-balance movement
    event: Event
    offer: Plan  # PENDING: awaiting its customer
    authorization: Plan  # AUTHORIZED: awaiting its merchant's capture
    settlement: Settlement  # the merchant's day, settled
    payout: Payout  # its payout, paid

    def placeholders(self) -> dict:
        return {
            "token": self.offer.checkout_token,
            "user": self.customer.user_id,
            "plan": self.plan.pk,
            "installment": self.installment.pk,
            "payment": self.payment.pk,
            "refund": self.refund.pk,
            "late_fee": self.late_fee.pk,
            "credit": self.credit.pk,
            "event": self.event.public_id,
            "offer": self.offer.pk,
            "authorization": self.authorization.pk,
            "settlement": self.settlement.pk,
            "payout": self.payout.pk,
        }


@dataclass(frozen=True)
class World:
    a: Side
    b: Side
    operator: User
    tokens: dict

    def actor(self, role: str) -> User | None:
        return {
            "anonymous": None,
            "customer": self.a.customer,
            "other_customer": self.b.customer,
            "merchant": self.a.merchant,
            "other_merchant": self.b.merchant,
            "operator": self.operator,
        }[role]

    def side_of(self, role: str) -> Side:
        return self.b if role.startswith("other_") else self.a

    def other(self, side: Side) -> Side:
        return self.a if side is self.b else self.b


def _side(tag: str, operator: User) -> tuple[User, User, Plan, Plan, Plan, Payment, Refund]:
    """A customer and a merchant, and what they did together (late fees come with the sweep)."""
    customer = UserFactory(card_number="4111111111111111", credit_limit=Decimal("10000.00"))
    merchant = MerchantFactory(payout=True)  # a bank account: its settled day is paid out
    merchant_webhook_secret_rotate(merchant=merchant)

    plan = plan_create(customer=customer, merchant=merchant, total_amount=Decimal("300.00"), installment_count=3)
    first = plan.installments.get(sequence=1)
    payment = payment_collect(plan_id=plan.pk, installment_id=first.pk, payer=customer)
    refund, _ = refund_request(
        plan_id=plan.pk, transaction_id=f"rf-{tag}-pending", amount=Decimal("10.00"), reason="", requester=merchant
    )

    # 100.00 in 4, the first paid, 80.00 refunded as credit: 5.00 beyond the unpaid rest.
    credited = plan_create(customer=customer, merchant=merchant, total_amount=Decimal("100.00"), installment_count=4)
    payment_collect(plan_id=credited.pk, installment_id=credited.installments.get(sequence=1).pk, payer=customer)
    credit_refund, _ = refund_request(
        plan_id=credited.pk,
        transaction_id=f"rf-{tag}-credit",
        amount=Decimal("80.00"),
        reason="",
        requester=merchant,
        payout_method=Refund.PayoutMethod.CREDIT,
    )
    refund_status_apply(refund_id=credit_refund.pk, status=Refund.Status.APPROVED, source="operator", actor=operator)

    late = plan_create(
        customer=customer,
        merchant=merchant,
        total_amount=Decimal("400.00"),
        installment_count=4,
        purchase_date=business_today() - timedelta(days=75),
    )
    return customer, merchant, plan, late, credited, payment, refund


def build_world() -> World:
    operator = OperatorFactory()
    made = {tag: _side(tag, operator) for tag in ("a", "b")}
    overdue_sweep(late_fees=True)
    # Today's captures and refunds, settled; each merchant's payout sent (the worlds' outer
    # transaction never commits, so nothing sends it after a commit).
    settled()
    for payout in Payout.objects.order_by("pk"):
        payout_send(payout_id=payout.pk)
    sides = {}
    for tag, (customer, merchant, plan, late, _credited, payment, refund) in made.items():
        # Pay what is overdue (the fees stay due): the customer is NORMAL again and may buy.
        for overdue in late.installments.filter(status=Installment.Status.OVERDUE):
            payment_collect(plan_id=late.pk, installment_id=overdue.pk, payer=customer)
        customer.refresh_from_db()
        assert customer.status == User.Status.NORMAL
        sides[tag] = Side(
            customer=customer,
            merchant=merchant,
            plan=plan,
            installment=plan.installments.get(sequence=2),
            payment=payment,
            refund=refund,
            late_fee=LateFee.objects.filter(plan=late, status=LateFee.Status.DUE).first(),
            credit=credit_transactions_for(viewer=customer).first(),
            event=Event.objects.filter(merchant=merchant).order_by("id").first(),
            offer=plan_offer(customer=customer, merchant=merchant, offer=Offer(total_amount=Decimal("50.00")))[0],
            authorization=plan_confirm(
                plan_id=plan_offer(
                    customer=customer,
                    merchant=merchant,
                    offer=Offer(total_amount=Decimal("60.00"), capture_mode=Plan.CaptureMode.MANUAL),
                )[0].pk,
                customer=customer,
            ),
            settlement=Settlement.objects.get(merchant=merchant),
            payout=Payout.objects.get(merchant=merchant, status=Payout.Status.PAID),
        )
    users = [operator] + [user for side in sides.values() for user in (side.customer, side.merchant)]
    tokens = {user.pk: str(RefreshToken.for_user(user).access_token) for user in users}
    return World(a=sides["a"], b=sides["b"], operator=operator, tokens=tokens)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[World]:
    """Both worlds, once for the module, in a transaction rolled back at its end (each
    cell's own changes are rolled back to a savepoint inside it)."""
    from config.celery import app

    eager, app.conf.task_always_eager = app.conf.task_always_eager, True  # nothing for a worker to find
    try:
        with django_db_blocker.unblock(), transaction.atomic():
            yield build_world()
            transaction.set_rollback(True)
    finally:
        app.conf.task_always_eager = eager


@pytest.fixture(autouse=True)
def _ledger_holds_after_every_scenario(request):
    """The after-test ledger check (conftest.py), for the cells that may move money only:
    a read changes nothing, and the check costs more than most cells."""
    cell = request.node.callspec.params.get("cell") if hasattr(request.node, "callspec") else None
    if cell is not None and cell.row.method in ("GET", "HEAD", "OPTIONS"):
        yield
        return
    request.getfixturevalue("db")
    yield
    from ledger.checks import ledger_check

    report = ledger_check(record=False)
    assert report.ok, "ledger invariants broken after this test:\n" + "\n".join(report.breaches)


@pytest.fixture(autouse=True)
def _quiet_services(settings, eager_tasks):
    # Nothing queued for a worker (the webhook applies the refund at once), and the health
    # dashboard does not wait half a second on a Celery ping no worker answers.
    settings.CELERY_TASK_ALWAYS_EAGER = True


# --- Request bodies that pass validation, so the status says who, not what ------------------

Body = Callable[[Side, User | None], dict]


def plan_create_body(side: Side, actor: User | None) -> dict:
    body = {"user_id": side.customer.user_id, "merchant_id": side.merchant.user_id, "total_amount": "100.00"}
    if actor is not None and actor.is_merchant:
        del body["merchant_id"]  # a merchant sells as itself
    return body


def me_update_body(side: Side, actor: User | None) -> dict:
    # Operators have nothing to change here: the customer's field is refused (400), by name.
    if actor and actor.is_merchant:
        return {
            "webhook_url": "https://shop.example.com/bnpl",
            "payout_account": "DE89 3704 0044 0532 0130 00",
            "payout_account_name": "Matrix Shop",
        }
    return {"autopay": False}


def register_body(side: Side, actor: User | None) -> dict:
    return {
        "username": "matrix-newcomer",
        "password": "s3cure-pass-phrase",
        "role": "CUSTOMER",
        "full_name": "New Comer",
        "phone_number": "+998901110099",
        "email": "newcomer@example.com",
    }


def token_body(side: Side, actor: User | None) -> dict:
    return {"username": side.customer.username, "password": DEFAULT_PASSWORD}


def refresh_body(side: Side, actor: User | None) -> dict:
    return {"refresh": str(RefreshToken.for_user(side.customer))}


def refund_body(side: Side, actor: User | None) -> dict:
    return {"plan_id": side.plan.pk, "transaction_id": "rf-matrix", "amount": "5.00", "reason": "Returned"}


def webhook_body(side: Side, actor: User | None) -> dict:
    return {"refund_id": side.refund.transaction_id, "status": "approved"}


def empty_body(side: Side, actor: User | None) -> dict:
    return {}


def confirm_body(side: Side, actor: User | None) -> dict:
    return {"action": "confirm"}


def pay_form_body(side: Side, actor: User | None) -> dict:
    return {"key": "matrix-pay-form-key-0001"}


def plan_pay_body(side: Side, actor: User | None) -> dict:
    return {"amount": "10.00"}


def waive_body(side: Side, actor: User | None) -> dict:
    return {"reason": "Hospital stay"}


# --- The table -------------------------------------------------------------------------------

Status = int | tuple[int, int]


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # placeholders: {user} {plan} {installment} {payment} {refund} {late_fee} {credit} {event}
    # {offer} {authorization} {settlement} {payout}
    expect: dict[str, Status]
    body: Body | None = None
    via: str = "jwt"  # "jwt": a bearer token; "session": logged in (admin); "webhook": signed by the caller
    object_in_body: bool = False  # the object is named in the body, not the path
    page: bool = False  # a page for people: a form's body, and its errors are pages too (HTML)
    lists: tuple[str, str] | None = None  # a list: (placeholder, result field) of the objects it shows
    accept: str | None = None  # asks for another representation than JSON (Accept), e.g. the CSV file

    @property
    def about_an_object(self) -> bool:
        return self.object_in_body or "{" in self.path


def rows(methods: str, path: str, *statuses: Status, **options) -> list[Row]:
    """One row per method in ``methods`` ("GET HEAD"), statuses in ROLES order."""
    assert len(statuses) == len(ROLES), path
    return [Row(method, path, dict(zip(ROLES, statuses, strict=True)), **options) for method in methods.split()]


OK2 = (200, 200)  # own and foreign alike: nothing about the object is read
MINE = (200, 404)  # yours, or a 404 (DESIGN §5: outside your scope is a 404)
PAID = (201, 404)  # yours paid (or refunded), the other's a 404
NO = (403, 403)  # your role may not, whoever's object it is
NOSIG = (401, 401)  # no webhook secret to sign with: not a merchant
HIDDEN = (404, 404)  # a page about someone else's object: not found, own world or not
DONE = (302, 404)  # yours done, then on to the portal; the other's a 404

# fmt: off
# The columns are ROLES: anonymous, customer, other customer, merchant, other merchant, operator.
#          methods             path                                      anon   cust   other  merch  other  operator
TABLE: list[Row] = [
    # The home page: anyone, signed in (the admin's session) or not; the page differs, not the answer.
    *rows("GET HEAD",         "/",                                       200,   200,   200,   200,   200,   200,
          via="session"),
    # Session sign-in and sign-out: anyone; someone signed in already goes on (home).
    *rows("GET HEAD",         "/login/",                                 200,   302,   302,   302,   302,   302,
          via="session", page=True),
    *rows("POST",             "/login/",                                 302,   302,   302,   302,   302,   302,
          via="session", page=True, body=token_body),
    *rows("POST",             "/logout/",                                302,   302,   302,   302,   302,   302,
          via="session", page=True),
    # The hosted checkout of an offer: its customer only (anonymous: sent to sign in), else a 404.
    *rows("GET HEAD",         "/checkout/{token}/",                      302,   MINE,  MINE,  HIDDEN, HIDDEN, 404,
          via="session", page=True),
    *rows("POST",             "/checkout/{token}/",                      302,   DONE,  DONE,  HIDDEN, HIDDEN, 404,
          via="session", page=True, body=confirm_body),
    # The portal's pay form: the installment's customer only.
    *rows("POST",             "/installments/{installment}/pay/",        302,   DONE,  DONE,  HIDDEN, HIDDEN, 404,
          via="session", page=True, body=pay_form_body),
    # Probes, metrics, the API's description: no object, no scope.
    *rows("GET",              "/healthz",                                200,   200,   200,   200,   200,   200),
    *rows("GET",              "/readyz",                                 200,   200,   200,   200,   200,   200),
    *rows("GET HEAD OPTIONS", "/metrics",                                401,   403,   403,   403,   403,   200),
    *rows("GET HEAD OPTIONS", "/api/schema/",                            200,   200,   200,   200,   200,   200),
    *rows("GET HEAD",         "/swagger/",                               200,   200,   200,   200,   200,   200),
    *rows("GET HEAD",         "/redoc/",                                 200,   200,   200,   200,   200,   200),
    *rows("GET",              "/api/v1/health/",                         200,   200,   200,   200,   200,   200),
    # The merchant's signed refund-status webhook: the caller signs with its own secret.
    *rows("POST",             "/webhook/refund-status/",                 401,   NOSIG, NOSIG, MINE,  MINE,  401,
          body=webhook_body, via="webhook", object_in_body=True),
    # Credentials: anyone (a bearer token is not even read).
    *rows("POST",             "/api/v1/auth/register/",                  201,   201,   201,   201,   201,   201,
          body=register_body),
    *rows("OPTIONS",          "/api/v1/auth/register/",                  200,   200,   200,   200,   200,   200),
    *rows("POST",             "/api/v1/auth/token/",                     200,   200,   200,   200,   200,   200,
          body=token_body),
    *rows("OPTIONS",          "/api/v1/auth/token/",                     200,   200,   200,   200,   200,   200),
    *rows("POST",             "/api/v1/auth/token/refresh/",             200,   200,   200,   200,   200,   200,
          body=refresh_body),
    *rows("OPTIONS",          "/api/v1/auth/token/refresh/",             200,   200,   200,   200,   200,   200),
    *rows("POST",             "/api/v1/auth/logout/",                    204,   204,   204,   204,   204,   204,
          body=refresh_body),
    *rows("OPTIONS",          "/api/v1/auth/logout/",                    200,   200,   200,   200,   200,   200),
    *rows("GET HEAD OPTIONS", "/api/v1/auth/me/",                        401,   200,   200,   200,   200,   200),
    *rows("PATCH",            "/api/v1/auth/me/",                        401,   200,   200,   200,   200,   400,
          body=me_update_body),
    *rows("GET HEAD OPTIONS", "/api/v1/auth/me/spending-power/",         401,   200,   200,   403,   403,   403),
    # Users and debt: customers themselves, merchants the customers of their plans.
    *rows("GET HEAD OPTIONS", "/api/v1/users/",                          401,   200,   200,   200,   200,   200,
          lists=("user", "user_id")),
    *rows("GET HEAD",         "/api/v1/users/{user}/",                   401,   MINE,  MINE,  MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/users/{user}/",                   401,   OK2,   OK2,   OK2,   OK2,   200),
    *rows("GET HEAD",         "/api/v1/debt/{user}/",                    401,   MINE,  MINE,  MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/debt/{user}/",                    401,   OK2,   OK2,   OK2,   OK2,   200),
    *rows("GET HEAD OPTIONS", "/api/v1/analytics/dashboard/",            401,   403,   403,   200,   200,   200),
    # Plans and installments.
    *rows("GET HEAD OPTIONS", "/api/v1/plans/",                          401,   200,   200,   200,   200,   200,
          lists=("plan", "id")),
    *rows("POST",             "/api/v1/plans/",                          401,   403,   403,   201,   201,   201,
          body=plan_create_body),
    # Consent: the plan's customer confirms or declines an offer; its merchant captures or voids.
    *rows("POST",             "/api/v1/plans/{offer}/confirm/",          401,   MINE,  MINE,  NO,    NO,    403,
          body=empty_body),
    *rows("POST",             "/api/v1/plans/{offer}/decline/",          401,   MINE,  MINE,  NO,    NO,    403,
          body=empty_body),
    *rows("OPTIONS",          "/api/v1/plans/{offer}/confirm/",          401,   OK2,   OK2,   NO,    NO,    403),
    *rows("OPTIONS",          "/api/v1/plans/{offer}/decline/",          401,   OK2,   OK2,   NO,    NO,    403),
    *rows("POST",             "/api/v1/plans/{authorization}/capture/",  401,   NO,    NO,    MINE,  MINE,  200,
          body=empty_body),
    *rows("POST",             "/api/v1/plans/{authorization}/void/",     401,   NO,    NO,    MINE,  MINE,  200,
          body=empty_body),
    *rows("OPTIONS",          "/api/v1/plans/{authorization}/capture/",  401,   NO,    NO,    OK2,   OK2,   200),
    *rows("OPTIONS",          "/api/v1/plans/{authorization}/void/",     401,   NO,    NO,    OK2,   OK2,   200),
    *rows("GET HEAD",         "/api/v1/plans/{plan}/",                   401,   MINE,  MINE,  MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/plans/{plan}/",                   401,   OK2,   OK2,   OK2,   OK2,   200),
    *rows("POST",             "/api/v1/plans/{plan}/pay/",               401,   PAID,  PAID,  NO,    NO,    201,
          body=plan_pay_body),
    *rows("OPTIONS",          "/api/v1/plans/{plan}/pay/",               401,   OK2,   OK2,   NO,    NO,    200),
    *rows("GET HEAD OPTIONS", "/api/v1/installments/",                   401,   200,   200,   200,   200,   200,
          lists=("installment", "id")),
    *rows("GET HEAD",         "/api/v1/installments/{installment}/",     401,   MINE,  MINE,  MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/installments/{installment}/",     401,   OK2,   OK2,   OK2,   OK2,   200),
    *rows("POST",             "/api/v1/installments/{installment}/pay/", 401,   PAID,  PAID,  NO,    NO,    201,
          body=empty_body),
    *rows("OPTIONS",          "/api/v1/installments/{installment}/pay/", 401,   OK2,   OK2,   NO,    NO,    200),
    # Late fees: read in scope, waived by operators only.
    *rows("GET HEAD OPTIONS", "/api/v1/late-fees/",                      401,   200,   200,   200,   200,   200,
          lists=("late_fee", "id")),
    *rows("GET HEAD",         "/api/v1/late-fees/{late_fee}/",           401,   MINE,  MINE,  MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/late-fees/{late_fee}/",           401,   OK2,   OK2,   OK2,   OK2,   200),
    *rows("POST OPTIONS",     "/api/v1/late-fees/{late_fee}/waive/",     401,   NO,    NO,    NO,    NO,    200,
          body=waive_body),
    # Payments and credit-balance movements.
    *rows("GET HEAD OPTIONS", "/api/v1/payments/",                       401,   200,   200,   200,   200,   200,
          lists=("payment", "id")),
    *rows("GET HEAD",         "/api/v1/payments/{payment}/",             401,   MINE,  MINE,  MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/payments/{payment}/",             401,   OK2,   OK2,   OK2,   OK2,   200),
    *rows("GET HEAD OPTIONS", "/api/v1/credit-transactions/",            401,   200,   200,   200,   200,   200,
          lists=("credit", "id")),
    *rows("GET HEAD",         "/api/v1/credit-transactions/{credit}/",   401,   MINE,  MINE,  MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/credit-transactions/{credit}/",   401,   OK2,   OK2,   OK2,   OK2,   200),
    # Refunds: merchants and operators request (on a plan in scope), operators decide.
    *rows("GET HEAD OPTIONS", "/api/v1/refunds/",                        401,   200,   200,   200,   200,   200,
          lists=("refund", "id")),
    *rows("POST",             "/api/v1/refunds/",                        401,   NO,    NO,    PAID,  PAID,  201,
          body=refund_body, object_in_body=True),
    *rows("GET HEAD",         "/api/v1/refunds/{refund}/",               401,   MINE,  MINE,  MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/refunds/{refund}/",               401,   OK2,   OK2,   OK2,   OK2,   200),
    *rows("POST",             "/api/v1/refunds/{refund}/approve/",       401,   NO,    NO,    NO,    NO,    200,
          body=empty_body),
    *rows("OPTIONS",          "/api/v1/refunds/{refund}/approve/",       401,   OK2,   OK2,   OK2,   OK2,   200),
    *rows("POST",             "/api/v1/refunds/{refund}/reject/",        401,   NO,    NO,    NO,    NO,    200,
          body=empty_body),
    *rows("OPTIONS",          "/api/v1/refunds/{refund}/reject/",        401,   OK2,   OK2,   OK2,   OK2,   200),
    # Merchant events: merchants their own, operators all, customers none.
    *rows("GET HEAD OPTIONS", "/api/v1/events/",                         401,   403,   403,   200,   200,   200,
          lists=("event", "id")),
    *rows("GET HEAD",         "/api/v1/events/{event}/",                 401,   NO,    NO,    MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/events/{event}/",                 401,   NO,    NO,    OK2,   OK2,   200),
    # Settlements and payouts: merchants their own, operators all, customers none; a
    # settlement's lines as JSON pages or as the CSV file, refused alike (as problems).
    *rows("GET HEAD OPTIONS", "/api/v1/settlements/",                    401,   403,   403,   200,   200,   200,
          lists=("settlement", "id")),
    *rows("GET HEAD",         "/api/v1/settlements/{settlement}/",       401,   NO,    NO,    MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/settlements/{settlement}/",       401,   NO,    NO,    OK2,   OK2,   200),
    *rows("GET HEAD",         "/api/v1/settlements/{settlement}/lines/", 401,   NO,    NO,    MINE,  MINE,  200),
    *rows("GET HEAD",         "/api/v1/settlements/{settlement}/lines/", 401,   NO,    NO,    MINE,  MINE,  200,
          accept="text/csv"),
    *rows("OPTIONS",          "/api/v1/settlements/{settlement}/lines/", 401,   NO,    NO,    OK2,   OK2,   200),
    *rows("GET HEAD OPTIONS", "/api/v1/payouts/",                        401,   403,   403,   200,   200,   200,
          lists=("payout", "id")),
    *rows("GET HEAD",         "/api/v1/payouts/{payout}/",               401,   NO,    NO,    MINE,  MINE,  200),
    *rows("OPTIONS",          "/api/v1/payouts/{payout}/",               401,   NO,    NO,    OK2,   OK2,   200),
]
# fmt: on


def admin_rows() -> list[Row]:
    """The admin, coarsely: its index and every model's list, staff (operators) only; the
    rest are sent to the login page. Logged in with a session, as the admin is used."""
    pages = [ADMIN_PREFIX] + [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist") for model in admin.site._registry
    ]
    return [row for page in pages for row in rows("GET", page, 302, 302, 302, 302, 302, 200, via="session")]


@dataclass(frozen=True)
class Cell:
    row: Row
    role: str
    target: str | None  # "own", "foreign", or None (no object, or anyone's)

    @property
    def expected(self) -> int:
        status = self.row.expect[self.role]
        return status[("own", "foreign").index(self.target)] if isinstance(status, tuple) else status

    @property
    def id(self) -> str:
        return ":".join(filter(None, (self.row.method, self.row.path, self.row.accept, self.role, self.target)))


def cells_of(row: Row) -> list[Cell]:
    out = []
    for role in ROLES:
        status = row.expect[role]
        if row.about_an_object and role in PARTIES:
            assert isinstance(status, tuple), f"{row.method} {row.path}: {role} needs (own, foreign)"
            out += [Cell(row, role, "own"), Cell(row, role, "foreign")]
        else:
            assert isinstance(status, int), f"{row.method} {row.path}: {role} has no own or foreign object"
            out.append(Cell(row, role, None))
    return out


ALL_ROWS = TABLE + admin_rows()
CELLS = [cell for row in ALL_ROWS for cell in cells_of(row)]
# Raised or lowered with the table, on purpose: the count is reported by CI.
EXPECTED_CELLS = 1202  # + the merchant pricing changes admin list, + the four settlements admin lists,
# + settlements (their lines as JSON and as CSV) and payouts


# --- Calling ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clients() -> dict:
    """One client of each kind for the whole module: a test client loads the middleware
    when made, and WhiteNoise's scan of the static files then costs more than most cells.
    Credentials go with each request; the session client's cookies are reset per cell."""
    # The admin's pages are checked for masking by their own tests (accounts/tests/test_admin.py);
    # its icons' SVG paths read like phone numbers to the response check.
    return {"api": PiiCheckingClient(), "session": Client()}


def call(world: World, clients: dict, cell: Cell):
    """Send the cell's request as its role, on its target, with a valid body."""
    row, actor = cell.row, world.actor(cell.role)
    mine = world.side_of(cell.role)
    side = world.other(mine) if cell.target == "foreign" else mine
    client = clients["session" if row.via == "session" else "api"]
    client.cookies.clear()
    headers = {}
    if actor is not None and row.via == "jwt":
        headers["HTTP_AUTHORIZATION"] = f"Bearer {world.tokens[actor.pk]}"
    if actor is not None and row.via == "session":
        client.force_login(actor)  # a session row of this cell's own, rolled back with it
    if row.accept:
        headers["HTTP_ACCEPT"] = row.accept
    if row.page:  # a form, as a browser sends it
        path = row.path.format(**side.placeholders())
        body = urlencode(row.body(side, actor)) if row.body else ""
        return client.generic(row.method, path, body, content_type="application/x-www-form-urlencoded")
    payload = json.dumps(row.body(side, actor)).encode() if row.body else b""
    if actor is not None and row.via == "webhook":
        headers = {
            "HTTP_BNPL_MERCHANT": actor.user_id,
            "HTTP_BNPL_SIGNATURE": signature_header(actor.webhook_secret, int(time.time()), payload),
        }
    path = row.path.format(**side.placeholders()) + ("?page_size=100" if row.lists else "")
    return client.generic(row.method, path, payload, content_type="application/json", **headers)


@pytest.mark.parametrize("cell", CELLS, ids=[cell.id for cell in CELLS])
def test_cell(world, clients, cell, db):
    response = call(world, clients, cell)

    assert response.status_code == cell.expected, (
        f"{cell.id}: expected {cell.expected}, got {response.status_code}: {response.content[:300]!r}"
    )
    if response.status_code >= 400 and cell.row.method != "HEAD" and cell.row.page:
        assert response["Content-Type"].startswith("text/html"), response["Content-Type"]  # a page that says why
    elif response.status_code >= 400 and cell.row.method != "HEAD":
        assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
        assert json.loads(response.content)["status"] == response.status_code
    elif response.status_code == 200 and cell.row.accept:
        assert response["Content-Type"].startswith(cell.row.accept), response["Content-Type"]  # what was asked for
    if cell.row.lists and cell.row.method == "GET" and response.status_code == 200:
        # A list shows what is in scope: your world's object, never the other's; all to operators.
        placeholder, field = cell.row.lists
        shown = {str(item[field]) for item in response.json()["results"]}
        mine = world.side_of(cell.role)
        own, foreign = (str(side.placeholders()[placeholder]) for side in (mine, world.other(mine)))
        assert own in shown, f"{cell.id}: its own {placeholder} {own} is not listed"
        assert (foreign in shown) == (cell.role == "operator"), f"{cell.id}: {placeholder} {foreign} of the other world"


def test_a_customer_shared_with_another_merchant_opens_none_of_the_first_merchants_rows(world, clients, db):
    """The customer of world A buys from the other merchant too: that merchant now sees the
    customer, and still nothing of what the customer did with world A's merchant."""
    a, b = world.a, world.b
    shared = plan_create(customer=a.customer, merchant=b.merchant, total_amount=Decimal("50.00"), installment_count=2)
    client = clients["api"]

    def status(user: User, path: str) -> int:
        return client.get(path, HTTP_AUTHORIZATION=f"Bearer {world.tokens[user.pk]}").status_code

    assert status(b.merchant, f"/api/v1/users/{a.customer.user_id}/") == 200
    assert status(b.merchant, f"/api/v1/plans/{shared.pk}/") == 200
    assert status(a.customer, f"/api/v1/plans/{shared.pk}/") == 200
    assert status(a.merchant, f"/api/v1/plans/{shared.pk}/") == 404
    for path in TABLE_PATHS_OF_A_PLAN:
        assert status(b.merchant, path.format(**a.placeholders())) == 404, path
    listed = client.get("/api/v1/plans/?page_size=100", HTTP_AUTHORIZATION=f"Bearer {world.tokens[b.merchant.pk]}")
    assert {plan["id"] for plan in listed.json()["results"]} == set(
        Plan.objects.filter(merchant=b.merchant).values_list("pk", flat=True)
    )


TABLE_PATHS_OF_A_PLAN = [
    "/api/v1/plans/{plan}/",
    "/api/v1/installments/{installment}/",
    "/api/v1/payments/{payment}/",
    "/api/v1/refunds/{refund}/",
    "/api/v1/late-fees/{late_fee}/",
    "/api/v1/credit-transactions/{credit}/",
]


def test_the_matrix_has_the_cells_it_says():
    assert len(CELLS) == EXPECTED_CELLS, f"the matrix has {len(CELLS)} cells; update EXPECTED_CELLS"


# --- Completeness ----------------------------------------------------------------------------


def _routes(resolver: URLResolver | None = None, prefix: str = "/") -> Iterator[str]:
    """Every URL pattern, as a path with ``{}`` for each parameter."""
    for pattern in (resolver or get_resolver()).url_patterns:
        route = prefix + _plain(str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern, route)
        else:
            yield route


def _plain(pattern: str) -> str:
    pattern = re.sub(r"\(\?P<\w+>[^)]*\)|<(?:\w+:)?\w+>", "{}", pattern)
    return pattern.replace("^", "").replace("$", "").replace("\\", "")


def _shape(path: str) -> str:
    return re.sub(r"\{\w+\}", "{}", path)


def test_every_route_and_method_has_a_row(world, clients, db):
    """Each route the resolver serves, with each method it answers (not 405, asked as an
    operator, who passes every role check but the customer's own: those routes are asked as
    the customer), has a row; and every row names a served route and method."""
    routes = {route for route in _routes() if not route.startswith(ADMIN_PREFIX)}
    by_shape: dict[str, list[Row]] = {}
    for row in TABLE:
        by_shape.setdefault(_shape(row.path), []).append(row)

    assert sorted(set(by_shape) - routes) == [], "rows for routes that do not exist"
    assert sorted(routes - set(by_shape)) == [], "routes without a row"

    client = clients["api"]
    unlisted, stale = [], []
    for shape, listed in sorted(by_shape.items()):
        path = listed[0].path.format(**world.a.placeholders())
        methods = {row.method for row in listed}
        prober = world.operator if listed[0].expect["operator"] != 403 else world.a.customer
        bearer = f"Bearer {world.tokens[prober.pk]}"
        for method in PROBE_METHODS:
            with transaction.atomic():  # whatever the probe changes is undone
                served = client.generic(method, path, HTTP_AUTHORIZATION=bearer).status_code != 405
                transaction.set_rollback(True)
            if served and method not in methods:
                unlisted.append(f"{method} {shape}")
            if not served and method in methods:
                stale.append(f"{method} {shape}")
    assert unlisted == [], "served without a row in the table"
    assert stale == [], "rows for methods the route does not serve"
