#!/usr/bin/env python
"""Schema fuzzing: schemathesis against the running service's own OpenAPI schema.

What it does, start to end:

- a PostgreSQL database and a Redis database of its own (``--database-url``,
  ``--redis-url``; both emptied first), migrated and seeded with ``populate_mock_data``
  (merchant-001's day settled, its payout PAID), then ``seed_settlements``: a second
  merchant whose payout the bank refuses (FAILED). So the settlements and payouts
  operations answer with real rows (their ids reach the fuzzer through the list responses
  and the links inferred between operations);
- the service as in production: gunicorn (``config/gunicorn.py``, ``DEBUG=False``) on a
  free port of 127.0.0.1, no Celery worker (queued tasks stay in the queue and are purged
  at the end, so nothing is delivered anywhere), throttle rates set high so that the
  fuzzer measures the API and not the rate limits;
- a JWT from ``/api/v1/auth/token/`` for an operator (``admin``), a merchant
  (``merchant-001``) and a customer (``usr-001``);
- ``schemathesis run`` against ``/api/schema/`` once per role and once anonymously, the
  four side by side: every operation, through the examples, coverage (the schema's
  boundary values), fuzzing (``--max-examples`` generated cases per operation) and
  stateful phases (anonymously a lighter pass: the examples and 5 generated cases each),
  a fixed ``--seed`` and no cache (a run depends on no earlier one), with the checks
  not_a_server_error, status_code_conformance, content_type_conformance,
  response_headers_conformance and response_schema_conformance. The refund-status webhook
  is signed as ``merchant-001`` in the merchant's pass by ``scripts/fuzz_hooks.py`` (so its
  body validation is reached) and sent unsigned in the others (401s).

It prints the figures (operations, test cases by phase, requests, failed checks per role)
and exits 1 on any failure or error schemathesis reports, or when the whole run takes
longer than ``--time-limit`` seconds. The reports of each pass (schemathesis' output,
JUnit XML and NDJSON events, the server log) are kept in ``--report-dir``.

    python scripts/fuzz_api.py                      # what CI runs (make fuzz)
    python scripts/fuzz_api.py --roles customer -n 50 --seed 7
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.autopay import add_store_arguments, create_empty  # noqa: E402 - the benchmarks' helpers, from the root
from bench.http_bench import local_service_env, stop, token  # noqa: E402
from bench.http_bench import start_gunicorn as serve  # noqa: E402

# Throw-away keys: the fuzzing database is made by this script alone, and emptied by its next run.
FUZZ_SECRET_KEY = "fuzz-only-secret-key-not-for-production-0123456789abcdefghijklmn"  # noqa: S105 - throw-away  # nosec B105
FUZZ_FIELD_KEY = "fuzz-only-field-encryption-key-0123456789abcdef"
GENEROUS_RATE = "100000/minute"

# Demo users of populate_mock_data (local-only credentials, see README).
ROLES = {
    "operator": ("admin", "admin123"),
    "merchant": ("merchant-001", "demo12345"),
    "customer": ("usr-001", "demo12345"),
    "anonymous": None,
}
# The merchant seed_settlements adds: its bank account ends in 0002, which the fake payout
# gateway refuses (account_closed).
FAILING_MERCHANT = "merchant-fuzz-002"
FAILING_ACCOUNT = "123450002"
PHASES = ("examples", "coverage", "fuzzing", "stateful")
# Anonymously nearly every operation is a 401 whatever the input, and the public ones
# (register, token, refresh, the webhook) are fuzzed in full in the other passes, which do
# not authenticate them either: a light pass shows that every 401 is documented.
ANONYMOUS_PHASES = "examples,fuzzing"
ANONYMOUS_EXAMPLES = 5
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "-n", "--max-examples", type=int, default=25, help="generated test cases per operation (fuzzing phase)"
    )
    parser.add_argument("--seed", type=int, default=20261130, help="schemathesis' random seed (reproducible runs)")
    parser.add_argument("--time-limit", type=int, default=540, help="seconds the whole run may take (then it fails)")
    parser.add_argument("--roles", default=",".join(ROLES), help=f"comma-separated, among {', '.join(ROLES)}")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--port", type=int, default=0, help="the service's port on 127.0.0.1 (0: a free one)")
    add_store_arguments(parser, "FUZZ", "bnpl_fuzz", redis_db=11)
    parser.add_argument("--report-dir", default=str(ROOT / "artifacts" / "fuzz"), type=Path)
    args = parser.parse_args()
    args.roles = [role.strip() for role in args.roles.split(",") if role.strip()]
    unknown = set(args.roles) - set(ROLES)
    if unknown or not args.roles:
        parser.error(f"unknown roles: {', '.join(sorted(unknown))}" if unknown else "no roles")
    if args.port == 0:
        args.port = free_port()
    return args


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_env(args, *, debug: bool) -> dict[str, str]:
    """The service's environment: production settings to serve, DEBUG only to seed the demo data."""
    return local_service_env(
        args,
        debug=debug,
        secret_key=FUZZ_SECRET_KEY,
        field_key=FUZZ_FIELD_KEY,
        CACHE_KEY_PREFIX="bnpl-fuzz",
        STATIC_ROOT="",  # no collectstatic here: the API serves no static files
        BNPL_WEBHOOK_ALLOW_PRIVATE_URLS="False",
        BNPL_THROTTLE_USER=GENEROUS_RATE,
        BNPL_THROTTLE_ANON=GENEROUS_RATE,
        BNPL_THROTTLE_AUTH=GENEROUS_RATE,
        JWT_ACCESS_MINUTES="120",
        WEB_CONCURRENCY=str(args.workers),
        LOG_LEVEL="ERROR",  # server errors with their traceback; not a line per 4xx
    )


