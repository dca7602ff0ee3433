"""The soak still runs and reconciles (a few seconds of traffic, tiny data, its own database):
merchants' offers, the customers' confirmations, payments on the plans that became ACTIVE."""

import os

import pytest

from config.tests.bench_runs import bench_run, machine_and_ratios_reported, smoke_database_url, smoke_redis_url


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_soak_reconciles_every_answer_with_the_books():
    url = os.environ.get("BENCH_SOAK_SMOKE_DATABASE_URL", smoke_database_url("bnpl_bench_soak_smoke"))
    redis_url = os.environ.get("BENCH_SOAK_SMOKE_REDIS_URL", smoke_redis_url("soak"))
    result = bench_run(
        *("bench/soak.py", "--minutes", "0.2", "--scale", "50", "--sweep-seconds", "4"),
        *("--customers", "4", "--merchants", "2", "--clients", "3", "--worker-processes", "1"),
        *("--database-url", url, "--redis-url", redis_url),
        *("--port", os.environ.get("BENCH_SOAK_SMOKE_PORT", "8797")),
        env={"WEB_CONCURRENCY": "2"},
    )

    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert "SOAK PASSED" in result.stdout
    # No ratio to refuse: the machine line before and after, the others' cores during the traffic.
    machine_and_ratios_reported(result, r"  during the traffic: other processes used [\d.]+ cores")
    assert "ledger: manage.py check_ledger exit 0: Ledger OK" in result.stdout
    for row in (
        "| POST /api/v1/plans/ | ok |",
        "| POST /api/v1/plans/{id}/confirm/ | ok |",
        "| POST /api/v1/installments/{id}/pay/ | ok |",
    ):
        assert row in result.stdout
    for check in (
        "| plan answered 201: an offer, PENDING, exists once |",
        "| plan owed: the installments answered, one origination entry |",
        "| plan's state = its transitions answered 200, once each |",
        "| idempotency key kept with its answer |",
        "| sweep run closed |",
    ):
        assert check in result.stdout
