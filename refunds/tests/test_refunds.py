import json
import time
from decimal import Decimal

import pytest
from django.test import Client

from accounts.models import User
from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Installment, Plan
from core.signatures import sign
from ledger.accounts import CUSTOMER_RECEIVABLE, GATEWAY_CLEARING, MERCHANT_PAYABLE
from ledger.models import JournalEntry
from ledger.tests.books import balance, entries, money_state
from payments.tests.gateways import RecordingGateway
from refunds.models import Refund, RefundEvent
from refunds.services import refund_status_apply
from refunds.tests.factories import refund_requested

pytestmark = pytest.mark.django_db

REFUNDS = "/api/v1/refunds/"
WEBHOOK = "/webhook/refund-status/"


@pytest.fixture
def merchant(db):
    return MerchantFactory(webhook_secret="whsec_test_secret")


def request_refund(client, plan, amount="80.00", transaction_id="rf-1", **extra):
    body = {"plan_id": plan.pk, "transaction_id": transaction_id, "amount": amount, "reason": "returned", **extra}
    return client.post(REFUNDS, body, format="json")


def test_worked_example_first_paid_then_80_refunded(as_user, make_plan, merchant, operator, settings):
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.RecordingGateway"
    RecordingGateway.clear()
    customer = UserFactory()
    plan = make_plan(customer=customer, merchant=merchant, total="100.00", count=4)
    assert (
        as_user(customer)
        .post(f"/api/v1/installments/{plan.installments.get(sequence=1).pk}/pay/", {}, format="json")
        .status_code
        == 201
    )
    created = request_refund(as_user(merchant), plan)
    assert created.status_code == 201
    assert created.json()["status"] == "PENDING"

    approved = as_user(operator).post(f"{REFUNDS}{created.json()['id']}/approve/")

    assert approved.status_code == 200, approved.content
    body = approved.json()
    assert (body["status"], body["applied_amount"], body["payout_amount"], body["payout_status"]) == (
        "APPROVED",
        "75.00",
        "5.00",
        "PAID",
    )
    rows = list(plan.installments.order_by("sequence").values_list("status", "amount_due"))
    assert rows == [("PAID", Decimal("25.00"))] + [("CANCELLED", Decimal("0.00"))] * 3
    plan.refresh_from_db()
    assert plan.status == Plan.Status.COMPLETED
    assert entries(JournalEntry.Kind.REFUND_APPLIED, plan=plan) == [
        [(CUSTOMER_RECEIVABLE, Decimal("-75.00")), (MERCHANT_PAYABLE, Decimal("75.00"))]
    ]
    assert entries(JournalEntry.Kind.REFUND_PAYOUT, plan=plan) == [
        [(GATEWAY_CLEARING, Decimal("-5.00")), (MERCHANT_PAYABLE, Decimal("5.00"))]
    ]
    assert [amount for _, amount in RecordingGateway.charges] == [Decimal("25.00")]
    assert RecordingGateway.refunds == [(f"refund_payout_{body['id']}", Decimal("5.00"))], "paid back once"
    RecordingGateway.clear()


def test_a_full_refund_before_any_payment_cancels_the_plan(as_user, make_plan, merchant, operator):
    plan = make_plan(merchant=merchant, total="100.00")
    refund = request_refund(as_user(merchant), plan, amount="100.00").json()

    as_user(operator).post(f"{REFUNDS}{refund['id']}/approve/")

    plan.refresh_from_db()
    assert plan.status == Plan.Status.CANCELLED
    assert set(plan.installments.values_list("status", "amount_due", "amount_paid")) == {
        ("CANCELLED", Decimal("0.00"), Decimal("0.00"))
    }
    refunded = Refund.objects.get()
    assert (refunded.applied_amount, refunded.payout_amount, refunded.payout_status) == (
        Decimal("100.00"),
        Decimal("0.00"),
        Refund.PayoutStatus.NONE,
    )
    assert entries(JournalEntry.Kind.REFUND_APPLIED, plan=plan) == [
        [(CUSTOMER_RECEIVABLE, Decimal("-100.00")), (MERCHANT_PAYABLE, Decimal("100.00"))]
    ]
    assert entries(JournalEntry.Kind.REFUND_PAYOUT) == []
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == Decimal("0.00")


