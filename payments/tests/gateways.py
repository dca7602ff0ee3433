"""Gateways for tests: the fake card network, watched or made to misbehave (the only thing
outside the system that tests stand in for)."""

import json
import os
import threading
import time
import urllib.request
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from config.tests.faults import inject
from payments.gateways import SUCCEEDED, ChargeResult, FakeGateway


class RecordingGateway(FakeGateway):
    """The fake gateway, recording every charge and every refund it is asked for:
    ``(idempotency_key, amount)`` in ``charges`` and ``refunds``. ``taken()`` and
    ``given_back()`` are what a network that honours keys moved: each key once."""

    charges: list[tuple[str, Decimal]] = []
    refunds: list[tuple[str, Decimal]] = []
    lock = threading.Lock()

    def charge(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        with type(self).lock:
            type(self).charges.append((idempotency_key, amount))
        return super().charge(amount=amount, currency=currency, card_token=card_token, idempotency_key=idempotency_key)

    def refund(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        with type(self).lock:
            type(self).refunds.append((idempotency_key, amount))
        return super().refund(amount=amount, currency=currency, card_token=card_token, idempotency_key=idempotency_key)

    @classmethod
    def clear(cls) -> None:
        cls.charges.clear()
        cls.refunds.clear()

    @classmethod
    def taken(cls) -> dict[str, Decimal]:
        """What the card network charged: each key once, the first amount asked with it."""
        return _once_per_key(cls.charges)

    @classmethod
    def given_back(cls) -> dict[str, Decimal]:
        """What the card network paid back: each key once."""
        return _once_per_key(cls.refunds)


def _once_per_key(calls: list[tuple[str, Decimal]]) -> dict[str, Decimal]:
    moved: dict[str, Decimal] = {}
    for key, amount in calls:
        moved.setdefault(key, amount)
    return moved


class SlowRecordingGateway(RecordingGateway):
    """The recording gateway, answering charges and refunds after ``DELAY`` seconds (a real
    network's round trip): the window in which another operation on the same plan runs."""

    DELAY = 0.3

    def charge(self, **kwargs) -> ChargeResult:
        result = super().charge(**kwargs)
        time.sleep(self.DELAY)
        return result

    def refund(self, **kwargs) -> ChargeResult:
        result = super().refund(**kwargs)
        time.sleep(self.DELAY)
        return result


class OvercapturingGateway(FakeGateway):
    """Reports that it captured 3.00 more than asked (the customer overpaid at the network)."""

    EXTRA = Decimal("3.00")

    def charge(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        result = super().charge(
            amount=amount, currency=currency, card_token=card_token, idempotency_key=idempotency_key
        )
        return ChargeResult(result.status, result.decline_code, result.reference, captured=amount + self.EXTRA)


class TimeoutGateway(FakeGateway):
    """Never answers in time: whether the card was charged is unknown."""

    def charge(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        inject("gateway timeout (no answer)")
        raise TimeoutError("the gateway did not answer in time")


class RefundTimeoutGateway(FakeGateway):
    """Charges as the fake gateway; a refund (a payout to the card) never answers in time."""

    def refund(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        inject("gateway timeout on a refund payout (no answer)")
        raise TimeoutError("the gateway did not answer in time")


class UndercapturingGateway(FakeGateway):
    """Reports that it captured 1.00 less than asked."""

    def charge(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        result = super().charge(
            amount=amount, currency=currency, card_token=card_token, idempotency_key=idempotency_key
        )
        return ChargeResult(result.status, result.decline_code, result.reference, captured=amount - Decimal("1.00"))


class CardNetwork(ThreadingHTTPServer):
    """A card network on 127.0.0.1, outside the service's processes, that ``NetworkGateway``
    calls over HTTP. It captures an idempotency key once (a repeated key answers the first
    capture again, as real networks do) and counts what it captured.

    ``script`` says what the next charges do, in turn (then "ok"): "ok"; "timeout before
    capture" (no answer in time, nothing captured); "timeout after capture" (the money is
    taken, the answer never arrives in time); "held after capture" (the money is taken and
    ``holding`` set; the answer waits until the test sets ``hold``).
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _NetworkHandler)
        self.script: list[str] = []
        self.captures: dict[str, Decimal] = {}  # idempotency key -> amount taken from the card
        self.requests: list[str] = []  # the key of every charge request received
        self.release = threading.Event()  # set: a "timeout" answer is given up at once
        self.holding = threading.Event()  # set: a "held" charge is captured, its answer waits
        self.hold = threading.Event()  # set: a "held" charge is answered
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def captured_total(self) -> Decimal:
        return sum(self.captures.values(), Decimal("0.00"))

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.hold.set()
        self.shutdown()
        self.server_close()


class _NetworkHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        network: CardNetwork = self.server
        charge = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        key, amount = charge["idempotency_key"], Decimal(charge["amount"])
        with network.lock:
            network.requests.append(key)
            behaviour = network.script.pop(0) if network.script else "ok"
            if behaviour.startswith("timeout"):
                inject(f"gateway {behaviour}")
            if behaviour != "timeout before capture":
                network.captures.setdefault(key, amount)
        if behaviour.startswith("timeout"):
            network.release.wait(timeout=60)  # the caller has given up long before
            return
        if behaviour == "held after capture":
            network.holding.set()
            network.hold.wait(timeout=60)
        body = json.dumps({"reference": "net_" + key[-20:], "captured": str(network.captures[key])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output quiet
        pass


class NetworkGateway(FakeGateway):
    """The fake gateway's decisions, with the money taken at a ``CardNetwork`` over HTTP:
    ``BNPL_TEST_CARD_NETWORK_URL`` names it, ``BNPL_TEST_CARD_NETWORK_TIMEOUT`` (seconds,
    default 2) is how long the gateway client waits for an answer."""

    def charge(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        decided = super().charge(
            amount=amount, currency=currency, card_token=card_token, idempotency_key=idempotency_key
        )
        if not decided.succeeded:
            return decided
        request = urllib.request.Request(  # noqa: S310 - the test's own network on 127.0.0.1
            os.environ["BNPL_TEST_CARD_NETWORK_URL"] + "/charges",
            data=json.dumps({"idempotency_key": idempotency_key, "amount": str(amount), "currency": currency}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        timeout = float(os.environ.get("BNPL_TEST_CARD_NETWORK_TIMEOUT", "2"))
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - as above  # nosec B310
            answer = json.loads(response.read())
        return ChargeResult(SUCCEEDED, "", answer["reference"], captured=Decimal(answer["captured"]))
