#!/usr/bin/env python
"""Soak: minutes of mixed traffic against the service as deployed, then a reconciliation of
every answer with the database and the ledger.

In one run it:
- creates its own database (``bnpl_bench_soak``), migrates and seeds it with
  ``populate_mock_data --scale N`` (background rows), and empties its own Redis database;
- starts gunicorn (config/gunicorn.py, ``DEBUG=False``, throw-away secrets, the rate limits
  lifted) and a Celery worker (``celery -A config worker``), late fees on;
- registers merchants and customers through the API (their access tokens signed with the
  service's key, as a login would); one customer in six has a card the fake gateway
  declines (ending 0002: ``card_declined``), one in six insufficient funds (9995);
- for ``--minutes``, ``--clients`` threads send a weighted mix: merchants offer plans (a
  unique Idempotency-Key each, some with manual capture; some kept answers are asked again
  with the same key, which must replay them, or with the same key and another body, which
  must be refused; a customer refused for its debt may pay what is overdue), customers
  confirm offers (ACTIVE, or AUTHORIZED for manual capture) or decline them, merchants
  capture authorizations (whole, part, or above them: 422) or void them, some offers taken
  by two clients at once (one gets a 409), some left to lapse; customers pay installments
  and plans of the plans that became ACTIVE, merchants request refunds (some twice with the
  same transaction_id) and decide them through the signed webhook, reads, and invalid
  requests (each must be a 4xx). Meanwhile a clock thread moves time forward for a share
  of the plans (their dates shift 35 days back, later 8 more, under the plans' row locks
  as the services take them) and runs the overdue sweep with late fees, fanned out to the
  worker, then the expiry task with the clock moved forward (offers made more than a tick
  ago lapse, and every other tick the authorizations too): installments fall due, fees are
  charged, customers fall into debt and out of it, offers expire while the traffic goes on;
- stops the traffic, runs a last sweep, lets the worker drain its queue, stops the servers;
- runs ``manage.py check_ledger`` (exit 0 wanted) and reconciles: every offer answered 201
  exists once, and a refused one left none; a plan that became ACTIVE has the installments
  its confirmation or capture answered and one origination entry of its total (a capture's
  amount), and one never owed (PENDING, AUTHORIZED, DECLINED, EXPIRED, VOIDED) has no
  installments, entries, payments, fees or refunds; each plan's state is what its confirm,
  decline, capture and void answers say (each transition answered 200 once at most, a 409
  only once the plan had left the state asked);
  every payment answered 201 SUCCEEDED with its allocations and one ledger entry, every 402
  left a FAILED payment and no entry, and each plan's installments and fees hold exactly
  what its successful payments paid; a replay returned the first answer and created
  nothing; every refund accepted exists once, and the webhook's decision was applied once
  (installments lowered by what it applied, the rest paid out or credited with one entry);
  the keys were recorded as the answers say; no installment was marked overdue twice; the
  debt status of every customer matches its overdue installments.

Prints the machine's cores and load before and after (and the cores processes other than
the soak's used during the traffic: bench.machine; the soak reports no ratio, so none is
refused), the requests by endpoint and status, the errors by status and code, the
reconciliation (checked and mismatched per kind) and the ledger check; exits 1 on any 5xx or
unanswered request, any mismatch, any ledger breach, or any error in the servers' logs.

    python bench/soak.py                                            # 10 minutes
    python bench/soak.py --minutes 0.5 --scale 200 --customers 8    # a short run

Needs the local PostgreSQL and Redis; the database and the Redis database named are its own
(dropped and flushed).
"""

import argparse
import http.client
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.autopay import (  # noqa: E402
    add_store_arguments,
    database_name,
    error_lines,
    no_other_worker,
    queue_idle,
    redis_client,
    start_worker,
    stop_worker,
    wait_ready,
    wait_until,
)
from bench.http_bench import env_for, prepare_database, start_gunicorn, stop  # noqa: E402
from bench.machine import TreeWatch, machine_line  # noqa: E402

# Settings of the soak's servers, beside http_bench's (DEBUG off, throw-away secrets, limits lifted).
SOAK_SETTINGS = {
    "BNPL_LATE_FEES_ENABLED": "True",
    # No message leaves the machine; the notifications are still recorded and sent by the worker.
    "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    "BNPL_SMS_BACKEND": "events.sms.LocmemSmsBackend",
}
GOOD_CARDS = ("4111111111111111", "4242424242424242", "5555555555554444")
DECLINING_CARDS = {"0002": ("4000000000000002", "card_declined"), "9995": ("4000000000009995", "insufficient_funds")}
FREQUENCIES = ("WEEKLY", "BIWEEKLY", "MONTHLY")
# (action, weight): how often a client picks each.
ACTIONS = (
    ("plan", 24),  # a merchant's offer: PENDING until the customer answers
    ("confirm", 16),
    ("decline", 3),
    ("capture", 6),
    ("void", 2),
    ("pay_installment", 18),
    ("pay_plan", 10),
    ("refund", 8),
    ("decide", 8),
    ("recheck", 3),
    ("read", 12),
    ("invalid", 9),
)
REPLAY_SHARE, REUSE_SHARE, REPEAT_SHARE = 0.10, 0.03, 0.10
FIRST_AGE_DAYS, LATER_AGE_DAYS = 35, 8  # past a monthly due date; past the second fee's 7 days
WRONG_SECRET = "whsec_not_the_merchants"  # noqa: S105 - a signature that must be refused  # nosec B105
NOT_STORED = {400, 401, 403, 404, 405, 413, 415}  # answers core.idempotency keeps no key for
OWED = ("ACTIVE", "COMPLETED", "CANCELLED")  # the plan states that are debts (the rest are offers)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10, help="how long the traffic runs")
    parser.add_argument("--clients", type=int, default=6, help="client threads sending requests")
    parser.add_argument("--customers", type=int, default=30, help="customers registered through the API")
    parser.add_argument("--merchants", type=int, default=2, help="merchants registered through the API")
    parser.add_argument("--scale", type=int, default=2000, help="background customers with a plan each to seed")
    parser.add_argument("--sweep-seconds", type=float, default=20, help="how often the clock moves and the sweep runs")
    parser.add_argument("--age-share", type=float, default=0.15, help="share of the open plans aged at each tick")
    parser.add_argument("--chunk-plans", type=int, default=500, help="plans per sweep chunk (a worker task each)")
    parser.add_argument("--worker-processes", type=int, default=2, help="the Celery worker's concurrency")
    parser.add_argument("--think-ms", type=float, default=5, help="mean pause of a client between two actions")
    parser.add_argument("--seed", type=int, default=1, help="seed of the traffic's random choices")
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_SOAK_PORT", "8796")))
    add_store_arguments(parser, "BENCH_SOAK", "bnpl_bench_soak", redis_db=9)
    args = parser.parse_args()
    if args.minutes <= 0 or args.clients < 1 or args.customers < 2 or args.merchants < 1:
        parser.error("--minutes, --clients, --customers (at least 2) and --merchants must be positive")
    return args


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def cents(amount: Decimal) -> int:
    return int(amount * 100)


# --- Requests, as the clients saw them --------------------------------------------------------


@dataclass(slots=True, eq=False)
class Actor:
    user_id: str
    role: str
    password: str
    token: str = ""
    card_last4: str = ""
    secret: str = ""  # a merchant's webhook secret

    @property
    def declines(self) -> str:
        """The decline code the fake gateway answers this customer's card with ('' if none)."""
        return DECLINING_CARDS.get(self.card_last4, ("", ""))[1]


@dataclass(slots=True, eq=False)
class Call:
    endpoint: str  # method and path template
    kind: str  # ok, replay, reuse, repeat, invalid, setup
    status: int  # 0: no answer (refused, reset, timed out)
    actor: Actor | None
    key: str | None
    sent: object
    answer: object
    replayed: bool
    seconds: float
    original: "Call | None" = None
    plan_id: int | None = None  # the plan a consent request (confirm, decline, capture, void) is about

    @property
    def code(self) -> str:
        return self.answer.get("code", "") if isinstance(self.answer, dict) else ""


