"""The settlement benchmark still runs (tiny data, its own database and Redis db, real workers)."""

import pytest

from config.tests.bench_runs import bench_run, smoke_database_url, smoke_redis_url


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_settle_runs_with_one_and_two_workers_beside_the_bare_script():
    result = bench_run(
        *("bench/settle.py", "--plans", "600", "--merchants", "30", "--chunk-merchants", "10", "--failing-every", "10"),
        *("--database-url", smoke_database_url("bnpl_bench_settle_smoke"), "--redis-url", smoke_redis_url("settle")),
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "machine: " in result.stdout
    assert "| bare SQL script |" in result.stdout
    assert "| settle_merchants(fan_out=True), 1 worker process(es) |" in result.stdout
    assert "| settle_merchants(fan_out=True), 2 worker process(es) |" in result.stdout
    assert "ratio settled, 2 worker process(es) / bare:" in result.stdout
    assert "| payouts FAILED | 3 | 3 | 3 | 3 |" in result.stdout
    assert "all checks passed" in result.stdout
