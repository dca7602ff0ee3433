"""The HTTP benchmark still runs (a second per cell, tiny data, its own database)."""

import re
import shutil

import pytest

from config.tests.bench_runs import bench_run, machine_and_ratios_reported, smoke_database_url, smoke_redis_url


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.skipif(not shutil.which("wrk"), reason="needs Debian's wrk (installed by .ci/run)")
def test_bench_http_measures_every_endpoint_beside_its_bare_reference():
    result = bench_run(
        *("bench/http_bench.py", "--seconds", "1", "--warmup", "0", "--scale", "50", "--connections", "4"),
        *("--database-url", smoke_database_url("bnpl_bench_http_smoke"), "--redis-url", smoke_redis_url("http")),
        *("--port", "8792"),
        env={"WEB_CONCURRENCY": "2"},
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for row in ("| GET /healthz (floor) | 4 |", "| POST /api/v1/plans/ | 4 |", "| GET /api/v1/debt/{user_id}/ | 4 |"):
        assert row in result.stdout
    assert "| POST /api/v1/installments/{id}/pay/ | 4 |" in result.stdout
    # Every cell answered 2xx (the run's exit status): every confirm found its offer PENDING.
    assert "| POST /api/v1/plans/ + /confirm/ | 4 |" in result.stdout
    assert "| bare: offer + confirm rows | 4 |" in result.stdout
    # Each API endpoint's ratio to its bare reference, or its refusal; the cores others used.
    cell = r" \| 4 \|( [\d.]+ \|){4} {ratio} \| [\d.]+ \|"
    machine_and_ratios_reported(
        result,
        *(
            re.escape(f"| {endpoint}") + cell
            for endpoint in (
                "POST /api/v1/plans/",
                "POST /api/v1/plans/ + /confirm/",
                "GET /api/v1/plans/{id}/",
                "GET /api/v1/debt/{user_id}/",
                "POST /api/v1/installments/{id}/pay/",
            )
        ),
    )