class Http:
    """Requests to the service, each recorded (one connection each: gunicorn's sync workers
    close it after every answer anyway)."""

    def __init__(self, port: int):
        self.port = port
        self.calls: list[Call] = []  # list.append is atomic: the threads share it

    def send(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        actor: Actor | None = None,
        body: object = None,
        raw: bytes | None = None,
        key: str | None = None,
        kind: str = "ok",
        headers: dict | None = None,
        original: Call | None = None,
        plan_id: int | None = None,
    ) -> Call:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent_headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if actor is not None and actor.token:
            sent_headers["Authorization"] = f"Bearer {actor.token}"
        if key is not None:
            sent_headers["Idempotency-Key"] = key
        sent_headers.update(headers or {})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        started = time.perf_counter()
        try:
            connection.request(method, path, body=data, headers=sent_headers)
            response = connection.getresponse()
            content, status = response.read(), response.status
            replayed = response.getheader("Idempotent-Replayed") == "true"
        except (OSError, http.client.HTTPException) as exc:
            content, status, replayed = repr(exc).encode(), 0, False
        finally:
            connection.close()
        try:
            answer = json.loads(content) if content else None
        except ValueError:
            answer = content[:200].decode(errors="replace")
        seconds = time.perf_counter() - started
        call = Call(
            endpoint,
            kind,
            status,
            actor,
            key,
            body if raw is None else raw,
            answer,
            replayed,
            seconds,
            original,
            plan_id,
        )
        self.calls.append(call)
        return call


# --- What the clients know of the world -----------------------------------------------------------


@dataclass(slots=True, eq=False)
class PlanRef:
    id: int
    customer: Actor
    merchant: Actor
    total: Decimal
    amounts: dict[int, Decimal]  # installment id -> amount at creation
    open_ids: list[int]  # installments not known to be done
    aged: int = 0


@dataclass(slots=True, eq=False)
class OfferRef:
    """A plan offered and not yet owed: PENDING, or AUTHORIZED once confirmed with manual capture."""

    id: int
    customer: Actor
    merchant: Actor
    total: Decimal
    installment_count: int


@dataclass(slots=True, eq=False)
class RefundRef:
    id: int
    transaction_id: str
    plan: PlanRef
    amount: Decimal
    decision: str = ""  # the webhook status that decides it
    conflict_sent: bool = False


