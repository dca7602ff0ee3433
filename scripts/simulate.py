#!/usr/bin/env python
"""The money simulation (DESIGN §9): threads on PostgreSQL race every money operation the
service has on a few plans at a time, and after each round every invariant must hold.

Each round draws, from one seeded generator, a list of operations on a handful of "hot"
plans and their customers (so that different operations meet on the same plan): plan
creation by the back office (ACTIVE at once); merchants' offers (PENDING, automatic or
manual capture, some retried with the same reference), the customers' confirmations and
refusals of them (on a few "hot" offers, mostly of the hot plans' customers, so that they
race each other, the expiry and those customers' payments and refunds), the merchants'
captures (whole or part) and voids of the authorizations, and expiry runs on a simulated
clock that cuts through the open offers and authorizations; installment payments, plan
payments (partial, or everything: early payoff), with credit spent first, half of them under
the key of an Idempotency-Key claimed by their request (none looked for) and some of those
retried as a request that takes the claim over (the same key finds the payment); refunds
requested (paid back to the card or to credit), approved and rejected by an operator and
by the merchant's signed webhook; late-fee waivers; the overdue sweep with late fees;
autopay runs; reconciliation and retries of pending payments; the merchants' settlement
runs (today's business day, yesterday's, or two at once, in one chunk or one per merchant),
payouts sent (again) and reconciled, and merchants' payout accounts switched (to one the
bank refuses, or none). The operations are shared out to ``--threads`` threads, released
together. The card network is a stand-in that takes a few milliseconds, declines some
charges, and times out on others (before or after it took the money), deterministically by
the charge's key and the seed; the merchants' bank likewise refuses accounts ending 0002 and
times out on some payouts (before or after paying), so they stay PENDING until reconciled.
The settlement's business days follow the simulated clock, each ending between rounds
(``settlement_clock``), so merchants are settled again and again: refunds of plans settled
before become negative lines, negative nets are carried, a refused payout's money comes back.

After each round pending payments are finished (reconciliation, with the same keys), then
``check_ledger``'s invariants must hold, and the network's own records must agree with the
books: every capture is one succeeded payment's, with its amount; every refund sent to a
card is one refund's payout, paid once; per plan, what went back to the customer
(card refunds, credit granted) is never more than what the network and the customer's
credit brought in; and the consent states hold (``consent_breaches``): a plan nobody owes
(PENDING, AUTHORIZED, DECLINED, EXPIRED, VOIDED) has no installments, entries, payments,
refunds or fees; an owed one has one origination entry and installments summing to its
total less its refunds; nothing is captured above its authorization; each transition
happened once (its event); and no customer's unpaid principal and reservations exceed its
credit limit (the limits are fixed here, so every credit decision must have fitted). And
the settlements' (``settlement_breaches``): each captured plan in at most one capture line,
and in exactly one once a run of a day it was activated before has finished; each PAID
payout posted and announced once, a FAILED or PENDING one never; the payouts PAID per
merchant equal to its payout clearing postings; the bank's records equal to the PAID payouts.
On a breach it prints the seed, the round and its operations and exits 1;
``--seed`` with the same value replays the same operations (the interleaving is the
threads' own).

    python scripts/simulate.py --minutes 10           # make simulate MINUTES=10
    python scripts/simulate.py --seed 7 --rounds 40   # CI's bounded pass

Needs the local PostgreSQL; the database named (``--database-url``) is its own: dropped and
created again. Celery runs eagerly in this process (no broker needed).
"""

import argparse
import hashlib
import json
import os
import random
import re
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OPERATIONS = {
    # name: weight in the mix
    "plan": 3,  # the back office: ACTIVE at once
    "offer": 4,  # a merchant's offer: PENDING
    "confirm": 4,
    "decline": 1,
    "capture": 2,
    "void": 1,
    "expire": 1,
    "pay_installment": 6,
    "pay_plan": 5,
    "pay_off": 2,
    "refund_request": 4,
    "refund_operator": 3,
    "refund_webhook": 3,
    "waive": 3,
    "sweep": 2,
    "autopay": 2,
    "reconcile": 1,
    "retry": 2,
    "settle": 3,  # settlement runs: today, yesterday, or two at once
    "payout_send": 2,
    "payout_reconcile": 1,
    "payout_account": 1,  # a merchant's payout account switched (to one the bank refuses, or none)
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="the generator's seed (random when not given)")
    parser.add_argument("--rounds", type=int, default=None, help="stop after this many rounds")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this long (default: 1 minute)")
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--operations", type=int, default=24, help="operations per round")
    parser.add_argument("--hot-plans", type=int, default=3, help="plans each round's operations aim at")
    parser.add_argument(
        "--hot-offers", type=int, default=3, help="offers and authorizations each round's consent operations aim at"
    )
    parser.add_argument(
        "--without",
        default="",
        help=f"operations left out of the mix, comma-separated (of: {', '.join(OPERATIONS)}), to hunt one race",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SIMULATE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bnpl_simulate"),
        help="a PostgreSQL database of this run's own: dropped and created again",
    )
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**9)
    if args.rounds is None and args.minutes is None:
        args.minutes = 1.0
    args.mix = {kind: weight for kind, weight in OPERATIONS.items() if kind not in args.without.split(",")}
    unknown = set(filter(None, args.without.split(","))) - OPERATIONS.keys()
    if unknown or not args.mix:
        parser.error(f"--without: unknown operations {sorted(unknown)}" if unknown else "--without leaves nothing")
    return args


