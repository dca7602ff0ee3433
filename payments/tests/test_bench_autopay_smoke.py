"""The autopay benchmark still runs (tiny data, its own database and Redis db, real workers)."""

import pytest

from config.tests.bench_runs import bench_run, smoke_database_url, smoke_redis_url


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_autopay_runs_with_one_and_two_workers_and_reports_the_ratio():
    result = bench_run(
        *("bench/autopay.py", "--rows", "300"),
        *("--database-url", smoke_database_url("bnpl_bench_autopay_smoke"), "--redis-url", smoke_redis_url("autopay")),
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| 1 | 300 |" in result.stdout
    assert "| 2 | 300 |" in result.stdout
    assert "ratio 2 workers / 1 worker:" in result.stdout
    assert "all checks passed" in result.stdout
