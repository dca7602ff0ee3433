"""Operators decide refunds once: a decided refund is a 409, through the API and in the admin."""

from decimal import Decimal

import pytest
from django.test import Client

from accounts.tests.factories import MerchantFactory
from ledger.models import JournalEntry
from ledger.tests.books import entries
from refunds.models import Refund
from refunds.services import refund_request, refund_status_apply
from refunds.tasks import refund_status_apply_task

pytestmark = pytest.mark.django_db

REFUNDS = "/api/v1/refunds/"


@pytest.fixture
def merchant(db):
    return MerchantFactory(webhook_secret="whsec_decisions")


@pytest.fixture
def make_refund(make_plan, merchant):
    """``make_refund(transaction_id, status=None)``: a 40.00 refund on a 100.00 plan, decided if asked."""

    def make(transaction_id: str = "rf-dec", status: str | None = None) -> Refund:
        plan = make_plan(merchant=merchant, total="100.00")
        refund, _ = refund_request(
            plan_id=plan.pk, transaction_id=transaction_id, amount=Decimal("40.00"), reason="", requester=merchant
        )
        if status:
            refund = refund_status_apply(refund_id=refund.pk, status=status, source="webhook")
        return refund

    return make


def state(refund: Refund) -> tuple:
    refund.refresh_from_db()
    installments = list(refund.plan.installments.order_by("sequence").values_list("status", "amount_due"))
    return refund.status, refund.applied_amount, refund.payout_status, refund.decided_at, installments


def ledger_entries() -> list[tuple[str, str]]:
    return list(JournalEntry.objects.order_by("pk").values_list("kind", "memo"))


@pytest.mark.parametrize(
    ("decided", "action"),
    [
        (Refund.Status.REJECTED, "approve"),
        (Refund.Status.APPROVED, "reject"),
        (Refund.Status.APPROVED, "approve"),  # the same decision again, without a key: changes nothing either
        (Refund.Status.REJECTED, "reject"),
    ],
)
def test_deciding_a_decided_refund_is_a_409_that_changes_nothing(as_user, operator, make_refund, decided, action):
    refund = make_refund(status=decided)
    before, books = state(refund), ledger_entries()

    response = as_user(operator).post(f"{REFUNDS}{refund.pk}/{action}/")

    assert response.status_code == 409, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert (problem["code"], problem["type"], problem["status"]) == (
        "refund_already_decided",
        "/problems/refund_already_decided",
        409,
    )
    assert problem["refund_status"] == decided
    assert state(refund) == before
    assert ledger_entries() == books
    # The refused decision is recorded like any other call.
    last = refund.events.last()
    assert (last.source, last.outcome) in {("operator", "duplicate"), ("operator", f"ignored: from {decided}")}


@pytest.mark.parametrize("current", [None, Refund.Status.PROCESSING])
def test_deciding_an_undecided_refund_still_works(as_user, operator, make_refund, current):
    refund = make_refund(status=current)

    approved = as_user(operator).post(f"{REFUNDS}{refund.pk}/approve/")

    assert approved.status_code == 200, approved.content
    assert (approved.json()["status"], approved.json()["applied_amount"]) == ("APPROVED", "40.00")
    assert Refund.objects.get(pk=refund.pk).decided_by is not None
    # The money: 40.00 of the 100.00 plan's last installment (25.00) and the one before it,
    # nothing paid, so nothing paid back; one entry for what was applied.
    assert state(refund)[1:3] == (Decimal("40.00"), Refund.PayoutStatus.NONE)
    assert state(refund)[4] == [
        ("UPCOMING", Decimal("25.00")),
        ("UPCOMING", Decimal("25.00")),
        ("UPCOMING", Decimal("10.00")),
        ("CANCELLED", Decimal("0.00")),
    ]
    assert entries(JournalEntry.Kind.REFUND_APPLIED, plan=refund.plan) == [
        [("customer_receivable", Decimal("-40.00")), ("merchant_payable", Decimal("40.00"))]
    ]


