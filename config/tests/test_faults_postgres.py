"""PostgreSQL fails under the running service (gunicorn, its database through a proxy the
test cuts; the shared server is never touched): every request answers a 503 problem in
bounded time, a transaction cut half-way leaves nothing half-written, and a retry with the
same Idempotency-Key does the work exactly once, never charging the card twice."""

import json
import time
from decimal import Decimal

import pytest
from django.db.models import Count, F, Q, Sum
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Plan
from config.tests.faults import Answer, Launcher, PgProxy, PrivateRedis, Service, require_redis_server, service_env
from core.models import IdempotencyKey
from core.signatures import signature_header
from ledger.checks import ledger_check
from ledger.models import JournalEntry
from payments.models import Payment
from payments.tests.gateways import CardNetwork
from refunds.services import refund_request

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# No request may take longer than this while the database is away.
BOUND_SECONDS = 10


def token(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


@pytest.fixture(scope="module")
def stack(django_db_setup):
    """gunicorn with its database through the proxy, a Redis of its own and the card network
    outside: one for the module (each test starts with the proxy up and the network clear)."""
    require_redis_server()
    redis, proxy, launcher = PrivateRedis().start(), PgProxy(), Launcher()
    with CardNetwork() as network:
        try:
            env = service_env(
                proxy=proxy,
                redis_url=redis.url(0),
                BNPL_PAYMENT_GATEWAY="payments.tests.gateways.NetworkGateway",
                BNPL_TEST_CARD_NETWORK_URL=network.url,
                # Short, so the test need not wait: a hung database fails a request in 2 s (5 by
                # default), an abandoned Idempotency-Key is taken over after 2 s (60 by default).
                DATABASE_CONNECT_TIMEOUT="2",
                BNPL_IDEMPOTENCY_LEASE_SECONDS="2",
            )
            yield launcher.service(env), proxy, network
        finally:
            launcher.stop()
            proxy.close()
            redis.stop()


@pytest.fixture
def service(stack) -> Service:
    service, proxy, network = stack
    proxy.restore()
    network.script.clear()
    network.captures.clear()
    network.requests.clear()
    return service


@pytest.fixture
def pg_proxy(stack, service) -> PgProxy:
    return stack[1]


@pytest.fixture
def network(stack, service) -> CardNetwork:
    return stack[2]


@pytest.fixture
def parties():
    customer = UserFactory(credit_limit=Decimal("10000.00"))
    merchant = MerchantFactory(webhook_secret="whsec_faults")
    return customer, merchant


def create_plan(service: Service, customer, merchant, key: str, total: str = "300.00") -> Answer:
    """The merchant's offer of a plan to ``customer``."""
    body = {"user_id": customer.user_id, "total_amount": total, "installment_count": 3}
    return service.request("POST", "/api/v1/plans/", body, token=token(merchant), headers={"Idempotency-Key": key})


def confirm_plan(service: Service, customer, plan_id: int, key: str) -> Answer:
    """The customer's consent: the plan becomes ACTIVE (installments, entry, event)."""
    path = f"/api/v1/plans/{plan_id}/confirm/"
    return service.request("POST", path, {}, token=token(customer), headers={"Idempotency-Key": key})


def pay(service: Service, customer, path: str, key: str, body: dict | None = None) -> Answer:
    return service.request("POST", path, body or {}, token=token(customer), headers={"Idempotency-Key": key})


def retried(send) -> Answer:
    """``send()`` again while the answer is 409 "in flight": the client's retries, until the
    key's lease runs out and the retry takes the abandoned request over."""
    deadline = time.monotonic() + 30
    while True:
        answer = send()
        in_flight = answer.status == 409 and answer.json()["code"] == "idempotency_key_in_flight"
        if not in_flight or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def assert_unavailable(answer: Answer, what: str) -> None:
    """A 503 problem document with Retry-After, in time."""
    assert answer.status == 503, (what, answer.status, answer.body[:300])
    assert answer.content_type.startswith("application/problem+json"), (what, answer.content_type)
    assert answer.json()["code"] in ("service_unavailable", "not_ready"), (what, answer.data)
    assert answer.seconds < BOUND_SECONDS, (what, answer.seconds)


def nothing_half_written() -> None:
    """No ACTIVE plan without its installments (an offer has none), no entry without postings
    or out of balance, no payment without its allocations, and the ledger invariants hold."""
    owed = Plan.objects.filter(status=Plan.Status.ACTIVE)
    assert not owed.annotate(n=Count("installments")).filter(n=0).exists(), "a plan without installments"
    assert not owed.annotate(s=Sum("installments__amount_due")).exclude(s=F("total_amount")).exists()
    assert not JournalEntry.objects.annotate(n=Count("postings")).filter(n__lt=2).exists(), "an entry without postings"
    assert not Payment.objects.annotate(n=Count("allocations")).filter(n=0).exists(), "a payment without allocations"
    report = ledger_check(record=False)
    assert report.ok, report.breaches


def charged_once(network: CardNetwork) -> None:
    """The network took each succeeded payment's card part once, and nothing else."""
    succeeded = Payment.objects.filter(status=Payment.Status.SUCCEEDED)
    assert sorted(network.captures) == sorted(succeeded.values_list("gateway_key", flat=True))
    booked = succeeded.aggregate(total=Sum("amount"))["total"] or Decimal("0.00")
    assert network.captured_total() == booked


def signed_webhook(service: Service, merchant, refund_id: str) -> Answer:
    body = json.dumps({"refund_id": refund_id, "status": "approved"}).encode()
    headers = {
        "Content-Type": "application/json",
        "BNPL-Merchant": merchant.user_id,
        "BNPL-Signature": signature_header(merchant.webhook_secret, int(time.time()), body),
    }
    return service.request("POST", "/webhook/refund-status/", body, headers=headers)


def test_database_down_or_hung_every_request_is_a_503_problem_in_time_then_it_recovers(
    service, pg_proxy, parties, make_plan, network
):
    customer, merchant = parties
    plan = make_plan(customer=customer, merchant=merchant, total="300.00")
    refund_request(plan_id=plan.pk, transaction_id="rf-db", amount=Decimal("10.00"), reason="", requester=merchant)
    first = plan.installments.get(sequence=1)
    assert service.request("GET", "/api/v1/plans/", token=token(customer)).status == 200

    # 1. Cut: connections dropped, new ones refused at once.
    pg_proxy.cut()
    assert_unavailable(service.request("GET", "/api/v1/plans/", token=token(customer)), "list")
    assert_unavailable(service.request("GET", f"/api/v1/plans/{plan.pk}/", token=token(customer)), "detail")
    assert_unavailable(create_plan(service, customer, merchant, key="k-plan"), "create")
    assert_unavailable(pay(service, customer, f"/api/v1/installments/{first.pk}/pay/", "k-pay"), "pay")
    assert_unavailable(signed_webhook(service, merchant, "rf-db"), "webhook")
    login = {"username": customer.username, "password": "correct-horse-battery-9"}
    assert_unavailable(service.request("POST", "/api/v1/auth/token/", login), "token")
    ready = service.request("GET", "/readyz")
    assert_unavailable(ready, "readyz")
    assert ready.json()["down"] == ["database"]
    assert service.request("GET", "/healthz").status == 200
    health = service.request("GET", "/api/v1/health/?format=json")
    assert (health.status, health.json()["components"]["database"]["status"]) == (503, "down")
    pg_proxy.restore()

    # 2. Hung: connections accepted, never answered. Each request waits out the connect
    # timeout, no longer.
    pg_proxy.hang()
    assert_unavailable(service.request("GET", "/api/v1/plans/", token=token(customer)), "list, hung")
    assert_unavailable(create_plan(service, customer, merchant, key="k-plan"), "create, hung")
    assert_unavailable(signed_webhook(service, merchant, "rf-db"), "webhook, hung")
    assert_unavailable(service.request("GET", "/readyz"), "readyz, hung")
    assert service.request("GET", "/healthz").status == 200
    pg_proxy.restore()

    # Back: nothing was stored for the keys tried meanwhile; the same requests now do the work.
    assert service.request("GET", "/readyz").status == 200
    assert not IdempotencyKey.objects.exists()
    created = create_plan(service, customer, merchant, key="k-plan")
    assert created.status == 201, created.data
    paid = pay(service, customer, f"/api/v1/installments/{first.pk}/pay/", "k-pay")
    assert (paid.status, paid.json()["status"]) == (201, "SUCCEEDED"), paid.data
    assert signed_webhook(service, merchant, "rf-db").json()["processing_mode"] == "async"
    assert Plan.objects.filter(customer=customer).count() == 2
    nothing_half_written()
    charged_once(network)


def test_a_plan_creation_cut_mid_transaction_leaves_nothing_and_its_retry_creates_it_once(service, pg_proxy, parties):
    customer, merchant = parties
    offers = [create_plan(service, customer, merchant, key=f"offer-{n}") for n in (1, 2)]
    assert [offer.status for offer in offers] == [201, 201], [offer.data for offer in offers]
    first, second = (offer.json()["id"] for offer in offers)

    # 1. The connection dies once the confirmed plan's installments, entry and event are
    # written (one statement on PostgreSQL), before the commit: nothing stays.
    pg_proxy.cut_on("INSERT INTO bnpl_installment", after=True)
    assert_unavailable(confirm_plan(service, customer, first, key="k-1"), "confirm, cut")
    assert pg_proxy.fired.is_set()
    pg_proxy.restore()
    assert Plan.objects.get(pk=first).status == Plan.Status.PENDING
    nothing_half_written()
    confirmed = confirm_plan(service, customer, first, key="k-1")
    assert confirmed.status == 200, confirmed.data
    assert confirmed.json()["status"] == "ACTIVE"

    # 2. The COMMIT reaches the server; its answer never comes back. The client is told
    # 503, yet the plan is ACTIVE: the retry replays the stored answer, not a 409.
    pg_proxy.cut_on("INSERT INTO bnpl_installment", "COMMIT", after=True)
    assert_unavailable(confirm_plan(service, customer, second, key="k-2"), "confirm, commit unanswered")
    pg_proxy.restore()
    assert Plan.objects.get(pk=second).status == Plan.Status.ACTIVE
    again = confirm_plan(service, customer, second, key="k-2")
    assert (again.status, again.headers.get("idempotent-replayed")) == (200, "true"), again.data
    assert again.json()["id"] == second
    assert JournalEntry.objects.filter(kind=JournalEntry.Kind.ORIGINATION).count() == 2
    nothing_half_written()


def test_payments_cut_mid_transaction_are_applied_once_and_never_charged_twice(
    service, pg_proxy, parties, make_plan, network
):
    customer, merchant = parties
    plan = make_plan(customer=customer, merchant=merchant, total="300.00", count=3)
    first, second, third = plan.installments.order_by("sequence")
    installment_pay = "/api/v1/installments/{}/pay/".format

    # 1. Cut while the payment is reserved (before the card is charged): nothing stays.
    pg_proxy.cut_on("INSERT INTO payments_paymentallocation")
    assert_unavailable(pay(service, customer, installment_pay(first.pk), "k-1"), "pay, cut in reserve")
    pg_proxy.restore()
    assert not Payment.objects.exists()
    assert network.captures == {}
    nothing_half_written()
    again = retried(lambda: pay(service, customer, installment_pay(first.pk), "k-1"))
    assert (again.status, again.json()["status"]) == (201, "SUCCEEDED"), again.data
    charged_once(network)

    # 2. Cut after the card was charged, while the payment is booked: the payment stays
    # PENDING (its reservation holds the cents); the retry finishes it with the same
    # gateway key, which the network does not charge again.
    pg_proxy.cut_on("INSERT INTO payments_posting")  # the entry and its postings, one statement
    assert_unavailable(pay(service, customer, installment_pay(second.pk), "k-2"), "pay, cut in settle")
    pg_proxy.restore()
    pending = Payment.objects.get(status=Payment.Status.PENDING)
    assert list(network.captures) == [Payment.objects.get(status="SUCCEEDED").gateway_key, pending.gateway_key]
    nothing_half_written()
    again = retried(lambda: pay(service, customer, installment_pay(second.pk), "k-2"))
    assert (again.status, again.json()["id"], again.json()["status"]) == (201, pending.pk, "SUCCEEDED"), (
        again.status,
        again.data,
    )
    charged_once(network)

    # 3. The payment's COMMIT happens, its answer is lost, and the database stays up: the
    # client sees 503 and retries with its key; the retry answers with that payment, it
    # does not pay the next installment too.
    pg_proxy.cut_on("INSERT INTO payments_posting", "COMMIT", after=True, only_this=True)
    assert_unavailable(pay(service, customer, f"/api/v1/plans/{plan.pk}/pay/", "k-3", {"amount": "50.00"}), "lost")
    assert Payment.objects.filter(status="SUCCEEDED").count() == 3
    again = retried(lambda: pay(service, customer, f"/api/v1/plans/{plan.pk}/pay/", "k-3", {"amount": "50.00"}))
    assert again.status == 201, again.data
    assert Payment.objects.count() == 3, "the retry paid again"
    charged_once(network)
    third.refresh_from_db()
    assert third.amount_paid == Decimal("50.00")
    assert not Payment.objects.filter(~Q(status="SUCCEEDED")).exists()
    nothing_half_written()