def prepare(args) -> None:
    """A new database, migrated and seeded; the Redis database emptied."""
    import redis

    name = urlparse(args.database_url).path.lstrip("/")
    if not name or not name.replace("_", "").isalnum():
        raise SystemExit(f"--database-url needs a plain database name, not {name!r}")
    create_empty(args.database_url)
    redis.Redis.from_url(args.redis_url).flushdb()
    seed_env = service_env(args, debug=True)
    seed = "from scripts.fuzz_api import seed_settlements; seed_settlements()"
    for command in (["migrate", "--noinput", "-v0"], ["populate_mock_data"], ["shell", "-c", seed]):
        subprocess.run(  # noqa: S603 - our own manage.py  # nosec B603
            [sys.executable, "manage.py", *command], cwd=ROOT, env=seed_env, check=True, capture_output=True
        )


def seed_settlements() -> None:
    """After ``populate_mock_data``, which settles merchant-001's day and pays it out (in
    ``manage.py shell``): a second merchant, ``merchant-fuzz-002``, with a sale and a bank
    account its bank has closed, settled today, its payout FAILED (``account_closed``).
    Settling today again takes only what is not settled yet. Each payout is sent here: no
    worker runs."""
    from decimal import Decimal

    from django.db import transaction

    from accounts.models import User
    from accounts.services import merchant_payout_account_set, user_register
    from bnpl.schedule import business_today
    from bnpl.services.origination import plan_create
    from ops.management.commands.populate_mock_data import DEMO_PASSWORD, OPERATOR_USERNAME
    from settlements.models import Payout
    from settlements.services.payouts import payout_send
    from settlements.services.settle import settle_merchants

    with transaction.atomic():
        merchant = user_register(
            username=FAILING_MERCHANT,
            user_id=FAILING_MERCHANT,
            password=DEMO_PASSWORD,
            role=User.Role.MERCHANT,
            full_name="Closed Account Shop",
            phone_number="+998712000002",
            email=f"{FAILING_MERCHANT}@example.com",
        )
        merchant_payout_account_set(
            merchant=merchant, account=FAILING_ACCOUNT, name="Closed Account Shop", changed_by=merchant
        )
        plan_create(
            customer=User.objects.get(user_id="usr-001"),
            merchant=merchant,
            total_amount=Decimal("250.00"),
            installment_count=2,
            merchant_reference="fuzz-closed-account",
            created_by=User.objects.get(username=OPERATOR_USERNAME),
        )
    settle_merchants(day=business_today())
    for payout in Payout.objects.filter(status=Payout.Status.PENDING).order_by("pk"):
        payout_send(payout_id=payout.pk)


def start_gunicorn(args, log: Path) -> subprocess.Popen:
    """The service as in production (config/gunicorn.py), once /readyz answers."""
    return serve(args, log, app="config.wsgi:application", env=service_env(args, debug=False), probe="/readyz")


def purge_queue(args) -> None:
    """Drop the tasks the API queued (there is no worker): nothing is left to deliver later."""
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()


