"""The dashboards benchmark still runs (tiny data, its own database and Redis db)."""

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
def test_bench_dashboards_times_every_page_cold_and_warm_on_stale_and_fresh_statistics():
    result = bench_run(
        *("bench/dashboards.py", "--rows", "4000", "--chunk-plans", "300", "--warm", "3", "--callers", "4"),
        *("--database-url", smoke_database_url("bnpl_bench_dashboards_smoke")),
        *("--redis-url", smoke_redis_url("dashboards")),
    )

    bench_passed(
        result,
        "swept in ",
        "400 installments overdue",
        "| operator | stale | 1 | 1 | 4/4 |",
        "| anonymous | fresh | 0 | 1 | 4/4 |",
        "beat's refresh (stale statistics):",
        "| installments overdue (health figures) | 400 | 400 | 400 |",
        "| analytics (the merchant) served = computed now | True | True | True |",
        "all checks passed",
    )
    pages = (
        r"health dashboard, JSON, anonymous",
        r"health dashboard, JSON, operator",
        r"health dashboard, HTML, operator",
        r"analytics, operator \(every merchant\)",
        r"analytics, the merchant \(all its plans\)",
        r"/metrics, operator",
    )
    number = r"\d+\.\d"
    machine_and_ratios_reported(
        result,
        *(
            rf"\| {page} \| {case} \| {number} \| {number} \| {number} \| {{ratio}} \| \d+\.\d\d \|"
            for page in pages
            for case in ("stale", "fresh")
        ),
    )