class World:
    """The plans and refunds the clients made, shared by the threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.plans: list[PlanRef] = []
        self.payable: list[PlanRef] = []  # not known to be closed
        self.offers: list[OfferRef] = []  # PENDING, as far as the clients know
        self.authorized: list[OfferRef] = []  # AUTHORIZED, as far as the clients know
        self.closed: list[OfferRef] = []  # DECLINED or VOIDED: nothing may be paid or refunded on them
        self.pending: list[RefundRef] = []
        self.decided: list[RefundRef] = []

    def add_plan(self, plan: PlanRef) -> None:
        with self.lock:
            self.plans.append(plan)
            self.payable.append(plan)

    def take(self, pool: list[OfferRef], rng: random.Random, *, keep: bool = False) -> OfferRef | None:
        """An offer of ``pool``, taken out of it unless ``keep`` (then another client may answer
        it too, and one of them gets a 409)."""
        with self.lock:
            if not pool:
                return None
            index = rng.randrange(len(pool))
            return pool[index] if keep else pool.pop(index)

    def put(self, pool: list[OfferRef], offer: OfferRef) -> None:
        with self.lock:
            pool.append(offer)

    def any_plan(self, rng: random.Random, *, payable: bool = False) -> PlanRef | None:
        with self.lock:
            pool = self.payable if payable else self.plans
            return rng.choice(pool) if pool else None

    def retire(self, plan: PlanRef) -> None:
        with self.lock:
            if plan in self.payable:
                self.payable.remove(plan)

    def installment_done(self, plan: PlanRef, installment_id: int) -> None:
        with self.lock:
            if installment_id in plan.open_ids:
                plan.open_ids.remove(installment_id)
        if not plan.open_ids:
            self.retire(plan)

    def take_pending(self, rng: random.Random) -> RefundRef | None:
        with self.lock:
            return self.pending.pop(rng.randrange(len(self.pending))) if self.pending else None

    def any_decided(self, rng: random.Random) -> RefundRef | None:
        with self.lock:
            candidates = [r for r in self.decided[-200:] if not r.conflict_sent]
            return rng.choice(candidates) if candidates else None

    def to_age(self, rng: random.Random, share: float) -> list[PlanRef]:
        with self.lock:
            pool = list(self.payable)
        return rng.sample(pool, max(1, int(len(pool) * share))) if pool else []


# --- The traffic ---------------------------------------------------------------------------------

PLANS, PLAN = "POST /api/v1/plans/", "GET /api/v1/plans/{id}/"
CONFIRM, DECLINE = "POST /api/v1/plans/{id}/confirm/", "POST /api/v1/plans/{id}/decline/"
CAPTURE, VOID = "POST /api/v1/plans/{id}/capture/", "POST /api/v1/plans/{id}/void/"
CONSENT = (CONFIRM, DECLINE, CAPTURE, VOID)
PAY_INSTALLMENT, PAY_PLAN = "POST /api/v1/installments/{id}/pay/", "POST /api/v1/plans/{id}/pay/"
REFUNDS, REFUND, WEBHOOK = "POST /api/v1/refunds/", "GET /api/v1/refunds/{id}/", "POST /webhook/refund-status/"


class Traffic:
    def __init__(self, http_: Http, world: World, merchants: list[Actor], customers: list[Actor]):
        self.http, self.world, self.merchants, self.customers = http_, world, merchants, customers

    @staticmethod
    def key(what: str) -> str:
        return f"soak-{what}-{uuid.uuid4().hex}"

    def act(self, rng: random.Random, action: str) -> None:
        getattr(self, action)(rng)

    # Plans ---------------------------------------------------------------------------------

    def plan(self, rng: random.Random) -> None:
        merchant, customer = rng.choice(self.merchants), rng.choice(self.customers)
        key = self.key("plan")
        body = {
            "user_id": customer.user_id,
            "total_amount": money(rng.randint(2000, 40000)),
            "installment_count": rng.choice((2, 3, 4, 4, 6)),
            "frequency": rng.choice(FREQUENCIES),
            "merchant_reference": key,
        }
        if rng.random() < 0.35:
            body["capture_mode"] = "manual"
        call = self.http.send(PLANS, "POST", "/api/v1/plans/", actor=merchant, body=body, key=key)
        if call.status == 201:
            offer = OfferRef(
                call.answer["id"], customer, merchant, Decimal(body["total_amount"]), body["installment_count"]
            )
            self.world.put(self.world.offers, offer)
        elif call.code == "debt_user_forbidden" and rng.random() < 0.5:
            self.settle_debt(rng, customer)
        # Only a kept answer is replayed, or refuses the key with another body: after a refusal
        # that keeps nothing (a 403, say) the key is free again, and sent again it is a new request.
        if call.status in NOT_STORED:
            return
        roll = rng.random()
        if roll < REPLAY_SHARE:
            self.http.send(
                PLANS, "POST", "/api/v1/plans/", actor=merchant, body=body, key=key, kind="replay", original=call
            )
        elif roll < REPLAY_SHARE + REUSE_SHARE:
            other = body | {"total_amount": money(rng.randint(2000, 40000)), "merchant_reference": f"{key}-reused"}
            self.http.send(
                PLANS, "POST", "/api/v1/plans/", actor=merchant, body=other, key=key, kind="reuse", original=call
            )

    # Consent: the customer confirms or declines, the merchant captures or voids ---------------

    def confirm(self, rng: random.Random) -> None:
        offer = self.world.take(self.world.offers, rng, keep=rng.random() < 0.15)
        if offer is None:
            return
        call = self._consent(rng, CONFIRM, "confirm", offer, offer.customer)
        if call.status == 200 and call.answer["status"] == "ACTIVE":
            self._owed(offer, call)
        elif call.status == 200 and call.answer["status"] == "AUTHORIZED":
            self.world.put(self.world.authorized, offer)
        elif call.code == "debt_user_forbidden":
            # It may settle its debt, and the offer is still open until it lapses.
            if rng.random() < 0.5:
                self.settle_debt(rng, offer.customer)
            self.world.put(self.world.offers, offer)

    def decline(self, rng: random.Random) -> None:
        offer = self.world.take(self.world.offers, rng, keep=rng.random() < 0.15)
        if offer is not None and self._consent(rng, DECLINE, "decline", offer, offer.customer).status == 200:
            self.world.put(self.world.closed, offer)

    def capture(self, rng: random.Random) -> None:
        offer = self.world.take(self.world.authorized, rng, keep=rng.random() < 0.1)
        if offer is None:
            return
        roll, body = rng.random(), {}
        if roll < 0.1:
            body = {"amount": money(cents(offer.total) + 1)}  # above the authorization: 422
        elif roll < 0.4:
            body = {"amount": money(rng.randint(offer.installment_count, cents(offer.total)))}
        call = self._consent(rng, CAPTURE, "capture", offer, offer.merchant, body)
        if call.status == 200:
            self._owed(offer, call)
        elif call.code == "capture_exceeds_authorized":
            self.world.put(self.world.authorized, offer)

    def void(self, rng: random.Random) -> None:
        offer = self.world.take(self.world.authorized, rng)
        if offer is not None and self._consent(rng, VOID, "void", offer, offer.merchant).status == 200:
            self.world.put(self.world.closed, offer)

    def _consent(
        self, rng: random.Random, endpoint: str, verb: str, offer: OfferRef, actor: Actor, body: dict | None = None
    ) -> Call:
        path, key = f"/api/v1/plans/{offer.id}/{verb}/", self.key(verb)
        call = self.http.send(endpoint, "POST", path, actor=actor, body=body or {}, key=key, plan_id=offer.id)
        if call.status not in NOT_STORED and rng.random() < REPLAY_SHARE / 2:
            self.http.send(
                endpoint,
                "POST",
                path,
                actor=actor,
                body=body or {},
                key=key,
                kind="replay",
                original=call,
                plan_id=offer.id,
            )
        return call

    def _owed(self, offer: OfferRef, call: Call) -> None:
        """The plan became ACTIVE: payable, refundable, aged by the clock."""
        amounts = {i["id"]: Decimal(i["amount_due"]) for i in call.answer["installments"]}
        total = Decimal(call.answer["total_amount"])
        self.world.add_plan(PlanRef(offer.id, offer.customer, offer.merchant, total, amounts, list(amounts)))

    # Payments ------------------------------------------------------------------------------

    def pay_installment(self, rng: random.Random) -> None:
        plan = self.world.any_plan(rng, payable=True)
        if plan is None or not plan.open_ids:
            return
        installment_id = rng.choice(plan.open_ids)
        body = {} if rng.random() < 0.7 else {"amount": money(rng.randint(100, 6000))}
        path = f"/api/v1/installments/{installment_id}/pay/"
        call = self._pay(rng, PAY_INSTALLMENT, path, plan.customer, body)
        done = call.status == 201 and "amount" not in body
        if done or (call.status == 409 and call.code == "nothing_to_pay"):
            self.world.installment_done(plan, installment_id)
        elif call.status == 409 and call.code == "plan_not_payable":
            self.world.retire(plan)

    def pay_plan(self, rng: random.Random) -> None:
        plan = self.world.any_plan(rng, payable=True)
        if plan is None:
            return
        read = self.http.send(PLAN, "GET", f"/api/v1/plans/{plan.id}/", actor=plan.customer)
        if read.status != 200:
            return
        left = Decimal(read.answer["amount_remaining"])
        if read.answer["status"] != "ACTIVE" or left <= 0:
            self.world.retire(plan)
            return
        amount = left if rng.random() < 0.3 else Decimal(money(rng.randint(1, cents(left))))
        call = self._pay(rng, PAY_PLAN, f"/api/v1/plans/{plan.id}/pay/", plan.customer, {"amount": str(amount)})
        if call.status == 409 and call.code == "plan_not_payable":
            self.world.retire(plan)

    def settle_debt(self, rng: random.Random, customer: Actor) -> None:
        """A customer refused a plan for its debt reads what is overdue and pays it."""
        debt = self.http.send("GET /api/v1/debt/{user_id}/", "GET", f"/api/v1/debt/{customer.user_id}/", actor=customer)
        if debt.status != 200:
            return
        for overdue in debt.answer["overdue_installments"]:
            path = f"/api/v1/installments/{overdue['id']}/pay/"
            self._pay(rng, PAY_INSTALLMENT, path, customer, {})

    def _pay(self, rng: random.Random, endpoint: str, path: str, customer: Actor, body: dict) -> Call:
        key = self.key("pay")
        call = self.http.send(endpoint, "POST", path, actor=customer, body=body, key=key)
        if call.status not in NOT_STORED and rng.random() < REPLAY_SHARE / 2:
            self.http.send(endpoint, "POST", path, actor=customer, body=body, key=key, kind="replay", original=call)
        return call

    # Refunds -------------------------------------------------------------------------------

    def refund(self, rng: random.Random) -> None:
        plan = self.world.any_plan(rng)
        if plan is None:
            return
        transaction_id = self.key("rf")
        share = rng.choice((0.02, 0.05, 0.1, 0.25, 0.5, 1.0))
        amount = Decimal(money(max(1, int(cents(plan.total) * share))))
        body = {"plan_id": plan.id, "transaction_id": transaction_id, "amount": str(amount), "reason": "soak"}
        if rng.random() < 0.6:
            body["payout_method"] = rng.choice(("CARD", "CREDIT"))
        call = self.http.send(REFUNDS, "POST", "/api/v1/refunds/", actor=plan.merchant, body=body, key=self.key("rk"))
        if call.status != 201:
            return
        refund = RefundRef(call.answer["id"], transaction_id, plan, amount)
        if rng.random() < REPEAT_SHARE:
            # The same refund asked again (a new key): the existing one is answered, 200.
            self.http.send(
                REFUNDS, "POST", "/api/v1/refunds/", actor=plan.merchant, body=body, key=self.key("rk"), kind="repeat"
            )
        with self.world.lock:
            self.world.pending.append(refund)

    def decide(self, rng: random.Random) -> None:
        refund = self.world.take_pending(rng)
        if refund is None:
            return
        refund.decision = rng.choices(("approved", "rejected", "failed"), weights=(6, 2, 1))[0]
        steps = (["processing"] if rng.random() < 0.3 else []) + [refund.decision]
        if rng.random() < 0.15:
            steps.append(refund.decision)  # a merchant's retry: harmless
        for status in steps:
            self.webhook(refund.plan.merchant, {"refund_id": refund.transaction_id, "status": status})
        with self.world.lock:
            self.world.decided.append(refund)

    def recheck(self, rng: random.Random) -> None:
        """Read a decided refund; once final, a conflicting decision must change nothing."""
        refund = self.world.any_decided(rng)
        if refund is None:
            return
        read = self.http.send(REFUND, "GET", f"/api/v1/refunds/{refund.id}/", actor=refund.plan.merchant)
        if read.status == 200 and read.answer["status"] in ("APPROVED", "REJECTED"):
            refund.conflict_sent = True
            other = "rejected" if refund.decision == "approved" else "approved"
            self.webhook(refund.plan.merchant, {"refund_id": refund.transaction_id, "status": other}, kind="repeat")

    def webhook(
        self,
        merchant: Actor,
        payload: dict,
        *,
        kind: str = "ok",
        secret: str | None = None,
        at: int | None = None,
        raw: bytes | None = None,
    ) -> Call:
        from core.signatures import signature_header

        body = raw if raw is not None else json.dumps(payload).encode()
        signature = signature_header(merchant.secret if secret is None else secret, at or int(time.time()), body)
        return self.http.send(
            WEBHOOK,
            "POST",
            "/webhook/refund-status/",
            raw=body,
            kind=kind,
            headers={"BNPL-Merchant": merchant.user_id, "BNPL-Signature": signature},
        )

    # Reads ----------------------------------------------------------------------------------

    def read(self, rng: random.Random) -> None:
        plan = self.world.any_plan(rng)
        customer = plan.customer if plan else rng.choice(self.customers)
        choice = rng.randrange(4)
        if choice == 0 and plan:
            self.http.send(PLAN, "GET", f"/api/v1/plans/{plan.id}/", actor=rng.choice((plan.customer, plan.merchant)))
        elif choice == 1:
            self.http.send("GET /api/v1/debt/{user_id}/", "GET", f"/api/v1/debt/{customer.user_id}/", actor=customer)
        elif choice == 2 and plan:
            self.http.send("GET /api/v1/payments/", "GET", f"/api/v1/payments/?plan_id={plan.id}", actor=customer)
        else:
            self.http.send("GET /api/v1/plans/", "GET", "/api/v1/plans/?page_size=20", actor=rng.choice(self.merchants))

    # Invalid requests: each must be answered 4xx ------------------------------------------

    def invalid(self, rng: random.Random) -> None:
        merchant, customer = rng.choice(self.merchants), rng.choice(self.customers)
        plan = self.world.any_plan(rng)
        good = {"user_id": customer.user_id, "total_amount": "100.00", "installment_count": 4}
        cases = [
            (PLANS, "/api/v1/plans/", merchant, good | {"total_amount": "-5.00"}),
            (PLANS, "/api/v1/plans/", merchant, good | {"total_amount": "12.345"}),
            (PLANS, "/api/v1/plans/", merchant, good | {"total_amount": "abc"}),
            (PLANS, "/api/v1/plans/", merchant, good | {"total_amount": "1e12"}),
            (PLANS, "/api/v1/plans/", merchant, good | {"installment_count": 1}),
            (PLANS, "/api/v1/plans/", merchant, good | {"installment_count": "many", "frequency": "DAILY"}),
            (PLANS, "/api/v1/plans/", merchant, good | {"user_id": "soak-nobody"}),
            (PLANS, "/api/v1/plans/", merchant, good | {"currency": "XYZ"}),
            (PLANS, "/api/v1/plans/", merchant, [1, 2]),
            (PLANS, "/api/v1/plans/", merchant, b"{not json"),
            (PLANS, "/api/v1/plans/", None, good),
            (PLANS, "/api/v1/plans/", customer, good | {"user_id": self._other(customer).user_id}),
            (PAY_INSTALLMENT, "/api/v1/installments/999999999/pay/", customer, {}),
            (REFUNDS, "/api/v1/refunds/", customer, {"plan_id": 1, "transaction_id": "x", "amount": "1.00"}),
            (REFUNDS, "/api/v1/refunds/", merchant, {"plan_id": 999999999, "transaction_id": "x", "amount": "1.00"}),
        ]
        if plan is not None:
            installment = rng.choice(list(plan.amounts))
            stranger = self._other(plan.customer)
            cases += [
                (PAY_INSTALLMENT, f"/api/v1/installments/{installment}/pay/", plan.customer, {"amount": "0"}),
                (PAY_INSTALLMENT, f"/api/v1/installments/{installment}/pay/", plan.customer, {"amount": "-1.00"}),
                (PAY_INSTALLMENT, f"/api/v1/installments/{installment}/pay/", plan.customer, {"amount": "9.999"}),
                (PAY_INSTALLMENT, f"/api/v1/installments/{installment}/pay/", stranger, {}),
                (PAY_INSTALLMENT, f"/api/v1/installments/{installment}/pay/", plan.merchant, {}),
                (PAY_PLAN, f"/api/v1/plans/{plan.id}/pay/", plan.customer, {}),
                (PAY_PLAN, f"/api/v1/plans/{plan.id}/pay/", plan.customer, {"amount": "99999.00"}),
                (PAY_PLAN, f"/api/v1/plans/{plan.id}/pay/", plan.customer, {"amount": None}),
                (PAY_PLAN, f"/api/v1/plans/{plan.id}/pay/", stranger, {"amount": "1.00"}),
                (REFUNDS, "/api/v1/refunds/", plan.merchant, {"plan_id": plan.id, "amount": "1.00"}),
                (
                    REFUNDS,
                    "/api/v1/refunds/",
                    plan.merchant,
                    {"plan_id": plan.id, "transaction_id": self.key("rf-over"), "amount": str(plan.total + 1)},
                ),
                (REFUNDS, "/api/v1/refunds/", plan.merchant, {"plan_id": plan.id, "transaction_id": "", "amount": "1"}),
            ]
            if len(self.merchants) > 1:
                other = next(m for m in self.merchants if m is not plan.merchant)
                cases.append(
                    (REFUNDS, "/api/v1/refunds/", other, {"plan_id": plan.id, "transaction_id": "x", "amount": "1.00"})
                )
        offer = self.world.take(self.world.offers, rng, keep=True)
        if offer is not None:
            # Whatever state the offer is in by now: someone else's (404), the wrong role (403),
            # or a body that is not a capture (400).
            other = next((m for m in self.merchants if m is not offer.merchant), None)
            cases += [
                (CONFIRM, f"/api/v1/plans/{offer.id}/confirm/", self._other(offer.customer), {}),
                (DECLINE, f"/api/v1/plans/{offer.id}/decline/", self._other(offer.customer), {}),
                (CONFIRM, f"/api/v1/plans/{offer.id}/confirm/", offer.merchant, {}),
                (CAPTURE, f"/api/v1/plans/{offer.id}/capture/", offer.customer, {}),
                (CAPTURE, f"/api/v1/plans/{offer.id}/capture/", offer.merchant, {"amount": "-1.00"}),
                (CAPTURE, f"/api/v1/plans/{offer.id}/capture/", offer.merchant, {"amount": "1.001"}),
                *([(VOID, f"/api/v1/plans/{offer.id}/void/", other, {})] if other else []),
            ]
        closed = self.world.take(self.world.closed, rng, keep=True)
        if closed is not None:
            # Declined or voided: nothing is owed, so nothing may be paid or refunded (409).
            cases += [
                (PAY_PLAN, f"/api/v1/plans/{closed.id}/pay/", closed.customer, {"amount": "1.00"}),
                (
                    REFUNDS,
                    "/api/v1/refunds/",
                    closed.merchant,
                    {"plan_id": closed.id, "transaction_id": self.key("rf-closed"), "amount": "1.00"},
                ),
                (CONFIRM, f"/api/v1/plans/{closed.id}/confirm/", closed.customer, {}),
                (CAPTURE, f"/api/v1/plans/{closed.id}/capture/", closed.merchant, {}),
                (VOID, f"/api/v1/plans/{closed.id}/void/", closed.merchant, {}),
            ]
        webhooks = ["signature", "stale", "unknown refund", "bad status", "not json", "unknown merchant"]
        pick = rng.randrange(len(cases) + len(webhooks) + 3)
        if pick < len(cases):
            endpoint, path, actor, body = cases[pick]
            raw = body if isinstance(body, bytes) else None
            self.http.send(endpoint, "POST", path, actor=actor, body=None if raw else body, raw=raw, kind="invalid")
        elif pick < len(cases) + len(webhooks):
            self._invalid_webhook(rng, webhooks[pick - len(cases)], merchant)
        elif pick == len(cases) + len(webhooks):
            self.http.send(
                PLANS, "POST", "/api/v1/plans/", actor=merchant, body=good, key="k" * 300, kind="invalid"
            )  # a key longer than 255 characters
        elif pick == len(cases) + len(webhooks) + 1:
            self.http.send(
                PLANS,
                "POST",
                "/api/v1/plans/",
                actor=merchant,
                raw=b"user_id=x",
                headers={"Content-Type": "text/plain"},
                kind="invalid",
            )
        else:
            other = self._other(customer)
            self.http.send(
                "GET /api/v1/debt/{user_id}/", "GET", f"/api/v1/debt/{other.user_id}/", actor=customer, kind="invalid"
            )

    def _invalid_webhook(self, rng: random.Random, case: str, merchant: Actor) -> None:
        with self.world.lock:
            known = rng.choice(self.world.pending or self.world.decided or [None])
        refund_id = known.transaction_id if known and known.plan.merchant is merchant else "soak-rf-unknown"
        payload = {"refund_id": refund_id, "status": "approved"}
        if case == "signature":
            self.webhook(merchant, payload, secret=WRONG_SECRET, kind="invalid")
        elif case == "stale":
            self.webhook(merchant, payload, at=int(time.time()) - 3600, kind="invalid")
        elif case == "unknown refund":
            self.webhook(merchant, {"refund_id": "soak-rf-unknown", "status": "approved"}, kind="invalid")
        elif case == "bad status":
            self.webhook(merchant, {"refund_id": refund_id, "status": "refunded"}, kind="invalid")
        elif case == "not json":
            self.webhook(merchant, {}, raw=b"refund_id=1&status=approved", kind="invalid")
        else:
            ghost = Actor("soak-no-merchant", "MERCHANT", "", secret=WRONG_SECRET)
            self.webhook(ghost, payload, kind="invalid")

    def _other(self, customer: Actor) -> Actor:
        return next(c for c in self.customers if c is not customer)


def client(traffic: Traffic, seed: int, deadline: float, think_ms: float, failures: list[str]) -> None:
    """One client thread: weighted random actions until the deadline."""
    rng = random.Random(seed)  # noqa: S311 - traffic choices, not secrets  # nosec B311
    names, weights = zip(*ACTIONS, strict=True)
    while time.monotonic() < deadline:
        action = rng.choices(names, weights)[0]
        try:
            traffic.act(rng, action)
        except Exception:  # a client bug must not go unseen: it fails the run
            failures.append(f"client {seed} in {action}:\n{traceback.format_exc()}")
            return
        if think_ms:
            time.sleep(rng.expovariate(1000 / think_ms))


# --- The clock and the sweep -------------------------------------------------------------------


class Clock(threading.Thread):
    """Every ``--sweep-seconds``: time moves forward for a share of the open plans (their
    dates shift back), then the overdue sweep runs with late fees, fanned out to the worker,
    and is waited for. Ageing and sweeping take turns, so the sweep's chunks and the ageing
    never update the same installments at once."""

    def __init__(self, world: World, args, failures: list[str]):
        super().__init__(name="soak-clock", daemon=True)
        self.world, self.args, self.failures = world, args, failures
        self.rng = random.Random(args.seed * 7919)  # noqa: S311 - which plans age, not a secret  # nosec B311
        self.stop_event = threading.Event()
        self.ticks = self.aged = self.expired = 0

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stop_event.wait(self.args.sweep_seconds):
                self.aged += self.age(self.world.to_age(self.rng, self.args.age_share))
                self.sweep()
                self.expire()
                self.ticks += 1
        except Exception:
            self.failures.append(f"clock:\n{traceback.format_exc()}")
        finally:
            connection.close()

    @staticmethod
    def age(plans: list[PlanRef]) -> int:
        """Shift the dates of ``plans`` back (35 days the first time, 8 after), locking the plans
        in id order first as the services do; returns how many were aged."""
        from django.db import transaction
        from django.db.models import F

        from bnpl.models import Installment, Plan

        by_days = defaultdict(list)
        for plan in plans:
            by_days[LATER_AGE_DAYS if plan.aged else FIRST_AGE_DAYS].append(plan)
        aged = 0
        for days, group in by_days.items():
            shift = timedelta(days=days)
            with transaction.atomic():
                ids = list(
                    Plan.objects.select_for_update(no_key=True)
                    .filter(pk__in=[p.id for p in group], status=Plan.Status.ACTIVE)
                    .order_by("pk")
                    .values_list("pk", flat=True)
                )
                Installment.objects.filter(plan_id__in=ids).update(
                    due_date=F("due_date") - shift, overdue_since=F("overdue_since") - shift
                )
                Plan.objects.filter(pk__in=ids).update(purchase_date=F("purchase_date") - shift)
            for plan in group:
                plan.aged += plan.id in ids
            aged += len(ids)
        return aged

    def expire(self) -> None:
        """The expiry task's run on a clock moved forward: the offers made more than a tick
        ago lapse (their checkout time is over), and every other tick the authorizations
        confirmed more than a tick ago too, while the clients go on confirming and capturing."""
        from django.conf import settings
        from django.utils import timezone

        from bnpl.services.checkout import plans_expire

        ahead = timedelta(minutes=settings.BNPL_CHECKOUT_TTL_MINUTES)
        if self.ticks % 2:
            ahead = timedelta(days=settings.BNPL_AUTHORIZATION_DAYS)
        self.expired += plans_expire(now=timezone.now() + ahead - timedelta(seconds=self.args.sweep_seconds))

    def sweep(self, timeout: float = 300) -> None:
        """One sweep run, fanned out to the worker, waited for until it is closed."""
        from bnpl.models import SweepRun
        from bnpl.services.sweep import overdue_sweep

        run = overdue_sweep(late_fees=True, fan_out=True, chunk_plans=self.args.chunk_plans)
        deadline = time.monotonic() + timeout
        while not SweepRun.objects.filter(pk=run.pk, finished_at__isnull=False).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"sweep run {run.pk} not closed after {timeout:.0f} s")
            time.sleep(0.2)


# --- Setting up the actors -----------------------------------------------------------------------


def register(http_: Http, index: int, role: str, card: str = "") -> Actor:
    """A user registered through the API."""
    prefix = "soak-m" if role == "MERCHANT" else "soak-c"
    actor = Actor(f"{prefix}-{index:04d}", role, secrets.token_urlsafe(12), card_last4=card[-4:])
    body = {
        "username": actor.user_id,
        "user_id": actor.user_id,
        "password": actor.password,
        "role": role,
        "full_name": f"Soak {role.title()} {index}",
        "phone_number": f"+9989{1 if role == 'MERCHANT' else 2}{index:07d}",
        "email": f"{actor.user_id}@example.com",
        **({"card_number": card} if card else {}),
    }
    made = http_.send("POST /api/v1/auth/register/", "POST", "/api/v1/auth/register/", body=body, kind="setup")
    if made.status != 201:
        raise SystemExit(f"registering {actor.user_id}: {made.status} {made.answer}")
    actor.secret = made.answer.get("webhook_secret") or ""
    return actor


def customer_cards(count: int) -> list[str]:
    """One customer in six with a card declined, one in six with insufficient funds (at least one each)."""
    declining = max(1, count // 6)
    cards = [DECLINING_CARDS["0002"][0]] * declining + [DECLINING_CARDS["9995"][0]] * declining
    cards += [GOOD_CARDS[i % len(GOOD_CARDS)] for i in range(count - len(cards))]
    return cards


def actors(http_: Http, args) -> tuple[list[Actor], list[Actor]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        merchants = list(pool.map(lambda i: register(http_, i, "MERCHANT"), range(1, args.merchants + 1)))
        cards = customer_cards(args.customers)
        customers = list(pool.map(lambda i: register(http_, i + 1, "CUSTOMER", cards[i]), range(args.customers)))
    # Their access tokens, signed with the service's key as /api/v1/auth/token/ signs them: a
    # login per user would only add a password hash each (a second of CPU on a busy machine).
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import User

    users = {u.user_id: u for u in User.objects.filter(user_id__in=[a.user_id for a in merchants + customers])}
    for actor in merchants + customers:
        actor.token = str(AccessToken.for_user(users[actor.user_id]))
    return merchants, customers


# --- Reconciliation ------------------------------------------------------------------------------


class Books:
    """What the soak's merchants' plans left in the database, read once after the run."""

    def __init__(self, merchants: list[Actor], actors_: list[Actor]):
        from bnpl.models import Installment, LateFee, Plan
        from core.models import IdempotencyKey
        from ledger.accounts import CUSTOMER_RECEIVABLE
        from ledger.models import JournalEntry, Posting
        from payments.models import Payment
        from refunds.models import Refund

        mine = Plan.objects.filter(merchant__user_id__in=[m.user_id for m in merchants]).select_related("customer")
        self.plans = {p.pk: p for p in mine}
        plans = list(self.plans)
        self.installments, self.fees = defaultdict(list), defaultdict(list)
        for installment in Installment.objects.filter(plan_id__in=plans).select_related("customer"):
            self.installments[installment.plan_id].append(installment)
        for fee in LateFee.objects.filter(plan_id__in=plans):
            self.fees[fee.plan_id].append(fee)
        self.payments = {
            p.pk: p
            for p in Payment.objects.filter(plan_id__in=plans)
            .select_related("customer")
            .prefetch_related("allocations")
        }
        self.refunds = {r.transaction_id: r for r in Refund.objects.filter(plan_id__in=plans)}
        # (kind, memo) -> how many entries: a payment's entry says "Payment <id>", a refund's
        # "Refund <transaction_id> ...".
        self.entries = Counter(JournalEntry.objects.filter(plan_id__in=plans).values_list("kind", "memo"))
        self.originations = Counter(
            JournalEntry.objects.filter(plan_id__in=plans, kind=JournalEntry.Kind.ORIGINATION).values_list(
                "plan_id", flat=True
            )
        )
        self.originated = dict(
            Posting.objects.filter(
                entry__kind=JournalEntry.Kind.ORIGINATION, plan_id__in=plans, account__code=CUSTOMER_RECEIVABLE
            ).values_list("plan_id", "amount")
        )
        self.keys = {
            (k.principal.user_id, k.key): k
            for k in IdempotencyKey.objects.filter(principal__user_id__in=[a.user_id for a in actors_]).select_related(
                "principal"
            )
        }
        self.by_reference = Counter(p.merchant_reference for p in self.plans.values())


class Reconciliation:
    """Every answer the clients got, against the database after the traffic, the last sweep
    and the worker: checks counted per kind, the first mismatches kept to be shown."""

    def __init__(self, calls: list[Call], merchants: list[Actor], customers: list[Actor]):
        self.calls, self.merchants, self.customers = calls, merchants, customers
        self.rows: dict[str, list[int]] = {}
        self.examples: list[str] = []
        self.totals: dict[str, object] = {}

    def check(self, kind: str, ok: bool, detail: str = "") -> None:
        row = self.rows.setdefault(kind, [0, 0])
        row[0] += 1
        if not ok:
            row[1] += 1
            if len(self.examples) < 40:
                self.examples.append(f"{kind}: {detail}")

    @property
    def mismatched(self) -> int:
        return sum(bad for _, bad in self.rows.values())

    def originals(self, endpoint: str) -> list[Call]:
        return [c for c in self.calls if c.endpoint == endpoint and c.kind == "ok"]

    def run(self) -> "Reconciliation":
        books = Books(self.merchants, self.merchants + self.customers)
        self.answers()
        self.plans(books)
        self.consent(books)
        self.replays(books)
        self.payments(books)
        self.refunds(books)
        self.keys(books)
        self.sweep(books)
        return self

    def answers(self) -> None:
        for call in self.calls:
            self.check("requests answered", call.status != 0, f"{call.endpoint}: {call.answer}")
            self.check("no 5xx", call.status < 500, f"{call.endpoint} {call.status}: {call.answer}")
            if call.kind == "invalid":
                ok = 400 <= call.status < 500
                self.check("invalid request -> 4xx", ok, f"{call.endpoint} {call.status} {call.sent}")

    def plans(self, books: Books) -> None:
        """A 201 offer exists once, PENDING as answered with its terms; a refused one left no
        plan; no plan exists that was not answered 201. A plan owed now has the installments
        its activation (a confirmation, or a capture) answered and one origination entry of its
        total; a plan not owed has no installments, entries, payments, fees or refunds."""
        created = self.originals(PLANS)
        activations = self.activations()
        for call in created:
            if call.status != 201:
                self.check("plan refused: none created", books.by_reference[call.key] == 0, f"{call.status} {call.key}")
                continue
            plan = books.plans.get(call.answer["id"])
            ok = (
                plan is not None
                and books.by_reference[call.key] == 1
                and plan.merchant_reference == call.key
                and plan.customer.user_id == call.sent["user_id"]
                and plan.authorized_amount == Decimal(call.sent["total_amount"])
                and plan.capture_mode == call.sent.get("capture_mode", "automatic")
                and call.answer["status"] == "PENDING"
                and not call.answer["installments"]
                and len(call.answer["schedule"]) == call.sent["installment_count"]
            )
            self.check("plan answered 201: an offer, PENDING, exists once", ok, f"{call.answer}")
            if plan is None:
                continue
            rows = sorted(books.installments.get(plan.pk, []), key=lambda i: i.sequence)
            if plan.status in OWED:
                answer = activations[plan.pk].answer if plan.pk in activations else {"installments": []}
                ok = (
                    [i.pk for i in rows] == [i["id"] for i in answer["installments"]]
                    and len(rows) == plan.installment_count
                    and sum(Decimal(i["amount_due"]) for i in answer["installments"]) == plan.total_amount
                    and plan.total_amount <= plan.authorized_amount
                    and books.originations[plan.pk] == 1
                    and books.originated.get(plan.pk) == plan.total_amount
                )
                self.check("plan owed: the installments answered, one origination entry", ok, f"plan {plan.pk}")
            else:
                ok = not rows and not books.originations[plan.pk] and not books.fees.get(plan.pk)
                ok = ok and not any(p.plan_id == plan.pk for p in books.payments.values())
                ok = ok and not any(r.plan_id == plan.pk for r in books.refunds.values())
                what = "plan not owed (an open or closed offer): nothing scheduled, posted, paid or refunded"
                self.check(what, ok, f"plan {plan.pk} {plan.status}")
        answered = sum(c.status == 201 for c in created)
        self.check(
            "plans in the database = plans answered 201",
            len(books.plans) == answered,
            f"{len(books.plans)} in the database, {answered} answered 201",
        )

    def activations(self) -> dict[int, Call]:
        """Per plan, the answer that made it ACTIVE: a confirmation (automatic capture) or a capture."""
        return {
            call.plan_id: call
            for call in self.originals(CONFIRM) + self.originals(CAPTURE)
            if call.status == 200 and call.answer["status"] == "ACTIVE"
        }

    def consent(self, books: Books) -> None:
        """Each plan's state is what the answers to its confirm, decline, capture and void say:
        each transition answered 200 once at most, and only the one the state came through; a
        409 only once the plan had left the state it asked for; no offer left PENDING or
        AUTHORIZED that an answer moved on."""
        wins: dict[int, Counter] = defaultdict(Counter)
        for call in self.calls:
            if call.endpoint in CONSENT and call.kind == "ok":
                if call.status == 200:
                    wins[call.plan_id][call.endpoint] += 1
                elif call.status == 409:
                    plan = books.plans.get(call.plan_id)
                    asked = "PENDING" if call.endpoint in (CONFIRM, DECLINE) else "AUTHORIZED"
                    ok = plan is not None and plan.status != asked and call.answer.get("plan_status") != asked
                    self.check("consent refused 409: the plan had left the state asked", ok, f"{call.answer}")
                elif call.code == "capture_exceeds_authorized":
                    plan = books.plans.get(call.plan_id)
                    ok = plan is not None and Decimal(call.sent["amount"]) > plan.authorized_amount
                    self.check("capture refused 422: above the authorization", ok, f"{call.sent} {call.answer}")
        captured = {c.plan_id: c for c in self.originals(CAPTURE) if c.status == 200 and c.kind == "ok"}
        for plan_id, plan in books.plans.items():
            got = wins.get(plan_id, Counter())
            manual = plan.capture_mode == "manual"
            if plan.status in OWED:
                wanted = Counter({CONFIRM: 1, CAPTURE: 1} if manual else {CONFIRM: 1})
            elif plan.status == "AUTHORIZED":
                wanted = Counter({CONFIRM: 1})
            elif plan.status == "VOIDED":
                wanted = Counter({CONFIRM: 1, VOID: 1})
            elif plan.status == "DECLINED":
                wanted = Counter({DECLINE: 1})
            elif plan.status == "EXPIRED":
                # An offer that lapsed, or an authorization that did (confirmed, then nothing).
                wanted = Counter({CONFIRM: 1}) if manual and plan.confirmed_at else Counter()
            else:
                wanted = Counter()
            self.check(
                "plan's state = its transitions answered 200, once each",
                got == wanted and (plan.confirmed_at is not None) == bool(got[CONFIRM]),
                f"plan {plan_id} {plan.status} ({plan.capture_mode}): {dict(got)}",
            )
            call = captured.get(plan_id)
            if call is not None:
                asked = Decimal(call.sent["amount"]) if call.sent.get("amount") else plan.authorized_amount
                ok = plan.total_amount == asked == Decimal(call.answer["total_amount"])
                self.check("capture answered 200: the plan's total is what was captured", ok, f"plan {plan_id}")
        statuses = Counter(p.status for p in books.plans.values())
        self.totals |= {f"plans {status}": n for status, n in sorted(statuses.items())}

    def replays(self, books: Books) -> None:
        """A replay got the first answer, marked replayed, and made nothing;
        a key sent again with another body was refused."""
        for call in self.calls:
            first = call.original
            if call.kind == "replay":
                ok = call.status == first.status and call.answer == first.answer and call.replayed
                if first.endpoint == PLANS:
                    ok = ok and books.by_reference[first.key] == (1 if first.status == 201 else 0)
                what = f"replay of {first.endpoint}: the first answer, nothing new"
                self.check(what, ok, f"{first.status}->{call.status} {call.answer}")
            elif call.kind == "reuse":
                ok = call.status == 422 and call.code == "idempotency_key_reused"
                ok = ok and books.by_reference[call.sent["merchant_reference"]] == 0
                self.check("key reused with another body: 422, nothing created", ok, f"{call.status} {call.answer}")

    def payments(self, books: Books) -> None:
        """A 201 payment SUCCEEDED with the allocations answered and one entry; a 402 one is
        FAILED with the card's decline code and no entry; nothing else made a payment; every
        plan's installments and fees hold exactly what its successful payments paid."""
        from ledger.models import JournalEntry
        from payments.models import Payment

        pays = self.originals(PAY_INSTALLMENT) + self.originals(PAY_PLAN)
        for call in pays:
            if call.status == 201:
                payment = books.payments.get(call.answer["id"])
                allocations = sorted(
                    (a.installment_id or 0, a.late_fee_id or 0, a.amount)
                    for a in (payment.allocations.all() if payment else [])
                )
                answered = sorted(
                    (a["installment_id"] or 0, a["late_fee_id"] or 0, Decimal(a["amount"]))
                    for a in call.answer["allocations"]
                )
                ok = (
                    payment is not None
                    and payment.status == Payment.Status.SUCCEEDED
                    and payment.customer.user_id == call.actor.user_id
                    and ("amount" not in call.sent or payment.amount == Decimal(call.sent["amount"]))
                    and allocations == answered
                    and sum(a[2] for a in allocations) == payment.amount
                    and books.entries[(JournalEntry.Kind.PAYMENT, f"Payment {payment.pk}")] == 1
                    # A card the gateway refuses pays nothing: only a credit balance can.
                    and (not call.actor.declines or payment.credit_amount == payment.amount)
                )
                self.check("payment answered 201: SUCCEEDED, allocations, one entry", ok, f"{call.answer}")
            elif call.status == 402:
                payment = books.payments.get(call.answer.get("payment_id"))
                ok = (
                    payment is not None
                    and payment.status == Payment.Status.FAILED
                    and payment.decline_code == call.answer.get("decline_code") == call.actor.declines
                    and books.entries[(JournalEntry.Kind.PAYMENT, f"Payment {payment.pk}")] == 0
                )
                self.check("payment answered 402: FAILED, no entry", ok, f"{call.answer}")
            elif 200 <= call.status < 300:
                self.check("payment answered 201 or 402 when it moved", False, f"{call.status} {call.answer}")
        answered = {c.answer["id"] for c in pays if c.status == 201}
        answered |= {c.answer["payment_id"] for c in pays if c.status == 402}
        unanswered = sorted(set(books.payments) - answered)
        self.check(
            "payments in the database = payments answered 201 or 402",
            set(books.payments) == answered,
            f"{len(books.payments)} in the database, {len(answered)} answered; not answered: {unanswered[:5]}",
        )
        pending = [p.pk for p in books.payments.values() if p.status == Payment.Status.PENDING]
        self.check("no payment left PENDING", not pending, f"{pending[:5]}")
        succeeded, applied = defaultdict(Decimal), defaultdict(Decimal)
        for payment in books.payments.values():
            if payment.status == Payment.Status.SUCCEEDED:
                succeeded[payment.plan_id] += payment.amount
                # A share no longer owed when the payment succeeded (a refund lowered it while
                # the payment was PENDING) went to the customer's credit, not to the plan.
                credited = sum((a.credited for a in payment.allocations.all()), Decimal(0))
                applied[payment.plan_id] += payment.amount - credited
        for plan_id in books.plans:
            paid = sum((i.amount_paid for i in books.installments[plan_id]), Decimal(0))
            paid += sum((f.amount_paid for f in books.fees[plan_id]), Decimal(0))
            self.check(
                "plan's installments and fees hold exactly its successful payments, less what they credited",
                paid == applied[plan_id],
                f"plan {plan_id}: paid {paid}, payments {succeeded[plan_id]}, of them applied {applied[plan_id]}",
            )
        self.totals |= {
            "payments SUCCEEDED": sum(p.status == Payment.Status.SUCCEEDED for p in books.payments.values()),
            "payments FAILED": sum(p.status == Payment.Status.FAILED for p in books.payments.values()),
            "paid": sum(succeeded.values(), Decimal(0)),
        }

    def refunds(self, books: Books) -> None:
        """A 201 refund exists once, asked again it is the same one, a refused one left none;
        the webhook's decision is the refund's state, applied once when approved (installments
        lowered by exactly what was applied, the rest paid out or credited with one entry)."""
        from ledger.models import JournalEntry
        from refunds.models import Refund

        asked = self.originals(REFUNDS)
        accepted = {c.sent["transaction_id"]: c for c in asked if c.status == 201}
        for transaction_id, call in accepted.items():
            refund = books.refunds.get(transaction_id)
            ok = (
                refund is not None
                and refund.pk == call.answer["id"]
                and refund.plan_id == call.sent["plan_id"]
                and refund.amount == Decimal(call.sent["amount"])
            )
            self.check("refund answered 201: exists once", ok, f"{call.answer}")
        for call in asked:
            if call.status != 201:
                ok = 400 <= call.status < 500 and call.sent["transaction_id"] not in books.refunds
                self.check("refund refused: none created", ok, f"{call.status} {call.sent}")
        for call in self.calls:
            if call.endpoint == REFUNDS and call.kind == "repeat":
                first = accepted.get(call.sent["transaction_id"])
                ok = call.status == 200 and first is not None and call.answer["id"] == first.answer["id"]
                self.check("refund asked again: 200, the same refund", ok, f"{call.status} {call.answer}")
        self.check(
            "refunds in the database = refunds answered 201",
            set(books.refunds) == set(accepted),
            f"{len(books.refunds)} in the database, {len(accepted)} answered 201",
        )
        decisions = {}
        for call in self.calls:
            if call.endpoint == WEBHOOK and call.kind in ("ok", "repeat"):
                # Queued for the worker (accepted), or ignored at once: the refund was final or
                # had the status already (a merchant's retry), and nothing was queued.
                answer = call.answer if isinstance(call.answer, dict) else {}
                queued = (answer.get("processing_mode"), answer.get("applied")) == ("async", True)
                ignored = (answer.get("processing_mode"), answer.get("applied")) == ("sync", False)
                ok = call.status == 200 and (queued or ignored)
                self.check("webhook answered 200 (queued, or ignored at once)", ok, f"{call.status} {call.answer}")
                sent = json.loads(call.sent)
                if call.kind == "repeat":
                    # The opposite decision, sent once the refund was read final: ignored, and the
                    # answer is the refund's final status, not the one sent.
                    refund = books.refunds.get(sent["refund_id"])
                    ok = ignored and refund is not None and answer.get("status") == refund.status.lower()
                    self.check("webhook on a final refund: ignored, answers its status", ok, f"{call.answer}")
                if call.kind == "ok" and sent["status"] != "processing":
                    decisions[sent["refund_id"]] = sent["status"]
        booked = defaultdict(Counter)
        for (kind, memo), n in books.entries.items():
            if memo.startswith("Refund "):
                booked[memo.split()[1]][kind] += n
        paid_out = {
            Refund.PayoutStatus.PAID: {JournalEntry.Kind.REFUND_PAYOUT: 1},
            Refund.PayoutStatus.CREDITED: {JournalEntry.Kind.REFUND_CREDIT: 1},
        }
        applied = defaultdict(Decimal)
        for transaction_id, refund in books.refunds.items():
            entries = booked[transaction_id]
            decision = decisions.get(transaction_id)
            if decision == "approved":
                ok = (
                    refund.status == Refund.Status.APPROVED
                    and refund.applied_amount + refund.payout_amount == refund.amount
                    and (refund.payout_amount == 0) == (refund.payout_status == Refund.PayoutStatus.NONE)
                    # The applied part is one entry even when nothing was left to lower (then empty).
                    and entries
                    == Counter({JournalEntry.Kind.REFUND_APPLIED: 1} | paid_out.get(refund.payout_status, {}))
                )
                self.check("refund approved by webhook: APPROVED, applied once", ok, f"{transaction_id} {entries}")
            elif decision in ("rejected", "failed"):
                ok = refund.status == Refund.Status.REJECTED and not entries and refund.applied_amount == 0
                self.check("refund rejected by webhook: REJECTED, nothing booked", ok, transaction_id)
            else:
                ok = refund.status == Refund.Status.PENDING and not entries
                self.check("refund undecided: PENDING, nothing booked", ok, transaction_id)
            if refund.status == Refund.Status.APPROVED:
                applied[refund.plan_id] += refund.applied_amount
        at_creation = {
            plan_id: sum((Decimal(i["amount_due"]) for i in call.answer["installments"]), Decimal(0))
            for plan_id, call in self.activations().items()
        }
        for plan_id in books.plans:
            now = sum((i.amount_due for i in books.installments[plan_id]), Decimal(0))
            lowered = at_creation.get(plan_id, Decimal(0)) - now
            self.check(
                "plan's installments lowered by exactly its approved refunds",
                lowered == applied[plan_id],
                f"plan {plan_id}: lowered {lowered}, refunds applied {applied[plan_id]}",
            )
        refunds = books.refunds.values()
        self.totals |= {
            "refunds APPROVED": sum(r.status == Refund.Status.APPROVED for r in refunds),
            "refunds REJECTED": sum(r.status == Refund.Status.REJECTED for r in refunds),
            "refunds PENDING": sum(r.status == Refund.Status.PENDING for r in refunds),
            "refunded": sum((r.amount for r in refunds if r.status == Refund.Status.APPROVED), Decimal(0)),
        }

    def keys(self, books: Books) -> None:
        """Each Idempotency-Key is kept with its answer, or not kept when the request was refused
        before doing anything."""
        from core.models import IdempotencyKey

        for call in self.calls:
            if call.kind not in ("ok", "repeat") or call.key is None or call.actor is None or call.status == 0:
                continue
            record = books.keys.get((call.actor.user_id, call.key))
            if call.status in NOT_STORED or call.status >= 500:
                self.check("idempotency key not kept for a refused request", record is None, call.key)
            else:
                ok = (
                    record is not None
                    and record.status == IdempotencyKey.Status.COMPLETED
                    and record.response_status == call.status
                )
                self.check("idempotency key kept with its answer", ok, f"{call.key} {call.status}")

    def sweep(self, books: Books) -> None:
        """No installment was marked overdue twice, none past due is left unmarked, the fees
        keep within their cap, every customer's status matches its overdue installments, and
        every sweep run was closed."""
        from django.conf import settings

        from accounts.models import User
        from bnpl.models import Installment, LateFee, SweepRun
        from bnpl.schedule import business_today
        from bnpl.services.late_fees import late_fee_cap
        from events.models import Event

        marked = Counter(
            data["installment_id"]
            for data in Event.objects.filter(
                type=Event.Type.INSTALLMENT_OVERDUE, data__plan_id__in=list(books.plans)
            ).values_list("data", flat=True)
        )
        for installment_id, times in marked.items():
            self.check("installment marked overdue once", times == 1, f"installment {installment_id}: {times} times")
        cutoff = business_today() - timedelta(days=settings.BNPL_GRACE_DAYS)
        overdue = set()
        for plan_id, plan in books.plans.items():
            rows = books.installments[plan_id]
            late = [
                i.pk
                for i in rows
                if i.status == Installment.Status.UPCOMING and i.due_date < cutoff and i.amount_paid < i.amount_due
            ]
            self.check(
                "no past-due installment left UPCOMING after the last sweep", not late, f"plan {plan_id}: {late}"
            )
            charged = sum((f.amount for f in books.fees[plan_id] if f.status != LateFee.Status.WAIVED), Decimal(0))
            self.check("late fees within the plan's cap", charged <= late_fee_cap(plan.total_amount), f"plan {plan_id}")
            overdue |= {i.customer.user_id for i in rows if i.status == Installment.Status.OVERDUE}
        for user in User.objects.filter(user_id__in=[c.user_id for c in self.customers]):
            expected = User.Status.DEBT_USER if user.user_id in overdue else User.Status.NORMAL
            self.check("customer's status matches its overdue installments", user.status == expected, user.user_id)
        for run in SweepRun.objects.all():
            self.check("sweep run closed", run.skipped or run.finished_at is not None, f"run {run.pk}")
        self.totals |= {
            "plans": len(books.plans),
            "installments marked overdue": sum(marked.values()),
            "late fees": sum(len(f) for f in books.fees.values()),
            "late fees charged": sum((f.amount for fs in books.fees.values() for f in fs), Decimal(0)),
            "customers in debt at the end": len(overdue),
        }


