"""The sweep benchmark still runs (tiny data, its own database): a benchmark that rots is no benchmark."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_bench_sweep_runs_and_reports_both_approaches():
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/bnpl_bench_smoke"
    result = subprocess.run(  # noqa: S603 - our own script with fixed arguments
        [sys.executable, "bench/sweep.py", "--rows", "400", "--repeat", "1", "--database-url", url],
        cwd=ROOT,
        env={**os.environ, "BENCH_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "past due: 40 installments (10.0%)" in result.stdout
    assert "| set-based sweep" in result.stdout
    assert "per-row ORM loop, autocommit" in result.stdout