def schemathesis_command(args, role: str, bearer: str | None, folder: Path) -> list[str]:
    """``schemathesis run`` over every operation of the service's schema, as ``role``."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(ROOT / "scripts" / "schemathesis.toml"),
        "run",
        f"http://127.0.0.1:{args.port}/api/schema/",
        "--checks",
        CHECKS,
        "--max-examples",
        str(ANONYMOUS_EXAMPLES if role == "anonymous" else args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--report",
        "junit,ndjson",
        "--report-junit-path",
        str(folder / f"{role}.junit.xml"),
        "--report-ndjson-path",
        str(folder / f"{role}.ndjson"),
    ]
    if bearer:
        command += ["--header", f"Authorization: Bearer {bearer}"]
    else:
        command += ["--phases", ANONYMOUS_PHASES]
    return command


def fuzz(args, tokens: dict[str, str | None], folder: Path, deadline: float) -> list[dict]:
    """One schemathesis run per role, side by side; each one's output once they are done."""
    runs = {}
    for role in args.roles:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "scripts.fuzz_hooks",
            # The merchant's pass signs the refund-status webhook; the others send it unsigned.
            "FUZZ_SIGN_WEBHOOK": "1" if role == "merchant" else "0",
        }
        with (folder / f"{role}.log").open("w") as out:
            runs[role] = subprocess.Popen(  # noqa: S603 - schemathesis, from this interpreter  # nosec B603
                schemathesis_command(args, role, tokens[role], folder),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    results = []
    for role, process in runs.items():
        try:
            exit_code = process.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            exit_code = "timeout"
        print(f"\n== schemathesis as {role}\n{(folder / f'{role}.log').read_text()}", flush=True)
        results.append({"role": role, "exit": exit_code, **count(folder / f"{role}.ndjson")})
    return results


def count(events: Path) -> dict:
    """Operations, test cases, requests and failed checks, from schemathesis' NDJSON events."""
    figures = {"operations": 0, "cases": 0, "requests": 0, "failures": 0, "errors": 0}
    figures |= dict.fromkeys(PHASES, 0)
    if not events.exists():
        return figures
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if "LoadingFinished" in event:
            figures["operations"] = event["LoadingFinished"]["statistic"]["operations"]["selected"]
        elif "ScenarioFinished" in event:
            scenario = event["ScenarioFinished"]
            recorder = scenario.get("recorder") or {}
            figures["cases"] += len(recorder.get("cases") or {})
            if scenario.get("phase") in PHASES:
                figures[scenario["phase"]] += len(recorder.get("cases") or {})
            figures["requests"] += len(recorder.get("interactions") or {})
            figures["failures"] += sum(
                1
                for results in (recorder.get("checks") or {}).values()
                for check in results
                if check.get("status") == "failure"
            )
        elif "NonFatalError" in event:
            figures["errors"] += 1
    return figures


def main() -> int:
    args = parse_args()
    folder = args.report_dir
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.monotonic()
    print(f"Fuzzing: a fresh {urlparse(args.database_url).path.lstrip('/')}, migrated and seeded", flush=True)
    prepare(args)
    server = start_gunicorn(args, folder / "gunicorn.log")
    try:
        tokens = {role: token(args, *ROLES[role]) if ROLES[role] else None for role in args.roles}
        print(f"Fuzzing {', '.join(args.roles)} side by side on 127.0.0.1:{args.port}", flush=True)
        results = fuzz(args, tokens, folder, started + args.time_limit)
    finally:
        stop(server)
        purge_queue(args)
    return report(args, results, time.monotonic() - started)


def report(args, results: list[dict], seconds: float) -> int:
    """The figures, and 1 if any run failed, errored or ran out of time."""
    print("\n== Schema fuzzing figures (test cases by phase: examples, coverage, fuzzing, stateful)")
    print(
        f"{'role':<10} {'operations':>10} {'examples':>8} {'coverage':>8} {'fuzzing':>8} {'stateful':>8} "
        f"{'cases':>7} {'requests':>9} {'failures':>9} {'errors':>7}  exit"
    )
    for row in results:
        print(
            f"{row['role']:<10} {row['operations']:>10} {row['examples']:>8} {row['coverage']:>8} "
            f"{row['fuzzing']:>8} {row['stateful']:>8} {row['cases']:>7} {row['requests']:>9} "
            f"{row['failures']:>9} {row['errors']:>7}  {row['exit']}"
        )
    total = {key: sum(row[key] for row in results) for key in ("operations", "cases", "requests", "failures", "errors")}
    print(
        f"{total['operations']} operations fuzzed ({len(results)} roles x "
        f"{max((row['operations'] for row in results), default=0)}), up to {args.max_examples} generated examples "
        f"per operation (fuzzing phase; coverage adds the schema's boundary cases; anonymous: examples and "
        f"{ANONYMOUS_EXAMPLES} generated), seed {args.seed}: "
        f"{total['cases']} test cases, {total['requests']} requests, "
        f"{total['failures']} failed checks, {total['errors']} errors in {seconds:.0f} s (limit {args.time_limit} s)"
    )
    bad = [row["role"] for row in results if row["exit"] != 0]
    if bad:
        print(f"FAILED: schemathesis found problems as {', '.join(bad)}; reports in {args.report_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