def test_refund_of_an_overdue_plan_reinstates_the_customer(as_user, make_plan, merchant, operator):
    from datetime import timedelta

    from bnpl.schedule import business_today
    from bnpl.services.sweep import overdue_sweep

    customer = UserFactory()
    plan = make_plan(
        customer=customer, merchant=merchant, total="100.00", purchase_date=business_today() - timedelta(days=45)
    )
    overdue_sweep()
    refund = request_refund(as_user(merchant), plan, amount="100.00").json()
    assert as_user(operator).post(f"{REFUNDS}{refund['id']}/approve/").status_code == 200
    customer.refresh_from_db()
    assert customer.status == User.Status.NORMAL
    assert set(plan.installments.values_list("status", "amount_due")) == {("CANCELLED", Decimal("0.00"))}
    assert entries(JournalEntry.Kind.REFUND_APPLIED, plan=plan) == [
        [(CUSTOMER_RECEIVABLE, Decimal("-100.00")), (MERCHANT_PAYABLE, Decimal("100.00"))]
    ]
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == Decimal("0.00")


def test_transaction_id_is_idempotent(as_user, make_plan, merchant):
    plan = make_plan(merchant=merchant)
    client = as_user(merchant)
    first = request_refund(client, plan)
    again = request_refund(client, plan)
    other_amount = request_refund(client, plan, amount="10.00")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert (other_amount.status_code, other_amount.json()["code"]) == (409, "transaction_id_conflict")
    assert Refund.objects.count() == 1


def test_refund_above_what_is_left_is_422(as_user, make_plan, merchant):
    plan = make_plan(merchant=merchant, total="100.00")
    client = as_user(merchant)
    assert request_refund(client, plan, amount="60.00", transaction_id="a").status_code == 201
    before = money_state()
    over = request_refund(client, plan, amount="40.01", transaction_id="b")
    assert (over.status_code, over.json()["code"], over.json()["refundable"]) == (422, "refund_exceeds_plan", "40.00")
    assert money_state() == before, "a refused refund changes nothing"


def test_who_may_request_and_see_refunds(as_user, make_plan, merchant, customer, operator):
    plan = make_plan(customer=customer, merchant=merchant)
    before = money_state()
    assert request_refund(as_user(customer), plan).status_code == 403
    assert request_refund(as_user(MerchantFactory()), plan).status_code == 404
    assert request_refund(as_user(merchant), plan, user_id="someone-else").status_code == 400
    assert money_state() == before, "the refusals changed nothing"
    assert request_refund(as_user(operator), plan, transaction_id="op-1").status_code == 201
    assert as_user(customer).get(REFUNDS).json()["count"] == 1
    assert as_user(MerchantFactory()).get(REFUNDS).json()["count"] == 0
    refund = Refund.objects.get()
    before = money_state()
    assert as_user(merchant).post(f"{REFUNDS}{refund.pk}/approve/").status_code == 403
    assert money_state() == before


def test_terminal_refunds_never_change_and_repeats_are_no_ops(make_plan, merchant):
    plan = make_plan(merchant=merchant)
    refund = refund_requested(plan, "10.00", transaction_id="t")
    refund_status_apply(refund_id=refund.pk, status="PROCESSING", source="webhook")
    refund_status_apply(refund_id=refund.pk, status="REJECTED", source="webhook")
    refund_status_apply(refund_id=refund.pk, status="APPROVED", source="webhook")
    refund_status_apply(refund_id=refund.pk, status="PROCESSING", source="webhook")
    refund_status_apply(refund_id=refund.pk, status="REJECTED", source="webhook")

    refund.refresh_from_db()
    assert refund.status == Refund.Status.REJECTED
    assert list(RefundEvent.objects.values_list("outcome", flat=True)) == [
        "applied",
        "applied",
        "ignored: from REJECTED",
        "ignored: from REJECTED",
        "duplicate",
    ]
    assert set(plan.installments.values_list("status", "amount_due")) == {
        (Installment.Status.UPCOMING, Decimal("125.00"))
    }
    assert (refund.applied_amount, refund.payout_amount) == (Decimal("0.00"), Decimal("0.00"))
    assert entries(JournalEntry.Kind.REFUND_APPLIED) == entries(JournalEntry.Kind.REFUND_PAYOUT) == []


