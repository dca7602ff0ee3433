"""The HTTP benchmark still runs (a second per cell, tiny data, its own database)."""

import re
import shutil

import pytest

from config.tests.bench_runs import bench_run, machine_and_ratios_reported, smoke_database_url, smoke_redis_url

# Each API endpoint measured, and the bare reference it is compared with.
MEASURED = {
    "POST /api/v1/plans/": "bare: offer rows",
    "POST /api/v1/plans/ + /confirm/": "bare: offer + confirm rows",
    "GET /api/v1/plans/{id}/": "bare: plan read",
    "GET /api/v1/debt/{user_id}/": "bare: debt read",
    "POST /api/v1/installments/{id}/pay/": "bare: installment payment",
    "POST /api/v1/plans/{id}/pay/": "bare: plan payment",
    "POST /api/v1/refunds/": "bare: refund request",
    "POST /webhook/refund-status/": "bare: refund-status webhook",
}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.skipif(not shutil.which("wrk"), reason="needs Debian's wrk (installed by .ci/run)")
def test_bench_http_measures_every_endpoint_beside_its_bare_reference():
    result = bench_run(
        *("bench/http_bench.py", "--seconds", "1", "--warmup", "0", "--scale", "50", "--connections", "4"),
        *("--database-url", smoke_database_url("bnpl_bench_http_smoke"), "--redis-url", smoke_redis_url("http")),
        *("--port", "8792", "--rounds", "2"),
        env={"WEB_CONCURRENCY": "2"},
    )

    # Every cell answered 2xx (the run's exit status): every confirm found its offer PENDING,
    # every payment, refund and webhook call of the API and of its reference went through.
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Requests/s, p50, p99, errors (none), and for an API endpoint its requests/s as a
    # percentage of its reference's and its p99 as a multiple of the reference's p99, each
    # a figure or its refusal; for the floor and a reference, no ratio. Then the cores others used.
    cell = r" \| 4 \|( [\d.]+ \|){3} 0 \| {ratio} \| {ratio} \| [\d.]+ \|"
    alone = r" \| 4 \|( [\d.]+ \|){3} 0 \|  \|  \| [\d.]+ \|"
    machine_and_ratios_reported(
        result,
        *(re.escape(f"| {endpoint}") + cell for endpoint in MEASURED),
        *(re.escape(f"| {name}") + alone for name in ("GET /healthz (floor)", *MEASURED.values())),
    )
    # Two rounds, each followed by its own ratios, then the table that combines them.
    assert "round 2 of 2" in result.stdout
    for endpoint in MEASURED:
        assert result.stdout.count(f"    {endpoint}, 4 conns: ") == 2, endpoint
    # A percentage, then a multiple (or the refusal of both): never the one in the other's place.
    for endpoint in MEASURED:
        line = next(line for line in result.stdout.splitlines() if line.startswith(f"| {endpoint} | 4 |"))
        throughput, latency = line.split(" | ")[6:8]
        assert (throughput.endswith("%") and latency.endswith("x")) or throughput == latency, line


def test_even_rounds_measure_each_endpoint_before_its_reference():
    """What a cell writes is there for the next one: the order alternates between rounds."""
    from bench.http_bench import in_turn

    cells = [("floor", "", None), ("bare: a", "", None), ("A", "", "bare: a")]
    cells += [("bare: b", "", None), ("B", "", "bare: b")]
    assert [cell[0] for cell in in_turn(cells, 1)] == ["floor", "bare: a", "A", "bare: b", "B"]
    assert [cell[0] for cell in in_turn(cells, 2)] == ["floor", "A", "bare: a", "B", "bare: b"]
    assert in_turn(cells, 3) == cells
