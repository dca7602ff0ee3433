"""The HTTP benchmark still runs (a second per cell, tiny data, its own database)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.skipif(not shutil.which("wrk"), reason="needs Debian's wrk (installed by .ci/run)")
def test_bench_http_measures_every_endpoint_beside_its_bare_reference():
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/bnpl_bench_http_smoke"
    redis_url = urlparse(settings.REDIS_URL)._replace(path="/14").geturl()
    result = subprocess.run(  # noqa: S603 - our own script with fixed arguments  # nosec B603
        [
            *(
                sys.executable,
                "bench/http_bench.py",
                "--seconds",
                "1",
                "--warmup",
                "0",
                "--scale",
                "50",
                "--connections",
                "4",
            ),
            *("--database-url", url, "--redis-url", redis_url, "--port", "8792"),
        ],
        cwd=ROOT,
        env={**os.environ, "WEB_CONCURRENCY": "2"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for row in ("| GET /healthz (floor) | 4 |", "| POST /api/v1/plans/ | 4 |", "| GET /api/v1/debt/{user_id}/ | 4 |"):
        assert row in result.stdout
    assert "| POST /api/v1/installments/{id}/pay/ | 4 |" in result.stdout