# --- Report ------------------------------------------------------------------------------------


def report(calls: list[Call], seconds: float, check: Reconciliation, ledger: tuple[int, str], extra: dict) -> bool:
    traffic = [c for c in calls if c.kind != "setup"]
    print()
    print(
        f"requests: {len(traffic):,} in {seconds:.0f} s ({len(traffic) / seconds:.1f}/s), "
        f"{sum(c.status == 0 for c in traffic)} unanswered, {sum(c.status >= 500 for c in traffic)} 5xx"
    )
    print()
    print("| endpoint | kind | requests | statuses | p50 ms | p99 ms |")
    print("|---|---|---:|---|---:|---:|")
    rows = defaultdict(list)
    for call in traffic:
        rows[(call.endpoint, call.kind)].append(call)
    for (endpoint, kind), group in sorted(rows.items()):
        statuses = Counter(c.status for c in group)
        shown = ", ".join(f"{status}: {n:,}" for status, n in sorted(statuses.items()))
        times = sorted(c.seconds * 1000 for c in group)
        p50, p99 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"| {endpoint} | {kind} | {len(group):,} | {shown} | {p50:.0f} | {p99:.0f} |")
    print()
    errors = Counter((c.status, c.code or "-") for c in traffic if not 200 <= c.status < 300)
    print("errors by status (and problem code):")
    for (status, code), n in sorted(errors.items()):
        print(f"  {status} {code}: {n:,}")
    print()
    print("| reconciliation | checked | mismatched |")
    print("|---|---:|---:|")
    for kind, (checked, bad) in check.rows.items():
        print(f"| {kind} | {checked:,} | {bad:,} |")
    for example in check.examples:
        print(f"  MISMATCH {example[:400]}")
    print()
    for name, value in check.totals.items():
        print(f"  {name}: {value:,}" if isinstance(value, int) else f"  {name}: {value}")
    for name, value in extra.items():
        print(f"  {name}: {value}")
    code, text = ledger
    print()
    print(f"ledger: manage.py check_ledger exit {code}: {text.strip()}")
    failed = bool(check.mismatched or code or extra.get("failures"))
    print()
    print("SOAK FAILED" if failed else "SOAK PASSED: every answer reconciled, no 5xx, no ledger breach")
    return not failed


