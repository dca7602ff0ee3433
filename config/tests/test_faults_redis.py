"""Redis fails under the running service (gunicorn and a Celery worker on a Redis of the
test's own): the API keeps serving, the refund webhook is processed at once, /readyz says
Redis is down, and once Redis is back the work goes through the worker again."""

import json
import time
import uuid
from decimal import Decimal

import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Plan
from config.tests.faults import Service, service_env, wait_for
from core.signatures import signature_header
from core.tasks import BROKER_BACKOFF_SECONDS
from events.models import Event
from ledger.models import JournalEntry
from payments.models import Payment
from refunds.models import Refund, RefundEvent
from refunds.services import refund_request

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

# No request may take longer than this while Redis is away (a client or a load balancer
# would give up; gunicorn kills a worker at 60 s here).
BOUND_SECONDS = 10


def token(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


def webhook(service: Service, merchant, refund_id: str, status: str):
    body = json.dumps({"refund_id": refund_id, "status": status}).encode()
    headers = {
        "BNPL-Merchant": merchant.user_id,
        "BNPL-Signature": signature_header(merchant.webhook_secret, int(time.time()), body),
    }
    return service.request(
        "POST", "/webhook/refund-status/", body, headers={**headers, "Content-Type": "application/json"}
    )


@pytest.fixture
def parties(make_plan):
    customer = UserFactory(credit_limit=Decimal("10000.00"))
    merchant = MerchantFactory(webhook_secret="whsec_faults", webhook_url="https://merchant.example/bnpl")
    plan = make_plan(customer=customer, merchant=merchant, total="400.00")
    refunds = [
        refund_request(
            plan_id=plan.pk, transaction_id=f"rf-fault-{i}", amount=Decimal("10.00"), reason="", requester=merchant
        )[0]
        for i in range(5)
    ]
    return customer, merchant, plan, refunds


def refund_applied(refund_id: int, status: str) -> bool:
    return Refund.objects.get(pk=refund_id).status == status


def queued_again(service: Service, merchant, plan) -> Refund:
    """Once Redis is back, a webhook is queued for the worker again (after the service's
    short back-off from the broker, per process); returns the refund whose call was queued.

    Each try asks about a fresh refund: a call answered at once (sync) during the back-off
    has applied its status, and the same status again is never queued (there is nothing
    left for a worker to do), so retrying on that refund would never be queued."""
    time.sleep(BROKER_BACKOFF_SECONDS)  # tries before it runs out would be answered at once
    queued = []

    def queue_one() -> bool:
        refund, _ = refund_request(
            plan_id=plan.pk,
            transaction_id=f"rf-probe-{uuid.uuid4().hex[:12]}",
            amount=Decimal("0.01"),
            reason="",
            requester=merchant,
        )
        answer = webhook(service, merchant, refund.transaction_id, "processing")
        if answer.json()["processing_mode"] != "async":
            return False
        queued.append(refund)
        return True

    wait_for(queue_one, 60, "the webhook to be queued again")
    return queued[0]


def serves_everything(service: Service, customer, merchant, plan, refund, key: str) -> list:
    """An offer and its confirmation, a payment, reads and the refund webhook: every answer
    right and in time."""
    answers = []
    offered = service.request(
        "POST",
        "/api/v1/plans/",
        {"user_id": customer.user_id, "total_amount": "120.00", "installment_count": 3},
        token=token(merchant),
        headers={"Idempotency-Key": f"{key}-plan"},
    )
    answers.append(("offer plan", offered))
    assert offered.status == 201, (offered.status, offered.data, service.logs())
    new_plan = offered.json()["id"]
    created = service.request(
        "POST",
        f"/api/v1/plans/{new_plan}/confirm/",
        {},
        token=token(customer),
        headers={"Idempotency-Key": f"{key}-confirm"},
    )
    answers.append(("confirm plan", created))
    assert created.status == 200, (created.status, created.data, service.logs())
    first = created.json()["installments"][0]["id"]
    paid = service.request(
        "POST",
        f"/api/v1/installments/{first}/pay/",
        {},
        token=token(customer),
        headers={"Idempotency-Key": f"{key}-pay"},
    )
    answers.append(("pay", paid))
    assert (paid.status, paid.json()["status"]) == (201, "SUCCEEDED"), (paid.data, service.logs())
    replay = service.request(
        "POST",
        f"/api/v1/installments/{first}/pay/",
        {},
        token=token(customer),
        headers={"Idempotency-Key": f"{key}-pay"},
    )
    answers.append(("pay again, same key", replay))
    assert (replay.status, replay.headers.get("idempotent-replayed")) == (201, "true")
    for path in (f"/api/v1/plans/{new_plan}/", "/api/v1/plans/", "/api/v1/payments/", "/api/v1/auth/me/"):
        read = service.request("GET", path, token=token(customer))
        answers.append((f"GET {path}", read))
        assert read.status == 200, (path, read.status, read.data)
    decided = webhook(service, merchant, refund.transaction_id, "approved")
    answers.append(("refund webhook", decided))
    assert decided.status == 200, (decided.status, decided.data, service.logs())
    answers.append(("healthz", service.request("GET", "/healthz")))
    slow = [(what, round(a.seconds, 2)) for what, a in answers if a.seconds > BOUND_SECONDS]
    assert not slow, f"answers slower than {BOUND_SECONDS} s: {slow}"
    assert Payment.objects.filter(plan_id=new_plan, status=Payment.Status.SUCCEEDED).count() == 1
    return answers


PROBE_DEADLINE_SECONDS = 3


def outage_checks(service: Service) -> None:
    """/readyz names Redis (problem details), /healthz is alive, the dashboard shows Redis down."""
    ready = service.request("GET", "/readyz")
    assert ready.status == 503, ready.data
    assert ready.content_type.startswith("application/problem+json")
    assert ready.json()["down"] == ["broker", "redis"]
    assert ready.json()["checks"]["database"]["status"] == "ok"
    assert service.request("GET", "/healthz").status == 200
    health = service.request("GET", "/api/v1/health/?format=json")
    assert health.status == 200, "the database is up: the service is healthy, Redis is shown down"
    assert health.json()["components"]["redis"]["status"] == "down"
    assert health.json()["components"]["celery"]["status"] == "down"
    assert max(ready.seconds, health.seconds) < BOUND_SECONDS
    # Within a Kubernetes probe's deadline (k8s/web.yaml: timeoutSeconds 3): Redis's ping and
    # the broker's probe message time out after a second each, with no retry.
    assert ready.seconds < PROBE_DEADLINE_SECONDS, ready.seconds


def test_redis_frozen_then_killed_the_api_serves_webhooks_go_sync_readyz_names_redis_and_it_recovers(
    private_redis, launch, parties
):
    customer, merchant, plan, refunds = parties
    env = service_env(redis_url=private_redis.url(0))
    service = launch.service(env)
    worker = launch.worker(env)
    assert service.request("GET", "/readyz").status == 200

    # Healthy: the webhook is queued and the worker applies it.
    answer = webhook(service, merchant, refunds[0].transaction_id, "approved")
    assert (answer.status, answer.json()["processing_mode"]) == (200, "async")
    wait_for(lambda: refund_applied(refunds[0].pk, Refund.Status.APPROVED), 60, "the worker to apply the refund")

    # 1. Redis hangs: connections are accepted, nothing answers (timeouts, not refusals).
    private_redis.freeze()
    try:
        outage_checks(service)
        answers = serves_everything(service, customer, merchant, plan, refunds[1], key="frozen")
        assert dict(answers)["refund webhook"].json()["processing_mode"] == "sync"
        assert refund_applied(refunds[1].pk, Refund.Status.APPROVED), "applied before the answer"
    finally:
        private_redis.thaw()
    wait_for(lambda: service.request("GET", "/readyz").status == 200, 30, "/readyz to see Redis back")
    probe = queued_again(service, merchant, plan)
    wait_for(lambda: refund_applied(probe.pk, Refund.Status.PROCESSING), 60, "the worker to take work again")

    # 2. Redis is killed: gone at once, with everything it held.
    private_redis.kill()
    outage_checks(service)
    answers = serves_everything(service, customer, merchant, plan, refunds[3], key="killed")
    assert dict(answers)["refund webhook"].json()["processing_mode"] == "sync"
    assert refund_applied(refunds[3].pk, Refund.Status.APPROVED), "applied before the answer"
    # What the broker could not take is kept for later: the events recorded meanwhile wait.
    assert Event.objects.filter(delivery_status=Event.Delivery.PENDING).exists()

    private_redis.start()  # back, empty (no persistence)
    wait_for(lambda: service.request("GET", "/readyz").status == 200, 30, "/readyz to see Redis back")
    probe = queued_again(service, merchant, plan)
    wait_for(lambda: refund_applied(probe.pk, Refund.Status.PROCESSING), 60, "the worker to take work again")
    assert worker.process.poll() is None, "the worker lived through both outages"

    # Every refund approved once: one approval each, one ledger entry each; one payment per plan.
    for refund in (refunds[0], refunds[1], refunds[3]):
        applied = RefundEvent.objects.filter(refund=refund, requested_status="APPROVED", outcome="applied")
        assert applied.count() == 1
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.REFUND_APPLIED).count() == 3
    assert Plan.objects.filter(customer=customer).count() == 3
    assert Payment.objects.count() == 2
