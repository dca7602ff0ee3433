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
def test_bench_autopay_runs_with_one_and_two_workers_beside_the_bare_script_and_reports_the_ratios():
    result = bench_run(
        *("bench/autopay.py", "--rows", "300"),
        *("--database-url", smoke_database_url("bnpl_bench_autopay_smoke"), "--redis-url", smoke_redis_url("autopay")),
    )

    bench_passed(
        result,
        "| 1 | 300 |",
        "| 2 | 300 |",
        "ratio 2 workers / 1 worker:",
        # The bare script in 1 and 2 processes and autopay with 1 and 2 workers made the same rows.
        "| PAYMENT postings (clearing in, receivable out) | 600 | 600 | 600 | 600 | 600 |",
        "| payment receipts (SKIPPED: no address) | 600 | 600 | 600 | 600 | 600 |",
        "| installment.paid events | 300 | 300 | 300 | 300 | 300 |",
        "all checks passed",
    )
    machine_and_ratios_reported(
        result,
        r"\| 2 \| 300 \|( [\d.]+ \|){3} {ratio} \|( [\d.]+ \|){2} {ratio} \| [\d.]+ \|",
        r"ratio 2 workers / 1 worker: {ratio} charges/s until all PAID, {ratio} until the queue is drained",
        r"\| one statement per transaction \| 2 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| {ratio} \| [\d.]+ \|",
        r"ratio autopay / bare script, 1 process\(es\) each: {ratio} \(target <= 1.5x\)",
        r"ratio autopay / bare script, 2 process\(es\) each: {ratio} \(target <= 1.5x\)",
    )
