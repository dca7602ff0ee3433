"""The sweep benchmark still runs (tiny data, its own database and Redis db, real workers):
a benchmark that rots is no benchmark."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
SMOKE_REDIS_DB = 12  # the benchmark flushes it; the tests' own Redis database is left alone


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_sweep_runs_with_one_and_two_workers_beside_the_bare_update_and_the_naive_loop():
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/bnpl_bench_smoke"
    redis_url = urlparse(settings.REDIS_URL)._replace(path=f"/{SMOKE_REDIS_DB}").geturl()
    command = ["bench/sweep.py", "--rows", "4000", "--chunk-plans", "300", "--sample", "50"]
    result = subprocess.run(  # noqa: S603 - our own script with fixed arguments  # nosec B603
        [sys.executable, *command, "--database-url", url, "--redis-url", redis_url],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "past due: 400 installments (10.0%)" in result.stdout
    assert "| one bare set-based UPDATE of the past-due rows |" in result.stdout
    assert "| sweep: 4 chunk tasks, 1 worker process(es) |" in result.stdout
    assert "| sweep: 4 chunk tasks, 2 worker process(es) |" in result.stdout
    assert "naive per-row loop, autocommit (50-row sample" in result.stdout
    assert "ratio 2 workers / 1:" in result.stdout
    assert "all checks passed" in result.stdout
