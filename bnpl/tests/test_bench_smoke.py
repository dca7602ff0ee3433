"""The sweep benchmark still runs (tiny data, its own database and Redis db, real workers):
a benchmark that rots is no benchmark."""

import pytest

from config.tests.bench_runs import bench_passed, bench_run, smoke_database_url, smoke_redis_url


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_sweep_runs_with_one_and_two_workers_beside_the_bare_update_the_naive_loop_and_stale_statistics():
    result = bench_run(
        *("bench/sweep.py", "--rows", "4000", "--chunk-plans", "300", "--sample", "50"),
        *("--database-url", smoke_database_url("bnpl_bench_smoke"), "--redis-url", smoke_redis_url("sweep")),
    )

    bench_passed(
        result,
        "machine: ",
        "past due: 400 installments (10.0%)",
        "| one bare set-based UPDATE of the past-due rows |",
        "| sweep: 4 chunk tasks, 1 worker process(es) |",
        "| sweep: 4 chunk tasks, 2 worker process(es) |",
        "naive per-row loop, autocommit (50-row sample",
        "ratio 2 workers / 1:",
        "| idle sweep |",
        "| sweep after a mass change |",
        "| counts as the case plans (none idle, some of each after the change) | True | True | True |",
        "all checks passed",
    )
