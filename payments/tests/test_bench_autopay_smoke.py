"""The autopay benchmark still runs (tiny data, its own database and Redis db, real workers)."""

import pytest

from config.tests.bench_runs import (
    bench_passed,
    bench_run,
    machine_and_ratios_reported,
    smoke_database_url,
    smoke_redis_url,
)


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_autopay_runs_with_one_and_two_workers_and_reports_the_ratio():
    result = bench_run(
        *("bench/autopay.py", "--rows", "300"),
        *("--database-url", smoke_database_url("bnpl_bench_autopay_smoke"), "--redis-url", smoke_redis_url("autopay")),
    )

    bench_passed(
        result,
        "| 1 | 300 |",
        "| 2 | 300 |",
        "ratio 2 workers / 1 worker:",
        "all checks passed",
    )
    machine_and_ratios_reported(
        result,
        r"\| 2 \| 300 \|( [\d.]+ \|){3} {ratio} \|( [\d.]+ \|){2} {ratio} \| [\d.]+ \|",
        r"ratio 2 workers / 1 worker: {ratio} charges/s until all PAID, {ratio} until the queue is drained",
    )
