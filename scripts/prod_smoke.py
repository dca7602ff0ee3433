#!/usr/bin/env python
"""Production smoke: the service as users install it (the runtime lock alone), end to end.

Run it with the Python of a virtualenv made from ``requirements.txt`` and nothing else
(``make smoke`` makes ``.venv-prod`` so and runs it there; it refuses a virtualenv that has
the dev tools, which would hide a package only they pull in). Start to end:

- a PostgreSQL database and a Redis database of its own (``--database-url``,
  ``--redis-url``; both emptied first), migrated and seeded with ``populate_mock_data``;
  the demo merchant's event endpoint is pointed at a receiver this script serves;
- gunicorn (``config/gunicorn.py``, ``DEBUG=False``), a Celery worker and Celery beat, as
  the Procfile starts them;
- over HTTP: ``/readyz``, a token for the operator, the merchant and the customer, the
  merchant's offer (PENDING; its retry with the same ``merchant_reference`` answers the same
  plan), the customer's confirmation (ACTIVE), a payment, a refund, a manual-capture offer
  confirmed (AUTHORIZED) and captured by the merchant (ACTIVE), the merchant's signed refund-status webhook, answered
  ``processing_mode: async`` and applied by the worker within ``--wait`` seconds, the
  merchant events delivered (signed) to the receiver, ``/readyz`` again;
- every process still running at the end, and no traceback or ERROR line in any log.

Exits 1 with the reason and the tail of the logs on the first failure. Logs are kept in
``--report-dir``.

    make smoke                                   # what CI runs
    .venv-prod/bin/python scripts/prod_smoke.py --wait 30
"""

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.autopay import add_store_arguments, create_empty  # noqa: E402 - the benchmarks' helpers, from the root
from bench.http_bench import local_service_env, start_gunicorn, stop  # noqa: E402
from core.signatures import sign, signature_header  # noqa: E402
from scripts.fuzz_api import free_port  # noqa: E402

# Throw-away keys: the smoke database is made by this script alone, and emptied by its next run.
SMOKE_SECRET_KEY = "smoke-only-secret-key-not-for-production-0123456789abcdefghijklm"  # noqa: S105 - throw-away  # nosec B105
SMOKE_FIELD_KEY = "smoke-only-field-encryption-key-0123456789abcdef"
# populate_mock_data's local-only credentials (README).
OPERATOR = ("admin", "admin123")
MERCHANT = ("merchant-001", "demo12345")
CUSTOMER = ("usr-001", "demo12345")
MERCHANT_SECRET = "whsec_demo_merchant_001"  # noqa: S105 - the demo merchant's local-only secret  # nosec B105
# Packages only the dev lock installs: finding one means this is not the users' install.
DEV_ONLY = ("pytest", "schemathesis", "ruff", "piptools")
# A log line that means something went wrong: a traceback, or a JSON/plain line at ERROR or worse.
BAD_LINE = re.compile(r'Traceback \(most recent call last\)|"level": "(ERROR|CRITICAL)"|\] (ERROR|CRITICAL)/')