def setup_django(database_url: str) -> None:
    """A fresh database, migrated; Django configured for it, Celery eager, late fees, autopay
    and refunds returning the merchant fee's share on, the simulated card network as the gateway."""
    from bench.autopay import create_empty

    create_empty(database_url)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": database_url,
            "DEBUG": "True",
            "LOG_LEVEL": "CRITICAL",  # the gateway timeouts it makes are logged as errors: expected here
            "BNPL_LATE_FEES_ENABLED": "True",
            "BNPL_AUTOPAY_ENABLED": "True",
            # The fee's way back too: refunds then post fee legs, and the books must still hold.
            "BNPL_REFUND_RETURNS_FEE": "True",
            "BNPL_PAYMENT_GATEWAY": "scripts.simulate.SimulatedNetwork",
            "BNPL_PAYOUT_GATEWAY": "scripts.simulate.SimulatedBank",
            # Receipts and reminders are kept in memory, not printed.
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "BNPL_SMS_BACKEND": "events.sms.LocmemSmsBackend",
        }
    )
    os.environ.pop("REDIS_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


# --- The card network -------------------------------------------------------------------------


class SimulatedNetwork:
    """A card network for the simulation: it takes 0 to 15 ms, captures a key once (a repeated
    key answers the first capture again), and by the key and the seed declines about one
    charge in eight and times out on one in ten (half of them after taking the money); a
    key it timed out on is answered on its next attempt. Cards ending 0002 are declined.
    Refunds always go through, once per key. Records everything, for the reconciliation."""

    seed = 0
    lock = threading.Lock()
    captures: dict[str, Decimal] = {}
    attempts: dict[str, int] = defaultdict(int)
    refunds: dict[str, Decimal] = {}
    refund_requests: list[str] = []

    @classmethod
    def reset(cls, seed: int) -> None:
        cls.seed = seed
        cls.captures, cls.attempts, cls.refunds, cls.refund_requests = {}, defaultdict(int), {}, []

    def _roll(self, key: str) -> float:
        digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32

    def charge(self, *, amount: Decimal, currency: str, card_token: str, idempotency_key: str):
        from accounts.models import User
        from payments.gateways import FAILED, SUCCEEDED, ChargeResult

        time.sleep(self._roll(idempotency_key + ":delay") * 0.015)
        reference = "sim_" + idempotency_key[-16:]
        with self.lock:
            self.attempts[idempotency_key] += 1
            first = self.attempts[idempotency_key] == 1
            if idempotency_key in self.captures:
                return ChargeResult(SUCCEEDED, "", reference, captured=self.captures[idempotency_key])
        last4 = User.objects.filter(card_token=card_token).values_list("card_last4", flat=True).first()
        roll = self._roll(idempotency_key)
        if last4 == "0002" or (roll < 0.125):
            return ChargeResult(FAILED, "card_declined", reference)
        if first and roll < 0.175:
            raise TimeoutError("the network did not answer (nothing taken)")
        with self.lock:
            self.captures[idempotency_key] = amount
        if first and roll < 0.225:
            raise TimeoutError("the network did not answer (the money was taken)")
        return ChargeResult(SUCCEEDED, "", reference, captured=amount)

    def refund(self, *, amount: Decimal, currency: str, card_token: str, idempotency_key: str):
        from payments.gateways import SUCCEEDED, ChargeResult

        time.sleep(self._roll(idempotency_key + ":delay") * 0.015)
        with self.lock:
            self.refund_requests.append(idempotency_key)
            self.refunds.setdefault(idempotency_key, amount)
        return ChargeResult(SUCCEEDED, "", "sim_refund_" + idempotency_key[-16:])


def network() -> type[SimulatedNetwork]:
    """The network class the service uses: this module imported by its dotted name (run as
    a script, this file is also ``__main__``, whose class would hold no records)."""
    from django.utils.module_loading import import_string

    return import_string(os.environ["BNPL_PAYMENT_GATEWAY"])


class SimulatedBank:
    """The merchants' bank for payouts: it takes 0 to 15 ms, pays a key once (a repeated key
    answers the first payment again, as banks' payout APIs do), refuses accounts ending 0002
    (``account_closed``, nothing paid), and by the key and the seed times out on about one
    first attempt in five (half of them after paying); a key it timed out on is answered on
    its next attempt. Records what it paid, for the books to be held against."""

    seed = 0
    lock = threading.Lock()
    paid: dict[str, Decimal] = {}
    attempts: dict[str, int] = defaultdict(int)
    answers: Counter = Counter()  # what it answered: paid, refused, timed out (before or after paying)

    @classmethod
    def reset(cls, seed: int) -> None:
        cls.seed = seed
        cls.paid, cls.attempts, cls.answers = {}, defaultdict(int), Counter()

    def _roll(self, key: str) -> float:
        digest = hashlib.sha256(f"{self.seed}:payout:{key}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32

    def payout(self, *, amount: Decimal, currency: str, account: str, account_name: str, idempotency_key: str):
        from settlements.gateways import FAILED, PAID, PayoutResult

        time.sleep(self._roll(idempotency_key + ":delay") * 0.015)
        reference = "sim_payout_" + idempotency_key
        with self.lock:
            self.attempts[idempotency_key] += 1
            first = self.attempts[idempotency_key] == 1
            if idempotency_key in self.paid:
                self.answers["paid (again)"] += 1
                return PayoutResult(PAID, "", reference)
        roll = self._roll(idempotency_key)
        with self.lock:
            if account.endswith("0002"):
                self.answers["refused"] += 1
                return PayoutResult(FAILED, "account_closed", reference)
            if first and roll < 0.1:
                self.answers["timed out"] += 1
                raise TimeoutError("the bank did not answer (nothing paid)")
            self.paid[idempotency_key] = amount
            self.answers["timed out after paying" if first and roll < 0.2 else "paid"] += 1
        if first and roll < 0.2:
            raise TimeoutError("the bank did not answer (the payout was made)")
        return PayoutResult(PAID, "", reference)


def bank() -> type[SimulatedBank]:
    """The payout gateway class the service uses (see ``network``)."""
    from django.utils.module_loading import import_string

    return import_string(os.environ["BNPL_PAYOUT_GATEWAY"])


# --- The world and its operations -------------------------------------------------------------


@dataclass
class World:
    """The simulation's parties and its clock (the business day the sweep and autopay see)."""

    merchants: list
    customers: list
    operator: object
    today: date
    refunds_seen: int = 0
    # When each business day ended, for the settlement (see ``settlement_clock``).
    day_ends: dict = field(default_factory=dict)


@dataclass
class Operation:
    """One operation of a round: its kind and the random choices it makes, drawn up front
    from the seed (so a seed replays the same operations), applied to the world as it is
    when the operation runs."""

    kind: str
    plan_slot: int
    picks: tuple[float, float, float]
    outcome: str = ""

    def __str__(self) -> str:
        picks = ", ".join(f"{pick:.3f}" for pick in self.picks)
        return f"{self.kind}(plan slot {self.plan_slot}, picks {picks}) -> {self.outcome}"


@dataclass
class Round:
    number: int
    plan_ids: list[int]
    operations: list[Operation] = field(default_factory=list)
    # The hot offers (PENDING) and authorizations (AUTHORIZED) the consent operations aim at.
    pending_ids: list[int] = field(default_factory=list)
    authorized_ids: list[int] = field(default_factory=list)


# Fixed for the run: tight enough that offers, confirmations and back-office plans are refused
# for credit, so that the limit invariant has something to hold.
CREDIT_LIMITS = (Decimal("800.00"), Decimal("2000.00"), Decimal("100000.00"))


# The merchants' payout accounts at the start; the bank refuses the one ending 0002.
PAYOUT_ACCOUNTS = ("DE89370400440532013000", "123450002", "987650001")


def make_world(rng: random.Random) -> World:
    from django.db import transaction

    from accounts.models import User
    from accounts.services import merchant_payout_account_set

    def user(role: str, n: int, card: str) -> User:
        return User.objects.create_user(
            username=f"sim-{role.lower()}-{n}",
            user_id=f"sim-{role.lower()}-{n}",
            password=None,
            role=role,
            email=f"sim-{role.lower()}-{n}@example.com",
            phone_number=f"+99899{n:07d}",
            credit_limit=CREDIT_LIMITS[n % len(CREDIT_LIMITS)],
            card_first6="411111" if card else "",
            card_last4=card,
            card_token=f"tok_sim_{role.lower()}_{n}" if card else "",
            webhook_secret=f"whsec_sim_{n}" if role == User.Role.MERCHANT else "",
        )

    merchants = [user(User.Role.MERCHANT, n, "") for n in range(3)]
    operator = user(User.Role.OPERATOR, 0, "")
    # Payout accounts: one the bank pays, one it refuses (ending 0002), and one more it pays;
    # the ``payout_account`` operation switches them (and removes them now and then).
    for merchant, account in zip(merchants, PAYOUT_ACCOUNTS, strict=True):
        with transaction.atomic():
            merchant_payout_account_set(merchant=merchant, account=account, name="Sim Shop", changed_by=operator)
    # Three prices: the default, one of the merchant's own, and none at all (no fee legs).
    for merchant, (percent, fixed) in zip(
        merchants, [(None, None), (Decimal("2.75"), Decimal("0.49")), (Decimal("0"), Decimal("0"))], strict=True
    ):
        User.objects.filter(pk=merchant.pk).update(fee_percent=percent, fee_fixed=fixed)
    # One customer in five has a card the network always declines.
    customers = [user(User.Role.CUSTOMER, n, "0002" if n % 5 == 4 else f"{1000 + n:04d}") for n in range(15)]
    return World(merchants=merchants, customers=customers, operator=operator, today=date(2026, 3, 1))


def settlement_clock(world: World) -> None:
    """The settlement's business days follow the simulation's clock (``world.today``, the
    day the sweep and autopay see), and a day ends in real time when the first round on it
    (or after it) starts: the settlement services are given these two in place of the real
    ones (``business_today`` and ``business_day_end``, in this process only).

    So each round's settlement runs (of today, of yesterday, two at once) settle days whose
    cutoff no operation straddles (nothing runs between rounds), and the postings a round
    makes belong to the next day the clock moves to: as the clock moves on, a merchant is
    settled again and again, with the refunds of plans settled days before (negative lines,
    negative nets carried) and the money of payouts the bank refused coming back."""
    from settlements import selectors
    from settlements.services import settle

    real_end = selectors.business_day_end

    def business_day_end(day: date):
        ended = [instant for ended_day, instant in world.day_ends.items() if ended_day >= day]
        return min(ended) if ended else real_end(day)

    settle.business_today = lambda: world.today
    settle.business_day_end = business_day_end


def draw_round(rng: random.Random, number: int, world: World, args) -> Round:
    """The round's operations, from the generator alone; new plans first, on the hot slots.
    One hot plan is a settled one when there is any, so that its refunds come after its
    settlement (a negative line in a later one)."""
    from bnpl.models import Plan
    from settlements.models import SettlementLine

    active = list(Plan.objects.filter(status=Plan.Status.ACTIVE).order_by("id").values_list("id", flat=True))
    hot = rng.sample(active, min(len(active), args.hot_plans)) if active else []
    settled = sorted(
        set(active)
        & set(SettlementLine.objects.filter(type=SettlementLine.Type.CAPTURE).values_list("plan_id", flat=True))
    )
    if hot and settled and not set(hot) & set(settled):
        hot[0] = rng.choice(settled)
    hot_customers = set(Plan.objects.filter(pk__in=hot).values_list("customer_id", flat=True))
    offers = {}
    for status in (Plan.Status.PENDING, Plan.Status.AUTHORIZED):
        # The hot plans' customers' offers first: their confirmations race those customers'
        # payments and refunds, and the credit check counts what those change.
        rows = list(Plan.objects.filter(status=status).order_by("id").values_list("id", "customer_id"))
        near = [pk for pk, customer in rows if customer in hot_customers]
        far = [pk for pk, customer in rows if customer not in hot_customers]
        chosen = rng.sample(near, min(len(near), args.hot_offers))
        chosen += rng.sample(far, min(len(far), args.hot_offers - len(chosen)))
        offers[status] = chosen
    kinds, weights = zip(*args.mix.items(), strict=True)
    operations = [
        Operation(
            rng.choices(kinds, weights)[0], rng.randrange(max(len(hot), 1)), (rng.random(), rng.random(), rng.random())
        )
        for _ in range(args.operations)
    ]
    return Round(
        number=number,
        plan_ids=hot,
        operations=operations,
        pending_ids=offers[Plan.Status.PENDING],
        authorized_ids=offers[Plan.Status.AUTHORIZED],
    )


def cents(value: float, top: Decimal) -> Decimal:
    """An amount in (0, top], from a pick in [0, 1)."""
    return max(Decimal("0.01"), (top * Decimal(str(round(value, 4)))).quantize(Decimal("0.01")))


def run_operation(operation: Operation, round_: Round, world: World) -> str:
    """Apply ``operation``; its outcome in a few words. A refusal the service answers with a
    problem (4xx) is an outcome like any other; anything else propagates."""
    from bnpl.models import LateFee, Plan
    from bnpl.services.installments import late_fee_waive
    from bnpl.services.origination import plan_create
    from bnpl.services.sweep import overdue_sweep
    from core.problems import DomainError
    from payments.autopay import autopay_run
    from payments.models import Payment
    from payments.services import GatewayUnavailable, payment_collect, payment_resume, payments_reconcile
    from refunds.models import Refund
    from refunds.services import refund_decide, refund_request

    a, b, c = operation.picks
    if operation.kind in CONSENT:
        try:
            return consent_operation(operation, round_, world)
        except DomainError as refused:
            return f"refused {refused.status_code} {refused.code}"
    if operation.kind in SETTLEMENT:
        try:
            return settlement_operation(operation, world)
        except DomainError as refused:
            return f"refused {refused.status_code} {refused.code}"
    plan = None
    if round_.plan_ids:
        plan = Plan.objects.filter(pk=round_.plan_ids[operation.plan_slot % len(round_.plan_ids)]).first()
    try:
        if operation.kind == "plan" or plan is None:
            customer = world.customers[int(a * len(world.customers))]
            made = plan_create(
                customer=customer,
                merchant=world.merchants[int(b * len(world.merchants))],
                total_amount=cents(c, Decimal("600.00")) + Decimal("10.00"),
                installment_count=2 + int(a * 5),
                purchase_date=world.today - timedelta(days=int(b * 100)),
            )
            return f"plan {made.pk} created"
        if operation.kind in ("pay_installment", "pay_plan", "pay_off"):
            installment = None
            amount = None
            if operation.kind == "pay_installment":
                installments = list(plan.installments.order_by("sequence"))
                installment = installments[int(a * len(installments))]
            elif operation.kind == "pay_plan":
                amount = cents(a, Decimal("150.00"))
            payer = world.operator if b < 0.1 else plan.customer
            target = {"plan_id": plan.pk, "payer": payer, "amount": amount}
            target["installment_id"] = installment.pk if installment else None
            if b >= 0.5:
                paid = payment_collect(**target)
                return f"payment {paid.pk} {paid.status} {paid.amount}"
            # As a request with an Idempotency-Key its own request claimed: a new key, under
            # which no payment is looked for...
            key = f"idem_sim_{round_.number}_{operation.plan_slot}_{int(a * 1e9)}_{int(c * 1e9)}"
            paid = payment_collect(**target, gateway_key=key, gateway_key_unused=True)
            if b < 0.3:
                # ...and the retry that takes the claim over: the same key, looked for, finds
                # that payment (whatever ran on the plan meanwhile) and makes no second one.
                again = payment_collect(**target, gateway_key=key)
                if again.pk != paid.pk:
                    raise AssertionError(f"a retry under {key} made payment {again.pk} beside {paid.pk}")
                return f"payment {paid.pk} {paid.status} {paid.amount}, its retry found it"
            return f"payment {paid.pk} {paid.status} {paid.amount} under a new key"
        if operation.kind == "refund_request":
            world.refunds_seen += 1
            refund, _ = refund_request(
                plan_id=plan.pk,
                transaction_id=f"sim-{round_.number}-{world.refunds_seen}-{int(a * 1e6)}",
                amount=cents(a, plan.total_amount),
                reason="simulation",
                requester=plan.merchant,
                payout_method=Refund.PayoutMethod.CREDIT if b < 0.3 else Refund.PayoutMethod.CARD,
            )
            return f"refund {refund.pk} requested {refund.amount}"
        if operation.kind in ("refund_operator", "refund_webhook"):
            refunds = list(plan.refunds.filter(status__in=(Refund.Status.PENDING, Refund.Status.PROCESSING)))
            if not refunds:
                return "no refund to decide"
            refund = refunds[int(a * len(refunds))]
            if operation.kind == "refund_operator":
                status = Refund.Status.APPROVED if b < 0.75 else Refund.Status.REJECTED
                decided = refund_decide(refund_id=refund.pk, status=status, actor=world.operator)
                return f"refund {refund.pk} {decided.status} by operator, payout {decided.payout_amount}"
            status = "approved" if b < 0.6 else ("processing" if b < 0.8 else "rejected")
            return webhook(plan.merchant, refund.transaction_id, status)
        if operation.kind == "waive":
            fees = list(plan.late_fees.filter(status=LateFee.Status.DUE))
            if not fees:
                return "no fee to waive"
            fee = late_fee_waive(fee_id=fees[int(a * len(fees))].pk, operator=world.operator, reason="simulation")
            return f"fee {fee.pk} waived"
        if operation.kind == "sweep":
            run = overdue_sweep(today=world.today, late_fees=True)
            return f"sweep: {run.installments_marked_overdue} overdue, {run.late_fees_created} fees"
        if operation.kind == "autopay":
            return f"autopay: {autopay_run(today=world.today)} customers"
        if operation.kind == "reconcile":
            return f"reconciled {payments_reconcile(older_than_minutes=0)}"
        if operation.kind == "retry":
            pending = list(
                Payment.objects.filter(plan=plan, status=Payment.Status.PENDING).values_list("pk", flat=True)
            )
            if not pending:
                return "no payment to retry"
            return f"retried: {payment_resume(payment_id=pending[int(a * len(pending))]).status}"
        raise ValueError(operation.kind)
    except GatewayUnavailable:
        return "gateway timed out: pending"
    except DomainError as refused:
        return f"refused {refused.status_code} {refused.code}"


CONSENT = ("offer", "confirm", "decline", "capture", "void", "expire")
SETTLEMENT = ("settle", "payout_send", "payout_reconcile", "payout_account")


def settlement_operation(operation: Operation, world: World) -> str:
    """A settlement run (today's day, yesterday's, or two at once: the same day twice, or
    yesterday and today), a payout sent (again) or the payouts reconciled, or a merchant's
    payout account switched. The bank's timeouts are an outcome; refusals propagate."""
    from django.db import transaction

    from accounts.services import merchant_payout_account_set
    from settlements.models import Payout
    from settlements.services.payouts import payout_send, payouts_reconcile
    from settlements.services.settle import settle_merchants

    a, b, c = operation.picks
    if operation.kind == "settle":
        yesterday = world.today - timedelta(days=1)
        days = (
            [world.today]
            if a < 0.5
            else [yesterday]
            if a < 0.7
            else [world.today, world.today if b < 0.5 else yesterday]
        )
        # One chunk per merchant now and then: the chunks of two runs interleave.
        chunk = 1 if c < 0.5 else None
        runs = together([lambda day=day: settle_merchants(day=day, chunk_merchants=chunk) for day in days])
        return "settled " + "; ".join(
            f"{run.business_date}: {run.settlements_created} settlements, {run.payouts_created} payouts" for run in runs
        )
    if operation.kind == "payout_send":
        # Mostly one still pending; now and then any (sending a settled one changes nothing).
        rows = Payout.objects.order_by("id")
        pending = list(rows.filter(status=Payout.Status.PENDING).values_list("pk", flat=True))
        ids = pending if pending and b < 0.8 else list(rows.values_list("pk", flat=True)[:200])
        if not ids:
            return "no payout to send"
        try:
            return f"payout {payout_send(payout_id=ids[int(a * len(ids))]).status}"
        except TimeoutError:
            return "payout timed out: pending"
    if operation.kind == "payout_reconcile":
        return f"payouts reconciled {payouts_reconcile(older_than_minutes=0)}"
    merchant = world.merchants[int(a * len(world.merchants))]
    account = ("DE89370400440532013000", "123450002", "987650001", "")[int(b * 4)]
    with transaction.atomic():
        merchant_payout_account_set(
            merchant=merchant, account=account, name="Sim Shop" if account else "", changed_by=world.operator
        )
    return f"payout account {'removed' if not account else 'set to *' + account[-4:]}"


def together(calls: list) -> list:
    """Run ``calls`` on threads released together (one call: here); their results, or the
    first error raised."""
    from django.db import connections

    if len(calls) == 1:
        return [calls[0]()]
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def target(index: int) -> None:
        try:
            barrier.wait()
            results[index] = calls[index]()
        except Exception as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def consent_operation(operation: Operation, round_: Round, world: World) -> str:
    """A consent operation: a merchant's offer, the customer's answer to it, the merchant's
    capture or void, or an expiry run on the simulated clock. Refusals propagate."""
    from django.utils import timezone

    from bnpl.models import Plan
    from bnpl.services.checkout import plan_capture, plan_confirm, plan_decline, plan_void, plans_expire

    a, b, c = operation.picks
    if operation.kind == "offer":
        return offer(operation, round_, world)
    if operation.kind == "expire":
        # The simulated clock: at the expiry of the open plan at quantile ``a`` (everything
        # up to it lapses, the rest stays open), now and then beyond them all.
        deadlines = sorted(
            Plan.objects.filter(status__in=(Plan.Status.PENDING, Plan.Status.AUTHORIZED)).values_list(
                "expires_at", flat=True
            )
        )
        if not deadlines:
            return "nothing open to expire"
        now = deadlines[-1] + timedelta(days=1) if b < 0.1 else deadlines[int(a * len(deadlines))]
        return f"expired {plans_expire(now=now, chunk=1 + int(c * 4))} (clock at +{now - timezone.now()})"
    targets = round_.pending_ids if operation.kind in ("confirm", "decline") else round_.authorized_ids
    if not targets:
        return f"no plan to {operation.kind}"
    plan_id = targets[operation.plan_slot % len(targets)]
    if operation.kind == "confirm":
        customer = Plan.objects.select_related("customer").get(pk=plan_id).customer
        plan = plan_confirm(plan_id=plan_id, customer=customer)
        return f"plan {plan_id} confirmed: {plan.status}"
    if operation.kind == "decline":
        return f"plan {plan_id} {plan_decline(plan_id=plan_id).status}"
    if operation.kind == "void":
        return f"plan {plan_id} {plan_void(plan_id=plan_id).status}"
    authorized = Plan.objects.get(pk=plan_id).authorized_amount
    # Whole, part, or (now and then) a cent more than was authorized (422).
    amount = None if a < 0.5 else (authorized + Decimal("0.01") if b < 0.1 else cents(b, authorized))
    plan = plan_capture(plan_id=plan_id, amount=amount)
    return f"plan {plan_id} captured {plan.total_amount} of {authorized}: {plan.status}"


def offer(operation: Operation, round_: Round, world: World) -> str:
    """A merchant's offer, mostly to a hot plan's customer (unless it is in debt); one in
    four under a reference shared by the round's offers of that slot, with the same terms (a
    merchant's retry: the racing offers make one plan), the others under a reference of
    their own or none."""
    from accounts.models import User
    from bnpl.models import Plan
    from bnpl.services.checkout import Offer, plan_offer, plan_offer_named

    a, b, c = operation.picks
    hot_customers = list(Plan.objects.filter(pk__in=round_.plan_ids).values_list("customer_id", flat=True))
    debtors = set(User.objects.filter(status=User.Status.DEBT_USER).values_list("pk", flat=True))
    by_pk = {customer.pk: customer for customer in world.customers}
    slot = operation.plan_slot
    if c < 0.25:
        customer = by_pk[hot_customers[slot % len(hot_customers)]] if hot_customers else world.customers[slot]
        merchant = world.merchants[slot % len(world.merchants)]
        terms = Offer(
            total_amount=Decimal(40 + 10 * slot + round_.number % 7),
            installment_count=2 + slot,
            merchant_reference=f"sim-{round_.number}-slot-{slot}",
            capture_mode=Plan.CaptureMode.MANUAL if round_.number % 2 else Plan.CaptureMode.AUTOMATIC,
        )
    else:
        near = hot_customers and a < 0.6
        customer = (
            by_pk[hot_customers[slot % len(hot_customers)]]
            if near
            else world.customers[int(c * 97) % len(world.customers)]
        )
        merchant = world.merchants[int(b * len(world.merchants))]
        terms = Offer(
            total_amount=cents(a, Decimal("600.00")) + Decimal("10.00"),
            installment_count=2 + int(a * 5),
            merchant_reference="" if c < 0.4 else f"sim-{round_.number}-{int(a * 1e9)}",
            capture_mode=Plan.CaptureMode.MANUAL if b < 0.4 else Plan.CaptureMode.AUTOMATIC,
        )
    if c >= 0.25 and customer.pk in debtors:
        # Most offers go to someone who may take them: a customer in debt is refused (403)
        # whatever it is offered, and the confirmations would have nothing to race on.
        free = [candidate for candidate in world.customers if candidate.pk not in debtors]
        customer = free[int(a * len(free))] if free else customer
    if int(a * 1e6) % 2:  # the API's path: the customer named by its user_id, locked as it is found
        plan, created = plan_offer_named(creator=merchant, user_id=customer.user_id, merchant_id=None, offer=terms)
    else:
        plan, created = plan_offer(customer=customer, merchant=merchant, offer=terms)
    return f"plan {plan.pk} {'offered' if created else 'offered before'} ({terms.capture_mode}, {plan.status})"


def webhook(merchant, transaction_id: str, status: str) -> str:
    """The merchant's signed call to the refund-status webhook, through the whole stack."""
    from django.test import Client

    from core.signatures import sign

    body = json.dumps({"refund_id": transaction_id, "status": status}).encode()
    stamp = int(time.time())
    answer = Client().post(
        "/webhook/refund-status/",
        data=body,
        content_type="application/json",
        HTTP_BNPL_MERCHANT=merchant.user_id,
        HTTP_BNPL_SIGNATURE=f"t={stamp},v1={sign(merchant.webhook_secret, stamp, body)}",
    )
    if answer.status_code >= 500:
        raise RuntimeError(f"webhook answered {answer.status_code}: {answer.content[:300]!r}")
    return f"webhook {status}: {answer.status_code}"


def play(round_: Round, world: World, threads: int) -> list[str]:
    """Run the round's operations on ``threads`` threads released together; the errors."""
    from django.db import connections

    barrier = threading.Barrier(threads)
    errors: list[str] = []

    def worker(share: list[Operation]) -> None:
        try:
            barrier.wait()
            for operation in share:
                try:
                    operation.outcome = run_operation(operation, round_, world)
                except Exception as exc:
                    operation.outcome = f"ERROR {type(exc).__name__}: {exc}"
                    errors.append(f"{operation}\n{traceback.format_exc()}")
        finally:
            connections.close_all()

    shares = [round_.operations[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return errors


def settle_pending() -> None:
    """Finish every payment left PENDING, with its own key (the network answers a key it
    timed out on at the next attempt), every refund payout left pending, and every merchant
    payout left PENDING (the bank too answers a key at its next attempt)."""
    from payments.models import Payment
    from payments.services import payments_reconcile
    from refunds.models import Refund
    from refunds.services import refund_payout
    from settlements.models import Payout
    from settlements.services.payouts import payouts_reconcile

    for _ in range(3):
        if not Payment.objects.filter(status=Payment.Status.PENDING).exists():
            break
        payments_reconcile(older_than_minutes=0)
    for refund_id in Refund.objects.filter(payout_status=Refund.PayoutStatus.PENDING).values_list("pk", flat=True):
        refund_payout(refund_id=refund_id)
    for _ in range(3):
        if not Payout.objects.filter(status=Payout.Status.PENDING).exists():
            break
        payouts_reconcile(older_than_minutes=0)


def breaches() -> list[str]:
    """``check_ledger``'s breaches, and the network's records against the books."""
    from django.db.models import F, Sum

    from ledger.checks import ledger_check
    from payments.models import Payment, PaymentAllocation
    from refunds.models import Refund

    found = list(ledger_check(record=False).breaches)
    records = network()
    if Payment.objects.filter(status=Payment.Status.PENDING).exists():
        found.append("payments still PENDING after reconciliation")
    charged = dict(
        Payment.objects.filter(status=Payment.Status.SUCCEEDED)
        .exclude(amount=F("credit_amount"))
        .values_list("gateway_key", "amount")
    )
    card_parts = {
        key: amount - credit
        for key, amount, credit in Payment.objects.filter(gateway_key__in=list(records.captures)).values_list(
            "gateway_key", "amount", "credit_amount"
        )
    }
    for key, amount in records.captures.items():
        if key not in charged:
            found.append(f"network captured {amount} under {key}, booked as no succeeded payment")
        elif card_parts[key] != amount:
            found.append(f"network captured {amount} under {key}, the payment's card part is {card_parts[key]}")
    for key in charged.keys() - records.captures.keys():
        found.append(f"payment {key} booked as succeeded, the network took nothing")
    paid_out = dict(Refund.objects.filter(payout_status=Refund.PayoutStatus.PAID).values_list("pk", "payout_amount"))
    sent = {int(key.rsplit("_", 1)[1]): amount for key, amount in records.refunds.items()}
    if sent != paid_out:
        found.append(f"refunds sent to cards {sent} != payouts booked as paid {paid_out}")
    # Per plan: back to the customer (to cards as the network saw it, and credit granted)
    # never more than what came in (captured by the network, and credit spent).
    came_in: dict[int, Decimal] = defaultdict(Decimal)
    for key, plan_id, credit in Payment.objects.filter(status=Payment.Status.SUCCEEDED).values_list(
        "gateway_key", "plan_id", "credit_amount"
    ):
        came_in[plan_id] += records.captures.get(key, Decimal(0)) + credit
    went_back: dict[int, Decimal] = defaultdict(Decimal)
    for pk, plan_id in Refund.objects.filter(pk__in=list(sent)).values_list("pk", "plan_id"):
        went_back[plan_id] += sent[pk]
    for plan_id, amount in (
        Refund.objects.filter(payout_status=Refund.PayoutStatus.CREDITED)
        .values("plan_id")
        .annotate(total=Sum("payout_amount"))
        .values_list("plan_id", "total")
    ):
        went_back[plan_id] += amount
    for plan_id, amount in (
        PaymentAllocation.objects.filter(payment__status=Payment.Status.SUCCEEDED, credited__gt=0)
        .values("payment__plan_id")
        .annotate(total=Sum("credited"))
        .values_list("payment__plan_id", "total")
    ):
        went_back[plan_id] += amount  # shares no longer owed when their payment settled
    for plan_id, amount in sorted(went_back.items()):
        if amount > came_in.get(plan_id, Decimal(0)):
            found.append(f"plan {plan_id}: {amount} went back to the customer, {came_in.get(plan_id, 0)} came in")
    return found


def settlement_breaches(bank_paid: dict[str, Decimal]) -> list[str]:
    """The settlements' and payouts' own invariants, beside invariant 7 (``check_ledger``):

    - every captured plan is in at most one capture line, and no other plan in any;
    - once a run for day D has finished, every plan activated before D's end (the clock's,
      see ``settlement_clock``) is in exactly one capture line;
    - no payout is paid twice: one PAYOUT entry and one ``payout.paid`` event per PAID
      payout, none for a FAILED or PENDING one (which has one ``payout.failed``, or none);
    - per merchant and currency, the PAID payouts sum to minus the payout clearing postings
      of that merchant;
    - the bank's records (``bank_paid``: idempotency key -> amount paid) are the PAID payouts,
      each with its amount; and no payout is still PENDING after the reconciliation."""
    from django.db.models import Sum

    from bnpl.models import Plan
    from core.money import to_money
    from events.models import Event
    from ledger.accounts import PAYOUT_CLEARING
    from ledger.models import JournalEntry, Posting
    from settlements.models import ZERO, Payout, SettlementLine, SettlementRun
    from settlements.services import settle

    found = []
    captures = Counter(
        SettlementLine.objects.filter(type=SettlementLine.Type.CAPTURE).values_list("plan_id", flat=True)
    )
    statuses = dict(Plan.objects.filter(pk__in=list(captures)).values_list("pk", "status"))
    for plan_id, lines in sorted(captures.items()):
        if lines > 1:
            found.append(f"plan {plan_id} is in {lines} capture lines")
        if statuses.get(plan_id) not in OWED:
            found.append(f"plan {plan_id} is {statuses.get(plan_id)} and in a capture line")
    for run in SettlementRun.objects.filter(finished_at__isnull=True):
        found.append(
            f"settlement run {run.pk} of {run.business_date} never finished ({run.chunks_done}/{run.chunks_total})"
        )
    days = set(SettlementRun.objects.filter(finished_at__isnull=False).values_list("business_date", flat=True))
    if days:
        cutoff = max(settle.business_day_end(day) for day in days)
        missed = Plan.objects.filter(status__in=OWED, activated_at__lt=cutoff).exclude(pk__in=list(captures))
        for pk, activated in missed.values_list("pk", "activated_at")[:10]:
            found.append(f"plan {pk} activated at {activated}, before {cutoff} (a day settled), is in no capture line")
    memo = re.compile(r"Payout (\d+) of settlement")
    entries = Counter(
        int(match.group(1))
        for text in JournalEntry.objects.filter(kind=JournalEntry.Kind.PAYOUT).values_list("memo", flat=True)
        if (match := memo.match(text))
    )
    events = Counter(
        Event.objects.filter(type__in=(Event.Type.PAYOUT_PAID, Event.Type.PAYOUT_FAILED)).values_list(
            "data__payout_id", "type"
        )
    )
    paid_by_merchant: dict[tuple[int, str], Decimal] = defaultdict(lambda: ZERO)
    payouts = {}
    for pk, status, merchant, currency, amount in Payout.objects.values_list(
        "pk", "status", "merchant_id", "currency", "amount"
    ):
        payouts[pk] = (status, amount)
        paid = status == Payout.Status.PAID
        if paid:
            paid_by_merchant[(merchant, currency)] += amount
        if status == Payout.Status.PENDING:
            found.append(f"payout {pk} still PENDING after the reconciliation")
        wanted = (int(paid), int(paid), int(status == Payout.Status.FAILED))
        got = (entries[pk], events[(pk, Event.Type.PAYOUT_PAID)], events[(pk, Event.Type.PAYOUT_FAILED)])
        if got != wanted:
            found.append(
                f"payout {pk} is {status} with {got} (PAYOUT entries, paid events, failed events), wanted {wanted}"
            )
    for pk in sorted(entries.keys() - payouts.keys()):
        found.append(f"a PAYOUT entry names payout {pk}, which does not exist")
    cleared = {
        (party, currency): to_money(total)
        for party, currency, total in Posting.objects.filter(account__code=PAYOUT_CLEARING)
        .values_list("party_id", "currency")
        .annotate(total=Sum("amount"))
        .order_by()
    }
    for merchant, currency in sorted(set(paid_by_merchant) | set(cleared), key=str):
        paid, posted = paid_by_merchant.get((merchant, currency), ZERO), cleared.get((merchant, currency), ZERO)
        if paid != -posted:
            found.append(f"merchant {merchant}: payouts PAID {paid} {currency}, its payout clearing postings {posted}")
    booked = {f"payout_{pk}": amount for pk, (status, amount) in payouts.items() if status == Payout.Status.PAID}
    if bank_paid != booked:
        found.append(f"the bank paid {bank_paid}, the payouts booked as PAID are {booked}")
    return found


NOT_OWED = ("PENDING", "AUTHORIZED", "DECLINED", "EXPIRED", "VOIDED")
OWED = ("ACTIVE", "COMPLETED", "CANCELLED")
# The event of each end an offer can reach without being owed.
STATE_EVENTS = {"DECLINED": "plan.declined", "EXPIRED": "plan.expired", "VOIDED": "plan.voided"}


def consent_breaches() -> list[str]:
    """The consent states' invariants (see the module's docstring), on every plan."""
    from django.db.models import Count, F, Sum

    from accounts.models import User
    from bnpl.models import Installment, LateFee, Plan
    from bnpl.selectors import OPEN_STATUSES
    from events.models import Event
    from ledger.models import JournalEntry, Posting
    from payments.models import Payment
    from refunds.models import Refund

    found = []
    for model, label in (
        (Installment, "installments"),
        (JournalEntry, "ledger entries"),
        (Posting, "postings"),
        (Payment, "payments"),
        (Refund, "refunds"),
        (LateFee, "late fees"),
    ):
        rows = (
            model.objects.filter(plan__status__in=NOT_OWED)
            .values("plan_id", "plan__status")
            .annotate(n=Count("pk"))
            .order_by("plan_id")
        )
        for row in rows[:10]:
            found.append(f"plan {row['plan_id']} is {row['plan__status']} and has {row['n']} {label}")
    owed = dict(Plan.objects.filter(status__in=OWED).values_list("pk", "total_amount"))
    originations = Counter(
        JournalEntry.objects.filter(kind=JournalEntry.Kind.ORIGINATION, plan_id__in=list(owed)).values_list(
            "plan_id", flat=True
        )
    )
    scheduled = dict(
        Installment.objects.filter(plan_id__in=list(owed))
        .values("plan_id")
        .annotate(total=Sum("amount_due"))
        .values_list("plan_id", "total")
    )
    refunded = dict(
        Refund.objects.filter(plan_id__in=list(owed), applied_amount__gt=0)
        .values("plan_id")
        .annotate(total=Sum("applied_amount"))
        .values_list("plan_id", "total")
    )
    for plan_id, total in sorted(owed.items()):
        if originations[plan_id] != 1:
            found.append(f"plan {plan_id} is owed and has {originations[plan_id]} origination entries")
        lowered = refunded.get(plan_id, Decimal(0))
        if scheduled.get(plan_id, Decimal(0)) + lowered != total:
            found.append(
                f"plan {plan_id}: installments {scheduled.get(plan_id, 0)} + refunds applied {lowered} != total {total}"
            )
    for pk, total, authorized in Plan.objects.exclude(total_amount__lte=F("authorized_amount")).values_list(
        "pk", "total_amount", "authorized_amount"
    ):
        found.append(f"plan {pk}: total {total} above its authorized amount {authorized}")
    for pk, status in Plan.objects.filter(status="PENDING", checkout_token__isnull=True).values_list("pk", "status"):
        found.append(f"plan {pk} is {status} without a checkout token")
    for pk, status in (
        Plan.objects.exclude(status="PENDING").filter(checkout_token__isnull=False).values_list("pk", "status")
    ):
        found.append(f"plan {pk} is {status} and still has a checkout token")
    for pk, status in Plan.objects.filter(status__in=OWED, activated_at__isnull=True).values_list("pk", "status"):
        found.append(f"plan {pk} is {status} and was never activated")
    # Each transition happened once: an offer has its plan.pending event once, plan.confirmed
    # once when it was confirmed, the event of the end it reached once, and no other; a plan
    # of the back office has none of them.
    consent_types = ("plan.pending", "plan.confirmed", "plan.declined", "plan.expired", "plan.captured", "plan.voided")
    events = Counter(Event.objects.filter(type__in=consent_types).values_list("data__plan_id", "type"))
    offered = {plan_id for plan_id, kind in events if kind == "plan.pending"}
    for pk, status, mode, confirmed in Plan.objects.values_list("pk", "status", "capture_mode", "confirmed_at"):
        got = {kind: events[(pk, kind)] for kind in consent_types if events[(pk, kind)]}
        wanted = {}
        if pk in offered:
            wanted = {"plan.pending": 1, "plan.confirmed": int(confirmed is not None)}
            wanted[STATE_EVENTS.get(status, "")] = 1
            wanted["plan.captured"] = int(mode == "manual" and status in OWED)
            wanted = {kind: n for kind, n in wanted.items() if kind in consent_types and n}
            if status in OWED and confirmed is None:
                found.append(f"plan {pk} is {status}, offered, and never confirmed")
        if got != wanted:
            found.append(f"plan {pk} ({status}, {mode}): consent events {got}, wanted {wanted}")
    # Credit: unpaid principal and reservations within the (fixed) limit, per currency.
    limits = dict(User.objects.filter(role=User.Role.CUSTOMER).values_list("pk", "credit_limit"))
    used: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for customer, currency, owed_amount in (
        Installment.objects.filter(status__in=OPEN_STATUSES)
        .values("customer_id", "plan__currency")
        .annotate(total=Sum(F("amount_due") - F("amount_paid")))
        .values_list("customer_id", "plan__currency", "total")
    ):
        used[(customer, currency)] += owed_amount
    for customer, currency, reserved in (
        Plan.objects.filter(status__in=("PENDING", "AUTHORIZED"))
        .values("customer_id", "currency")
        .annotate(total=Sum("authorized_amount"))
        .values_list("customer_id", "currency", "total")
    ):
        used[(customer, currency)] += reserved
    for (customer, currency), amount in sorted(used.items()):
        if amount > limits[customer]:
            found.append(
                f"customer {customer}: {amount} {currency} owed and reserved, above its limit {limits[customer]}"
            )
    return found


def settlement_figures() -> str:
    """What the settlement runs made: settlements, lines by type, refunds of plans settled in
    an earlier settlement, negative nets carried, payouts by status."""
    from settlements.models import Payout, Settlement, SettlementLine, SettlementRun

    lines = Counter(SettlementLine.objects.values_list("type", flat=True))
    # A refund line whose plan's capture line is in an earlier settlement (by id).
    refunds_after = sum(
        1
        for settlement, plan in SettlementLine.objects.filter(type=SettlementLine.Type.REFUND).values_list(
            "settlement_id", "plan_id"
        )
        if SettlementLine.objects.filter(
            type=SettlementLine.Type.CAPTURE, plan_id=plan, settlement_id__lt=settlement
        ).exists()
    )
    negative = SettlementLine.objects.filter(type=SettlementLine.Type.CARRIED, net__lt=0).count()
    payouts = Counter(Payout.objects.values_list("status", flat=True))
    return (
        f"{SettlementRun.objects.count()} runs, {Settlement.objects.count()} settlements"
        f" ({Settlement.objects.filter(net__lt=0).count()} negative); lines "
        + ", ".join(f"{kind} {n}" for kind, n in sorted(lines.items()))
        + f"; {refunds_after} refund lines of plans settled before, {negative} negative nets carried;"
        f" payouts "
        + ", ".join(f"{status} {n}" for status, n in sorted(payouts.items()))
        + "; the bank answered "
        + ", ".join(f"{answer} {n}" for answer, n in sorted(bank().answers.items()))
    )


def outcome_class(outcome: str) -> str:
    """An outcome without its ids and amounts, to count outcomes alike together."""
    words = re.sub(r"\(clock at [^)]*\)", "", outcome)
    return " ".join(re.sub(r"(?<!refused )(?<![\w.])-?\d[\d.,:]*", "#", words).split())


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_django(args.database_url)
    from django.utils import timezone

    from bnpl.models import Plan

    network().reset(args.seed)
    bank().reset(args.seed)
    rng = random.Random(args.seed)  # noqa: S311 - a replayable simulation, not a secret  # nosec B311
    world = make_world(rng)
    settlement_clock(world)
    print(
        f"Money simulation: seed {args.seed}, {args.threads} threads, {args.operations} operations a round", flush=True
    )
    started = time.monotonic()
    deadline = started + args.minutes * 60 if args.minutes else None
    number, operations, kinds = 0, 0, defaultdict(int)
    outcomes: dict[str, Counter] = defaultdict(Counter)
    while (args.rounds is None or number < args.rounds) and (deadline is None or time.monotonic() < deadline):
        number += 1
        # The clock's day, if new, ends now (nothing runs between rounds): see settlement_clock.
        world.day_ends.setdefault(world.today, timezone.now())
        round_ = draw_round(rng, number, world, args)
        errors = play(round_, world, args.threads)
        settle_pending()
        found = errors + breaches() + consent_breaches() + settlement_breaches(bank().paid)
        operations += len(round_.operations)
        for operation in round_.operations:
            kinds[operation.kind] += 1
            outcomes[operation.kind][outcome_class(operation.outcome)] += 1
        if found:
            print(f"\nBREACH in round {number} (seed {args.seed}; replay: --seed {args.seed} --rounds {number})")
            print("Plans aimed at:", round_.plan_ids)
            print("Offers aimed at:", round_.pending_ids, "authorizations:", round_.authorized_ids)
            print("Operations of the round:")
            for operation in round_.operations:
                print("  ", operation)
            print("Found:")
            for line in found:
                print("  ", line)
            return 1
        world.today += timedelta(days=rng.choice((0, 1, 3, 7, 15)))
    elapsed = time.monotonic() - started
    print(
        f"{number} rounds, {operations} operations in {elapsed:.0f} s "
        f"({Plan.objects.count()} plans, business day {world.today}); 0 breaches"
    )
    print("Operations:", ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())))
    print("Settlements:", settlement_figures())
    print("Outcomes:")
    for kind, counts in sorted(outcomes.items()):
        print(f"  {kind}: " + ", ".join(f"{label} {n}" for label, n in counts.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