@pytest.mark.faults
def test_webhook_approves_synchronously_without_a_broker(webhook, make_plan, merchant, as_user, no_broker):
    plan = make_plan(merchant=merchant, total="100.00")
    request_refund(as_user(merchant), plan, amount="40.00", transaction_id="rf-web")

    processing = webhook(merchant, {"refund_id": "rf-web", "status": "processing", "merchant_reference": "m-1"})
    approved = webhook(merchant, {"refund_id": "rf-web", "status": "approved"})

    assert processing.status_code == 200
    body = approved.json()
    assert (body["refund_id"], body["status"], body["processing_mode"]) == ("rf-web", "approved", "sync")
    assert "processed_at" in body
    refund = Refund.objects.get()
    assert (refund.status, refund.merchant_reference, refund.applied_amount) == ("APPROVED", "m-1", Decimal("40.00"))
    assert (refund.payout_amount, refund.payout_status) == (Decimal("0.00"), Refund.PayoutStatus.NONE)
    # 100.00 in 4: the last installment (25.00) cancelled, 15.00 off the third.
    assert list(plan.installments.order_by("sequence").values_list("status", "amount_due")) == [
        ("UPCOMING", Decimal("25.00")),
        ("UPCOMING", Decimal("25.00")),
        ("UPCOMING", Decimal("10.00")),
        ("CANCELLED", Decimal("0.00")),
    ]
    assert entries(JournalEntry.Kind.REFUND_APPLIED, plan=plan) == [
        [(CUSTOMER_RECEIVABLE, Decimal("-40.00")), (MERCHANT_PAYABLE, Decimal("40.00"))]
    ]
    assert balance(CUSTOMER_RECEIVABLE, plan=plan) == Decimal("60.00")


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("forged", 401),
        ("stale", 401),
        ("no-signature", 401),
        ("unknown-merchant", 401),
        ("other-merchant", 404),
        ("unknown-refund", 404),
        ("malformed", 400),
        ("unknown-status", 400),
    ],
)
def test_webhook_refusals_change_nothing(webhook, make_plan, merchant, as_user, case, status):
    plan = make_plan(merchant=merchant)
    request_refund(as_user(merchant), plan, transaction_id="rf-x")
    other = MerchantFactory(webhook_secret="whsec_other")
    before = money_state()
    good = {"refund_id": "rf-x", "status": "approved"}
    if case == "forged":
        response = webhook(merchant, good, secret="whsec_wrong")
    elif case == "stale":
        response = webhook(merchant, good, timestamp=int(time.time()) - 301)
    elif case == "no-signature":
        response = webhook(merchant, good, signatures=["00"])
    elif case == "unknown-merchant":
        response = webhook(UserFactory(webhook_secret="whsec_x"), good)
    elif case == "other-merchant":
        response = webhook(other, good)
    elif case == "unknown-refund":
        response = webhook(merchant, {"refund_id": "nope", "status": "approved"})
    elif case == "malformed":
        response = webhook(merchant, None, raw=b"{not json")
    else:
        response = webhook(merchant, {"refund_id": "rf-x", "status": "refunded"})

    assert response.status_code == status
    assert response["Content-Type"].startswith("application/problem+json")
    assert Refund.objects.get().status == Refund.Status.PENDING
    assert money_state() == before, "no amount, refund or entry changed"
    assert not RefundEvent.objects.exists()


@pytest.mark.faults
def test_webhook_accepts_any_of_several_signatures_for_rotation(webhook, make_plan, merchant, as_user, no_broker):
    plan = make_plan(merchant=merchant)
    request_refund(as_user(merchant), plan, transaction_id="rf-rot")
    payload = json.dumps({"refund_id": "rf-rot", "status": "rejected"}).encode()
    t = int(time.time())
    response = webhook(
        merchant,
        None,
        raw=payload,
        timestamp=t,
        signatures=[sign("whsec_old", t, payload), sign("whsec_test_secret", t, payload)],
    )
    assert response.status_code == 200
    assert Refund.objects.get().status == Refund.Status.REJECTED


