"""Running a script of ``bench/`` as a smoke test: from the project root, with the test
run's environment, against a database and a Redis database of its own (the scripts drop
the one and flush the other), never raising on failure (the test asserts on the result)."""

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

# What bench/machine.py prints: the machine line, and a ratio (or a percentage) or its refusal.
MACHINE_LINE = re.compile(r"^machine: \d+ cores, load average [\d.]+ [\d.]+ [\d.]+ \(1, 5, 15 min\)$", re.MULTILINE)
RATIO = r"(?:\d+\.\d\dx|\d+(?:\.\d)?%|refused \(other processes used \d+\.\d\d cores > 1; rerun\))"

# One Redis database per benchmark, each flushed by its script: none may be another's, nor
# the tests' own (REDIS_URL's).
_REDIS_DBS = {"settle": 3, "dashboards": 9, "sweep": 12, "autopay": 13, "http": 14, "soak": 15}


def smoke_database_url(name: str) -> str:
    """A database ``name`` on the test run's PostgreSQL server."""
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{name}"


def smoke_redis_url(bench: str) -> str:
    """The Redis database of benchmark ``bench`` on the test run's Redis server."""
    return urlparse(settings.REDIS_URL)._replace(path=f"/{_REDIS_DBS[bench]}").geturl()


def bench_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python <args>`` from the project root, output captured, at most 5 minutes."""
    return subprocess.run(  # noqa: S603 - our own scripts with fixed arguments  # nosec B603
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def bench_passed(result: subprocess.CompletedProcess, *lines: str) -> None:
    """Assert that a benchmark's run exited 0 and printed each of ``lines`` (the end of its
    output shown otherwise)."""
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    missing = [line for line in lines if line not in result.stdout]
    assert not missing, f"missing {missing}:\n{output}"


def machine_and_ratios_reported(result: subprocess.CompletedProcess, *lines: str) -> None:
    """Assert that a benchmark printed the machine line before and after its measurements,
    and each of ``lines``: regular expressions of whole lines in which ``{ratio}`` stands for
    a ratio, which must be a figure or a refusal (bench/machine.py), never anything else."""
    found = MACHINE_LINE.findall(result.stdout)
    assert len(found) >= 2, f"machine line printed {len(found)} times:\n{result.stdout[-3000:]}"
    for line in lines:
        pattern = re.compile("^" + line.replace("{ratio}", RATIO) + "$", re.MULTILINE)
        assert pattern.search(result.stdout), f"no line matching {pattern.pattern}:\n{result.stdout[-3000:]}"
