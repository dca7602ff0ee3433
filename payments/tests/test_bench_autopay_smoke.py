"""The autopay benchmark still runs (tiny data, its own database and Redis db, real workers)."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
SMOKE_REDIS_DB = 13  # the benchmark flushes it; the tests' own Redis database is left alone


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_autopay_runs_with_one_and_two_workers_and_reports_the_ratio():
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/bnpl_bench_autopay_smoke"
    redis_url = urlparse(settings.REDIS_URL)._replace(path=f"/{SMOKE_REDIS_DB}").geturl()
    result = subprocess.run(  # noqa: S603 - our own script with fixed arguments  # nosec B603
        [sys.executable, "bench/autopay.py", "--rows", "300", "--database-url", url, "--redis-url", redis_url],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| 1 | 300 |" in result.stdout
    assert "| 2 | 300 |" in result.stdout
    assert "ratio 2 workers / 1 worker:" in result.stdout
    assert "all checks passed" in result.stdout