@pytest.mark.parametrize(
    "signature",
    ["t=\u00b2,v1=00", "t=" + "9" * 5000 + ",v1=00", "t={now},v1=\u00e9\u00e9"],
    ids=["superscript-timestamp", "5000-digit-timestamp", "non-ascii-v1"],
)
def test_webhook_odd_signature_headers_are_a_401_not_a_500(merchant, signature):
    response = Client().post(
        WEBHOOK,
        data=b'{"refund_id": "rf-x", "status": "approved"}',
        content_type="application/json",
        HTTP_BNPL_MERCHANT=merchant.user_id,
        HTTP_BNPL_SIGNATURE=signature.format(now=int(time.time())),
    )

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_signature"


def test_webhook_merchant_id_with_a_nul_is_an_unknown_merchant(merchant):
    body = b'{"refund_id": "rf-x", "status": "approved"}'
    t = int(time.time())
    response = Client().post(
        WEBHOOK,
        data=body,
        content_type="application/json",
        HTTP_BNPL_MERCHANT=f"{merchant.user_id}\x00",
        HTTP_BNPL_SIGNATURE=f"t={t},v1={sign(merchant.webhook_secret, t, body)}",
    )

    assert response.status_code == 401
    assert response.json()["detail"] == "Unknown merchant."


def test_webhook_body_nested_too_deeply_is_a_400(webhook, merchant):
    response = webhook(merchant, None, raw=b"[" * 100_000)

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_webhook_answers_json_whatever_the_accept_header(make_plan, merchant, as_user, no_broker):
    plan = make_plan(merchant=merchant)
    request_refund(as_user(merchant), plan, transaction_id="rf-accept")
    body = json.dumps({"refund_id": "rf-accept", "status": "rejected"}).encode()
    t = int(time.time())

    response = Client().post(
        WEBHOOK,
        data=body,
        content_type="application/json",
        HTTP_ACCEPT="text/html",
        HTTP_BNPL_MERCHANT=merchant.user_id,
        HTTP_BNPL_SIGNATURE=f"t={t},v1={sign(merchant.webhook_secret, t, body)}",
    )

    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert Refund.objects.get().status == Refund.Status.REJECTED


def test_merchants_get_a_webhook_secret_once_at_registration(api_client):
    body = {
        "username": "shop",
        "password": "s3cure-pass-phrase",
        "role": "MERCHANT",
        "full_name": "Shop",
        "phone_number": "+998711234567",
        "email": "shop@example.com",
    }
    registered = api_client.post("/api/v1/auth/register/", body, format="json").json()
    assert registered["webhook_secret"].startswith("whsec_")
    assert User.objects.get(username="shop").webhook_secret == registered["webhook_secret"]
    token = api_client.post(
        "/api/v1/auth/token/", {"username": "shop", "password": "s3cure-pass-phrase"}, format="json"
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['access']}")
    assert "webhook_secret" not in api_client.get("/api/v1/auth/me/").json()


def test_operators_decide_in_the_admin_through_the_same_service(make_plan, merchant, operator):
    from django.test import Client

    plan = make_plan(merchant=merchant, total="100.00")
    keep, drop = (refund_requested(plan, "10.00", transaction_id=name) for name in ("keep", "drop"))
    client = Client()
    client.force_login(operator)

    for refund, action in ((keep, "approve"), (drop, "reject")):
        response = client.post("/admin/refunds/refund/", {"action": action, "_selected_action": [refund.pk]})
        assert response.status_code == 302

    keep.refresh_from_db()
    drop.refresh_from_db()
    assert (keep.status, keep.decided_by, keep.applied_amount) == ("APPROVED", operator, Decimal("10.00"))
    assert drop.status == "REJECTED"
    assert keep.events.get().source == "operator"
