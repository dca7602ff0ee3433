"""The refund-status webhook answers with what the refund is, and whether the call applied."""

from decimal import Decimal

import pytest

from accounts.tests.factories import MerchantFactory
from config.celery import app
from ledger.models import JournalEntry
from refunds.models import Refund
from refunds.services import WEBHOOK_STATUSES, refund_request, refund_status_apply

pytestmark = pytest.mark.django_db

ANSWER_FIELDS = {"refund_id", "status", "applied", "processing_mode", "processed_at"}


@pytest.fixture
def merchant(db):
    return MerchantFactory(webhook_secret="whsec_answers")


@pytest.fixture
def refund(make_plan, merchant) -> Refund:
    plan = make_plan(merchant=merchant, total="100.00")
    refund, _ = refund_request(
        plan_id=plan.pk, transaction_id="rf-ans", amount=Decimal("40.00"), reason="", requester=merchant
    )
    return refund


@pytest.fixture
def broker_queue():
    """The broker's task queue, emptied before and after: ``broker_queue()`` → how many wait in it."""
    app.control.purge()

    def length() -> int:
        with app.connection_for_write() as connection:
            return connection.default_channel.client.llen(app.conf.task_default_queue)

    yield length
    app.control.purge()


def ledger_entries() -> list[tuple[str, str]]:
    return list(JournalEntry.objects.order_by("pk").values_list("kind", "memo"))


@pytest.mark.redis
@pytest.mark.parametrize(
    ("decided", "sent", "answered"),
    [
        (Refund.Status.APPROVED, "rejected", "approved"),
        (Refund.Status.APPROVED, "failed", "approved"),
        (Refund.Status.APPROVED, "processing", "approved"),
        (Refund.Status.APPROVED, "approved", "approved"),
        (Refund.Status.REJECTED, "approved", "rejected"),
        (Refund.Status.REJECTED, "rejected", "rejected"),
    ],
)
def test_webhook_on_a_final_refund_answers_its_status_applied_false_and_queues_nothing(
    webhook, merchant, refund, broker_queue, decided, sent, answered
):
    assert not app.conf.task_always_eager, "a status the refund could take would be queued"
    refund = refund_status_apply(refund_id=refund.pk, status=decided, source="webhook")
    before = (refund.status, refund.applied_amount, refund.payout_status, refund.decided_at)
    books = ledger_entries()

    response = webhook(merchant, {"refund_id": "rf-ans", "status": sent})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == ANSWER_FIELDS
    assert (body["refund_id"], body["status"], body["applied"], body["processing_mode"]) == (
        "rf-ans",
        answered,
        False,
        "sync",
    )
    refund.refresh_from_db()
    assert (refund.status, refund.applied_amount, refund.payout_status, refund.decided_at) == before
    assert ledger_entries() == books
    assert broker_queue() == 0, "nothing for a worker to do"
    # Recorded at once, like every call: the refund's events say it was ignored.
    last = refund.events.last()
    assert (last.requested_status, last.source) == (WEBHOOK_STATUSES[sent], "webhook")
    assert last.outcome in ("duplicate", f"ignored: from {decided}")


@pytest.mark.redis
@pytest.mark.parametrize(("current", "sent"), [(None, "approved"), (None, "processing"), ("PROCESSING", "rejected")])
def test_webhook_on_an_undecided_refund_is_queued_and_answers_its_status_before_the_worker(
    webhook, merchant, refund, broker_queue, current, sent
):
    if current:
        refund = refund_status_apply(refund_id=refund.pk, status=current, source="webhook")
    before = refund.status

    response = webhook(merchant, {"refund_id": "rf-ans", "status": sent})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == ANSWER_FIELDS
    # Accepted for the worker: the refund has not changed yet, and the answer says what it is.
    assert (body["status"], body["applied"], body["processing_mode"]) == (before.lower(), True, "async")
    refund.refresh_from_db()
    assert refund.status == before
    assert broker_queue() == 1


@pytest.mark.redis
def test_webhook_repeating_the_status_an_undecided_refund_has_is_not_queued(webhook, merchant, refund, broker_queue):
    refund_status_apply(refund_id=refund.pk, status=Refund.Status.PROCESSING, source="webhook")

    body = webhook(merchant, {"refund_id": "rf-ans", "status": "processing"}).json()

    assert (body["status"], body["applied"], body["processing_mode"]) == ("processing", False, "sync")
    assert broker_queue() == 0
    assert refund.events.last().outcome == "duplicate"


@pytest.mark.parametrize(
    ("sent", "after"), [("approved", "approved"), ("failed", "rejected"), ("processing", "processing")]
)
def test_webhook_without_a_broker_answers_the_status_after_applying_it(
    webhook, merchant, refund, no_broker, sent, after
):
    response = webhook(merchant, {"refund_id": "rf-ans", "status": sent})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["applied"], body["processing_mode"]) == (after, True, "sync")
    refund.refresh_from_db()
    assert refund.status == after.upper()


def test_webhook_without_a_broker_on_a_final_refund_answers_applied_false(webhook, merchant, refund, no_broker):
    assert webhook(merchant, {"refund_id": "rf-ans", "status": "approved"}).json()["applied"] is True
    books = ledger_entries()

    body = webhook(merchant, {"refund_id": "rf-ans", "status": "rejected"}).json()

    assert (body["status"], body["applied"], body["processing_mode"]) == ("approved", False, "sync")
    refund.refresh_from_db()
    assert (refund.status, refund.applied_amount) == (Refund.Status.APPROVED, Decimal("40.00"))
    assert ledger_entries() == books


def test_webhook_answer_matches_the_documented_schema(webhook, merchant, refund, no_broker, api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    documented = schema["components"]["schemas"]["RefundStatusOut"]
    statuses = schema["components"]["schemas"]["RefundWebhookAnswerStatusEnum"]["enum"]

    body = webhook(merchant, {"refund_id": "rf-ans", "status": "rejected"}).json()

    assert set(body) == set(documented["properties"]) == set(documented["required"])
    assert statuses == ["pending", "processing", "approved", "rejected"]
    assert body["status"] in statuses
    assert documented["properties"]["applied"]["type"] == "boolean"


@pytest.mark.parametrize(
    ("send", "status", "code", "title", "detail"),
    [
        (lambda hook, m: hook(m, {}, secret="whsec_wrong"), 401, "invalid_signature", "Unauthorized", None),
        (
            lambda hook, m: hook(m, None, raw=b"{not json"),
            400,
            "parse_error",
            "Bad Request",
            "The body is not valid JSON.",
        ),
        (
            lambda hook, m: hook(m, {"refund_id": "rf-none", "status": "approved"}),
            404,
            "not_found",
            "Not Found",
            "This merchant has no refund with this id.",
        ),
    ],
    ids=["signature", "not-json", "unknown-refund"],
)
def test_webhook_errors_are_the_api_problem_documents(webhook, merchant, send, status, code, title, detail):
    response = send(webhook, merchant)

    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert (body["type"], body["title"], body["status"], body["code"]) == (f"/problems/{code}", title, status, code)
    if detail:
        assert body["detail"] == detail


def test_webhook_body_errors_name_each_field(webhook, merchant):
    response = webhook(merchant, {"status": "done", "extra": 1})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert set(body["errors"]) == {"refund_id", "status", "extra"}
