"""The soak still runs and reconciles (a few seconds of traffic, tiny data, its own database)."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_soak_reconciles_every_answer_with_the_books():
    db = settings.DATABASES["default"]
    url = os.environ.get(
        "BENCH_SOAK_SMOKE_DATABASE_URL", f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/bnpl_bench_soak_smoke"
    )
    redis_url = os.environ.get("BENCH_SOAK_SMOKE_REDIS_URL", urlparse(settings.REDIS_URL)._replace(path="/13").geturl())
    result = subprocess.run(  # noqa: S603 - our own script with fixed arguments  # nosec B603
        [
            *(sys.executable, "bench/soak.py", "--minutes", "0.2", "--scale", "50", "--sweep-seconds", "4"),
            *("--customers", "4", "--merchants", "2", "--clients", "3", "--worker-processes", "1"),
            *("--database-url", url, "--redis-url", redis_url),
            *("--port", os.environ.get("BENCH_SOAK_SMOKE_PORT", "8797")),
        ],
        cwd=ROOT,
        env={**os.environ, "WEB_CONCURRENCY": "2"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert "SOAK PASSED" in result.stdout
    assert "ledger: manage.py check_ledger exit 0: Ledger OK" in result.stdout
    for row in ("| POST /api/v1/plans/ | ok |", "| POST /api/v1/installments/{id}/pay/ | ok |"):
        assert row in result.stdout
    for check in (
        "| plan answered 201: exists once",
        "| idempotency key kept with its answer |",
        "| sweep run closed |",
    ):
        assert check in result.stdout