# --- The run -----------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    os.environ.update(SOAK_SETTINGS, JWT_ACCESS_MINUTES=str(int(args.minutes) + 60))
    print(machine_line(), flush=True)
    started = time.perf_counter()
    prepare_database(args)
    redis_client(args.redis_url).flushdb()
    print(f"database seeded (scale {args.scale}) in {time.perf_counter() - started:.1f} s", flush=True)
    os.environ.update(env_for(args, debug=False))
    import django

    django.setup()
    no_other_worker()
    folder = Path(tempfile.mkdtemp(prefix="bnpl_soak_"))
    worker_log, server_log = folder / "worker.log", folder / "gunicorn.log"
    worker, name = start_worker(args.worker_processes, env_for(args, debug=False), worker_log, prefix="soak")
    failures: list[str] = []
    server = None
    try:
        wait_ready(worker, name, worker_log)
        # The service's application with bench/reference.py's bare views beside it, which
        # the soak does not call: the same server the HTTP benchmark measures.
        server = start_gunicorn(args, server_log)
        print(f"worker and gunicorn up after {time.perf_counter() - started:.1f} s", flush=True)
        http_ = Http(args.port)
        merchants, customers = actors(http_, args)
        print(
            f"{len(merchants)} merchants and {len(customers)} customers registered after "
            f"{time.perf_counter() - started:.1f} s "
            f"({sum(bool(c.declines) for c in customers)} with a card the gateway refuses); logs in {folder}",
            flush=True,
        )
        world = World()
        traffic = Traffic(http_, world, merchants, customers)
        clock = Clock(world, args, failures)
        # gunicorn, the worker and their backends are the soak's own.
        watch = TreeWatch(database_name(args.database_url)).start()
        begin = time.monotonic()
        deadline = begin + args.minutes * 60
        threads = [
            threading.Thread(target=client, args=(traffic, args.seed * 1000 + i, deadline, args.think_ms, failures))
            for i in range(args.clients)
        ]
        clock.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - begin
        clock.stop_event.set()
        clock.join()
        watch.stop()
        print(f"traffic stopped after {seconds:.0f} s; a last sweep, then the queue drains", flush=True)
        clock.sweep()  # the last sweep, with no ageing and no traffic
        wait_until(queue_idle(args.redis_url), "the worker's queue to drain", 120, time.perf_counter())
    finally:
        if server is not None:
            stop(server)
        stop_worker(worker)
    print(machine_line(), flush=True)
    ledger = subprocess.run(  # our own command  # nosec B603
        [sys.executable, "manage.py", "check_ledger"],
        cwd=ROOT,
        env=env_for(args, debug=False),
        capture_output=True,
        text=True,
        check=False,
    )
    check = Reconciliation(http_.calls, merchants, customers).run()
    logs = {path.name: error_lines(path) for path in (worker_log, server_log)}
    for log_name, lines in logs.items():
        failures += [f"{log_name}: {line[:300]}" for line in lines[:10]]
    extra = {
        "clock ticks (ageing, a sweep and an expiry run each, plus the last sweep)": (
            f"{clock.ticks} (+1), {clock.aged} plans aged, {clock.expired} offers and authorizations expired"
        ),
        "log lines at ERROR": ", ".join(f"{n}: {len(lines)}" for n, lines in logs.items()),
        "during the traffic": watch.describe(),
    }
    if failures:
        extra["failures"] = "\n".join(failures[:10])
    ok = report(http_.calls, seconds, check, (ledger.returncode, ledger.stdout + ledger.stderr), extra)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
