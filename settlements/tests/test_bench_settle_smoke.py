"""The settlement benchmark still runs (tiny data, its own database and Redis db, real workers)."""

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
def test_bench_settle_runs_with_one_and_two_workers_beside_the_bare_script():
    result = bench_run(
        *("bench/settle.py", "--plans", "600", "--merchants", "30", "--chunk-merchants", "10", "--failing-every", "10"),
        *("--database-url", smoke_database_url("bnpl_bench_settle_smoke"), "--redis-url", smoke_redis_url("settle")),
    )

    bench_passed(
        result,
        "machine: ",
        "| bare SQL script |",
        "| settle_merchants(fan_out=True), 1 worker process(es) |",
        "| settle_merchants(fan_out=True), 2 worker process(es) |",
        "ratio settled, 2 worker process(es) / bare:",
        "| payouts FAILED | 3 | 3 | 3 | 3 |",
        "all checks passed",
    )
    machine_and_ratios_reported(
        result,
        r"ratio settled, 2 worker process\(es\) / bare: {ratio} \(target <= 1\.5x\); paid out: {ratio}",
        r"ratio 2 workers / 1: {ratio} faster to settled",
    )