def test_a_retried_approval_with_its_idempotency_key_replays_the_first_answer(as_user, operator, make_refund):
    refund = make_refund()
    client = as_user(operator)
    path = f"{REFUNDS}{refund.pk}/approve/"

    first = client.post(path, HTTP_IDEMPOTENCY_KEY="approve-rf-dec")
    retry = client.post(path, HTTP_IDEMPOTENCY_KEY="approve-rf-dec")
    fresh = client.post(path)  # no key: a new request, for a refund already approved

    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert (fresh.status_code, fresh.json()["code"]) == (409, "refund_already_decided")
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.REFUND_APPLIED).count() == 1
    assert list(refund.events.values_list("source", "outcome")) == [("operator", "applied"), ("operator", "duplicate")]


def test_a_retried_refusal_with_its_idempotency_key_replays_the_409(as_user, operator, make_refund):
    refund = make_refund(status=Refund.Status.APPROVED)
    client = as_user(operator)
    path = f"{REFUNDS}{refund.pk}/reject/"

    first = client.post(path, HTTP_IDEMPOTENCY_KEY="reject-rf-dec")
    retry = client.post(path, HTTP_IDEMPOTENCY_KEY="reject-rf-dec")
    other_refund = client.post(f"{REFUNDS}{make_refund('rf-other').pk}/reject/", HTTP_IDEMPOTENCY_KEY="reject-rf-dec")

    assert (first.status_code, retry.status_code) == (409, 409)
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert (other_refund.status_code, other_refund.json()["code"]) == (422, "idempotency_key_reused")
    assert Refund.objects.get(pk=refund.pk).status == Refund.Status.APPROVED


def test_the_schema_documents_the_409_and_the_key_on_both_decisions(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for action in ("approve", "reject"):
        operation = schema["paths"][f"/api/v1/refunds/{{id}}/{action}/"]["post"]
        assert "refund_already_decided" in operation["responses"]["409"]["description"]
        assert "application/problem+json" in operation["responses"]["409"]["content"]
        assert "Idempotency-Key" in {p["name"] for p in operation["parameters"]}


def test_admin_actions_report_the_refunds_skipped_because_already_decided(operator, make_refund):
    pending, approved, rejected = make_refund("rf-a"), make_refund("rf-b", "APPROVED"), make_refund("rf-c", "REJECTED")
    client = Client()
    client.force_login(operator)
    books = len(ledger_entries())

    response = client.post(
        "/admin/refunds/refund/",
        {"action": "reject", "_selected_action": [pending.pk, approved.pk, rejected.pk]},
        follow=True,
    )

    assert response.status_code == 200
    messages = [(m.level_tag, m.message) for m in response.context["messages"]]
    assert ("success", "rf-a: rejected") in messages or ("info", "rf-a: rejected") in messages, messages
    skipped = [text for level, text in messages if level == "warning"]
    assert len(skipped) == 1, messages
    assert "Skipped 2 already decided" in skipped[0]
    assert "rf-b (approved)" in skipped[0]
    assert "rf-c (rejected)" in skipped[0]
    assert [Refund.objects.get(pk=r.pk).status for r in (pending, approved, rejected)] == [
        "REJECTED",
        "APPROVED",
        "REJECTED",
    ]
    assert len(ledger_entries()) == books


def test_the_webhook_task_run_twice_or_after_a_final_state_changes_nothing_more(make_refund):
    refund = make_refund()

    # Delivered twice (acks_late: a worker lost after the work, before the ack), then a late
    # conflicting decision: the service re-checks under the plan's lock each time.
    results = [
        refund_status_apply_task.apply(args=(refund.pk, status)).get()
        for status in (Refund.Status.APPROVED, Refund.Status.APPROVED, Refund.Status.REJECTED)
    ]

    assert results == ["APPROVED", "APPROVED", "APPROVED"]
    refund.refresh_from_db()
    assert (refund.status, refund.applied_amount) == (Refund.Status.APPROVED, Decimal("40.00"))
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.REFUND_APPLIED).count() == 1
    assert list(refund.events.values_list("outcome", flat=True)) == ["applied", "duplicate", "ignored: from APPROVED"]


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_a_decision_with_a_body_field_is_a_400_naming_it_and_decides_nothing(as_user, operator, make_refund, action):
    refund = make_refund()

    response = as_user(operator).post(f"{REFUNDS}{refund.pk}/{action}/", {"amount": "5.00"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == {"amount": ["Unknown field."]}
    assert Refund.objects.get(pk=refund.pk).status == Refund.Status.PENDING