class Failed(Exception):
    """The smoke found the install broken; the message says where."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_arguments(parser, "SMOKE", "bnpl_smoke", redis_db=10)
    parser.add_argument("--wait", type=float, default=30, help="seconds the worker may take for each queued effect")
    parser.add_argument("--report-dir", default=str(ROOT / "artifacts" / "smoke"), type=Path)
    parser.add_argument("--any-venv", action="store_true", help="run even where the dev tools are installed")
    args = parser.parse_args()
    args.port = free_port()
    return args


def service_env(args, *, debug: bool, receiver: str = "") -> dict[str, str]:
    """Production settings for the three processes; DEBUG only for seeding the demo data."""
    return local_service_env(
        args,
        debug=debug,
        secret_key=SMOKE_SECRET_KEY,
        field_key=SMOKE_FIELD_KEY,
        CACHE_KEY_PREFIX="bnpl-smoke",
        STATIC_ROOT="",
        # The receiver listens on loopback, which production settings rightly refuse.
        BNPL_WEBHOOK_ALLOW_PRIVATE_URLS="True",
        BNPL_WEBHOOK_BACKOFF_BASE_SECONDS="1",
        WEB_CONCURRENCY="2",
        CELERY_CONCURRENCY="2",
        LOG_LEVEL="INFO",
        SMOKE_RECEIVER_URL=receiver,
    )


class Receiver(BaseHTTPRequestHandler):
    """The merchant's event endpoint: keeps every POST (signature and body), answers 200."""

    received: list[dict] = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.received.append({"signature": self.headers.get("BNPL-Signature", ""), "body": body})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def seed(args, receiver: str) -> None:
    """A fresh database, migrated and seeded, the merchant's endpoint set; Redis emptied."""
    import redis

    create_empty(args.database_url)
    env = service_env(args, debug=True, receiver=receiver)
    point_endpoint = (
        "import os; from accounts.models import User; "
        "User.objects.filter(user_id='merchant-001').update(webhook_url=os.environ['SMOKE_RECEIVER_URL'])"
    )
    for command in (["migrate", "--noinput", "-v0"], ["populate_mock_data"], ["shell", "-c", point_endpoint]):
        done = subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments  # nosec B603
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if done.returncode:
            raise Failed(f"manage.py {command[0]} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    # What seeding queued (its notifications and events) is not part of the smoke.
    redis.Redis.from_url(args.redis_url).flushdb()


def start_celery(args, role: str, log: Path) -> subprocess.Popen:
    """``celery -A config <role>`` as the Procfile runs it, logging to ``log``."""
    command = [sys.executable, "-m", "celery", "-A", "config", role, "--loglevel", "INFO"]
    if role == "worker":
        command += ["--concurrency", "2", "--hostname", f"smoke-{os.getpid()}@%h"]
    with log.open("w") as out:
        return subprocess.Popen(  # noqa: S603 - celery with fixed arguments  # nosec B603
            command,
            cwd=ROOT,
            env=service_env(args, debug=False),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(what: str, condition, seconds: float, processes: dict[str, subprocess.Popen]):
    """``condition()``'s first truthy value within ``seconds``; Failed if a process died or time ran out."""
    deadline = time.monotonic() + seconds
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                raise Failed(f"{name} exited with status {process.returncode} while waiting for {what}")
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not within {seconds:g} s")
        time.sleep(0.25)


class Client:
    """JSON over HTTP to the service; answers ``(status, body)`` whatever the status."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body=None, *, token: str = "", headers: dict | None = None):
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310 - our own server
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - our own server  # nosec B310
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def expect(self, status: int, method: str, path: str, body=None, **kwargs):
        got, answer = self.call(method, path, body, **kwargs)
        if got != status:
            raise Failed(f"{method} {path}: expected {status}, got {got}: {answer}")
        return answer

    def token(self, username: str, password: str) -> str:
        answer = self.expect(200, "POST", "/api/v1/auth/token/", {"username": username, "password": password})
        return answer["access"]


def drive(client: Client, args, processes: dict[str, subprocess.Popen]) -> list[str]:
    """The end-to-end path over HTTP; returns the steps done, raises Failed at the first broken one."""
    steps = []
    ready = client.expect(200, "GET", "/readyz")
    steps.append(f"/readyz 200 ({', '.join(sorted(ready['checks']))})")
    operator, merchant, customer = (client.token(*who) for who in (OPERATOR, MERCHANT, CUSTOMER))
    steps.append("tokens for the operator, the merchant and the customer")

    reference = f"smoke-{uuid.uuid4().hex[:12]}"
    terms = {"user_id": CUSTOMER[0], "total_amount": "120.00", "installment_count": 4, "merchant_reference": reference}
    offer = client.expect(
        201, "POST", "/api/v1/plans/", terms, token=merchant, headers={"Idempotency-Key": f"{reference}-plan"}
    )
    if offer["status"] != "PENDING" or offer["installments"] or len(offer["schedule"]) != 4:
        raise Failed(f"the merchant's plan is not a pending offer with its schedule: {offer}")
    if not offer.get("checkout_url"):
        raise Failed(f"the offer has no checkout_url: {offer}")
    steps.append(f"offer {offer['id']}: PENDING, a schedule of {len(offer['schedule'])} and a checkout_url")
    # A merchant's retry after a timeout, without its Idempotency-Key: the reference finds the offer.
    again = client.expect(200, "POST", "/api/v1/plans/", terms, token=merchant)
    if again["id"] != offer["id"]:
        raise Failed(f"the same merchant_reference made a second plan: {again['id']} beside {offer['id']}")
    steps.append(f"the same merchant_reference again: 200, offer {again['id']}")
    plan = client.expect(
        200,
        "POST",
        f"/api/v1/plans/{offer['id']}/confirm/",
        token=customer,
        headers={"Idempotency-Key": f"{reference}-confirm"},
    )
    if plan["status"] != "ACTIVE" or len(plan["installments"]) != 4:
        raise Failed(f"the confirmed plan is not ACTIVE with 4 installments: {plan}")
    steps.append(f"confirmed by the customer: plan {plan['id']} ACTIVE, {len(plan['installments'])} installments")
    first = min(plan["installments"], key=lambda installment: installment["due_date"])
    payment = client.expect(
        201,
        "POST",
        f"/api/v1/installments/{first['id']}/pay/",
        {"amount": first["amount_due"]},
        token=customer,
        headers={"Idempotency-Key": f"{reference}-pay"},
    )
    if payment.get("status") != "SUCCEEDED":
        raise Failed(f"the payment did not succeed: {payment}")
    steps.append(f"payment {payment['id']} of {payment['amount']}: {payment['status']}")

    refund = client.expect(
        201,
        "POST",
        "/api/v1/refunds/",
        {"plan_id": plan["id"], "transaction_id": f"{reference}-refund", "amount": "30.00", "reason": "smoke"},
        token=merchant,
        headers={"Idempotency-Key": f"{reference}-refund"},
    )
    steps.append(f"refund {refund['id']} of {refund['amount']}: {refund['status']}")

    body = json.dumps(
        {"refund_id": refund["transaction_id"], "status": "approved", "merchant_reference": reference}
    ).encode()
    hook = client.expect(
        200,
        "POST",
        "/webhook/refund-status/",
        body,
        headers={
            "BNPL-Merchant": MERCHANT[0],
            "BNPL-Signature": signature_header(MERCHANT_SECRET, int(time.time()), body),
        },
    )
    if hook.get("processing_mode") != "async":
        raise Failed(f"the webhook was not queued for the worker: {hook}")
    started = time.monotonic()
    wait_for(
        "the worker applying the approved refund",
        lambda: client.call("GET", f"/api/v1/refunds/{refund['id']}/", token=merchant)[1].get("status") == "APPROVED",
        args.wait,
        processes,
    )
    steps.append(f"signed webhook queued (async), refund APPROVED by the worker in {time.monotonic() - started:.1f} s")

    captured = manual_capture(client, reference, merchant=merchant, customer=customer)
    steps.append(f"manual capture: plan {captured} offered, confirmed (AUTHORIZED), captured 200.00 of 250.00 (ACTIVE)")

    expected = {
        plan["id"]: {"plan.pending", "plan.confirmed", "refund.approved"},
        captured: {"plan.pending", "plan.confirmed", "plan.captured"},
    }
    delivered = wait_for(
        f"merchant events of plans {', '.join(map(str, expected))} delivered to the receiver",
        lambda: all(types <= set(events_of(pk)) for pk, types in expected.items()),
        args.wait,
        processes,
    )
    delivered = sorted({kind for pk in expected for kind in events_of(pk)})
    steps.append(f"merchant events delivered, signed: {', '.join(delivered)}")
    owed = sum(
        float(i["amount_due"]) - float(i["amount_paid"])
        for i in client.expect(200, "GET", f"/api/v1/plans/{plan['id']}/", token=operator)["installments"]
        if i["status"] != "CANCELLED"
    )
    if round(owed, 2) != 60.00:  # 120.00, less 30.00 paid, less the 30.00 refund applied
        raise Failed(f"the operator sees {owed:.2f} still owed on plan {plan['id']}, expected 60.00")
    steps.append("the operator sees 60.00 still owed (120.00 less 30.00 paid and 30.00 refunded)")
    client.expect(200, "GET", "/readyz")
    steps.append("/readyz 200")
    return steps


def manual_capture(client: Client, reference: str, *, merchant: str, customer: str) -> int:
    """A manual-capture offer of 250.00 the customer confirms (AUTHORIZED: nothing owed yet)
    and the merchant captures 200.00 of (ACTIVE, its schedule over 200.00); its id."""
    terms = {
        "user_id": CUSTOMER[0],
        "total_amount": "250.00",
        "installment_count": 2,
        "merchant_reference": f"{reference}-manual",
        "capture_mode": "manual",
    }
    offer = client.expect(201, "POST", "/api/v1/plans/", terms, token=merchant)
    authorized = client.expect(200, "POST", f"/api/v1/plans/{offer['id']}/confirm/", token=customer)
    if authorized["status"] != "AUTHORIZED" or authorized["installments"]:
        raise Failed(f"a confirmed manual-capture plan is not AUTHORIZED without installments: {authorized}")
    plan = client.expect(200, "POST", f"/api/v1/plans/{offer['id']}/capture/", {"amount": "200.00"}, token=merchant)
    amounts = sorted(i["amount_due"] for i in plan["installments"])
    if plan["status"] != "ACTIVE" or plan["total_amount"] != "200.00" or amounts != ["100.00", "100.00"]:
        raise Failed(f"the captured plan is not ACTIVE with its schedule over 200.00: {plan}")
    return plan["id"]


def events_of(plan_id: int) -> list[str]:
    """Types of the correctly signed events the receiver got about ``plan_id``."""
    with Receiver.lock:
        received = list(Receiver.received)
    types = []
    for request in received:
        header = request["signature"]
        timestamp = re.search(r"t=(\d+)", header)
        if not timestamp or f"v1={sign(MERCHANT_SECRET, int(timestamp[1]), request['body'])}" not in header:
            continue
        event = json.loads(request["body"])
        if str(plan_id) in json.dumps(event.get("data", {})):
            types.append(event.get("type"))
    return types


def bad_lines(logs: dict[str, Path]) -> list[str]:
    """Every log line that shows a traceback or an error, prefixed with its process."""
    return [
        f"{name}: {line.strip()[:400]}"
        for name, log in logs.items()
        for line in log.read_text(errors="replace").splitlines()
        if BAD_LINE.search(line)
    ]


def main() -> int:
    args = parse_args()
    found = [name for name in DEV_ONLY if importlib.util.find_spec(name)]
    if found and not args.any_venv:
        print(f"FAIL: this virtualenv has dev tools ({', '.join(found)}): run it from the runtime lock's alone")
        return 1
    args.report_dir.mkdir(parents=True, exist_ok=True)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    receiver_url = f"http://127.0.0.1:{receiver.server_port}/bnpl-events"
    logs = {name: args.report_dir / f"{name}.log" for name in ("web", "worker", "beat")}
    processes: dict[str, subprocess.Popen] = {}
    started = time.monotonic()
    print(f"Production smoke from {sys.prefix}", flush=True)
    try:
        seed(args, receiver_url)
        processes["worker"] = start_celery(args, "worker", logs["worker"])
        processes["beat"] = start_celery(args, "beat", logs["beat"])
        processes["web"] = start_gunicorn(
            args, logs["web"], app="config.wsgi:application", env=service_env(args, debug=False)
        )
        wait_for("the worker to be ready", lambda: " ready." in logs["worker"].read_text(), 60, processes)
        steps = drive(Client(args.port), args, processes)
        for name, process in processes.items():
            if process.poll() is not None:
                raise Failed(f"{name} exited with status {process.returncode}")
    except (Failed, SystemExit) as failure:
        print(f"FAIL: {failure}")
        for name, log in logs.items():
            if log.exists():
                print(f"--- {name} log (last lines) ---\n{log.read_text(errors='replace')[-3000:]}")
        return 1
    finally:
        for process in processes.values():
            stop(process)
        receiver.shutdown()
    for step in steps:
        print(f"  ok  {step}")
    errors = bad_lines(logs)
    if errors:
        print(f"FAIL: {len(errors)} traceback or error lines in the logs:")
        print("\n".join(errors[:40]))
        return 1
    print(f"Production smoke passed in {time.monotonic() - started:.0f} s; logs in {args.report_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
