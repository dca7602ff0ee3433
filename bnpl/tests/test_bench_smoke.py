"""The sweep benchmark still runs (tiny data, its own database and Redis db, real workers):
a benchmark that rots is no benchmark."""

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
def test_bench_sweep_runs_with_one_and_two_workers_beside_the_bare_script_the_naive_loop_and_stale_statistics():
    result = bench_run(
        *("bench/sweep.py", "--rows", "4000", "--chunk-plans", "300", "--sample", "50"),
        *("--database-url", smoke_database_url("bnpl_bench_smoke"), "--redis-url", smoke_redis_url("sweep")),
    )

    bench_passed(
        result,
        "machine: ",
        "past due: 400 installments (10.0%)",
        "| bare SQL script: the same rows, 5 statements in one transaction |",
        "| one bare set-based UPDATE of the past-due rows (nothing else) |",
        "| sweep: 4 chunk tasks, 1 worker process(es) |",
        "| sweep: 4 chunk tasks, 2 worker process(es) |",
        "naive per-row loop, autocommit (50-row sample",
        "ratio 2 workers / 1:",
        "| idle sweep |",
        "| sweep after a mass change |",
        "| counts as the case plans (none idle, some of each after the change) | True | True | True |",
        # The bare script and both sweeps made the same rows: what the seed says they must.
        "| LATE_FEE journal entries | 4 | 4 | 4 | 4 |",
        "| LATE_FEE postings | 404 | 404 | 404 | 404 |",
        "| the run's counts (marked, fees, into debt) | " + " | ".join(["400, 400, 160"] * 4) + " |",
        "| chunks' marked and fees | 400, 400 | 400, 400 | 400, 400 | 400, 400 |",
        "all checks passed",
    )
    machine_and_ratios_reported(
        result,
        r"\| sweep: 4 chunk tasks, 1 worker process\(es\) \| [\d.]+ \| {ratio} \| {ratio} \| {ratio} \| [\d.]+ \|",
        r"ratio sweep, 1 worker process\(es\) / bare SQL script: {ratio} \(target <= 1.5x\)",
        r"ratio sweep, 2 worker process\(es\) / bare SQL script: {ratio} \(target <= 1.5x\)",
    )
