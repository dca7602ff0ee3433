"""bench/machine.py's TreeWatch: what the benchmark's own processes used counts as its own
even when they ended during the measurement (CpuWatch counts it as other processes')."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.machine import PROC, CpuWatch, TreeWatch, _postgres_ours, refusal

pytestmark = pytest.mark.skipif(not PROC.joinpath("stat").exists(), reason="reads /proc (Linux)")

# A process that uses ``seconds`` of CPU, then (with ``hold``) waits for its stdin to close.
BURN = """
import sys, time
while time.process_time() < {seconds}:
    pass
if {hold}:
    print("burnt", flush=True)
    sys.stdin.read()
"""


def burn(seconds: float, *, hold: bool = False, **popen) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - our own interpreter with a fixed script  # nosec B603
        [sys.executable, "-c", BURN.format(seconds=seconds, hold=hold)], **popen
    )


def other_seconds(watch: CpuWatch) -> float:
    """The CPU seconds ``watch`` gave to other processes (its mean cores times its length)."""
    return watch.other_cores * (watch.stopped - watch.started)


def stop(*watches: CpuWatch) -> None:
    for watch in watches:
        watch.stop()
        watch.stopped = time.perf_counter()


def test_a_child_that_ends_during_the_measurement_is_ours():
    plain, tree = CpuWatch("none").start(), TreeWatch("none").start()
    burn(1.0).wait()
    stop(plain, tree)

    # The second of CPU the child used is other processes' for CpuWatch, ours for TreeWatch.
    assert 0.8 <= other_seconds(plain) - other_seconds(tree) <= 1.3


def test_what_an_ended_child_used_before_the_start_is_not_counted(tmp_path: Path):
    child = burn(1.0, hold=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "burnt\n"
    plain, tree = CpuWatch("none").start(), TreeWatch("none").start()
    # Another process's second of CPU: started through a shell that exits at once, so it is
    # no child of ours.
    done = tmp_path / "done"
    script = BURN.format(seconds=1.0, hold=False) + f"open({str(done)!r}, 'w').close()\n"
    subprocess.run(["/bin/sh", "-c", f'"{sys.executable}" -c "$0" &', script], check=True)  # noqa: S603  # nosec B603
    child.stdin.close()
    child.wait()
    deadline = time.monotonic() + 30
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop(plain, tree)

    assert done.exists()
    # Both see the other process's second; TreeWatch does not take the child's second,
    # used before the start, for the benchmark's own.
    assert other_seconds(tree) >= 0.8
    assert abs(other_seconds(plain) - other_seconds(tree)) <= 0.2


@pytest.mark.postgres
def test_a_backend_of_the_database_that_ends_during_the_measurement_is_ours():
    import psycopg
    from django.db import connection

    database = connection.settings_dict
    plain, tree = CpuWatch(database["NAME"]).start(), TreeWatch(database["NAME"], sample_seconds=0.1).start()
    backend = psycopg.connect(
        host=database["HOST"], port=database["PORT"] or 5432, user=database["USER"], dbname=database["NAME"]
    )
    with backend.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM generate_series(1, 5000000)")
    time.sleep(0.5)  # idle: the sampler has seen all it used
    stat = (PROC / str(pid) / "stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()
    used = (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")  # all since the start
    backend.close()
    time.sleep(0.2)  # gone
    stop(plain, tree)

    assert not (PROC / str(pid)).exists()
    assert used >= 0.2
    assert other_seconds(plain) - other_seconds(tree) == pytest.approx(used, abs=0.15)


def busy_backend_between_two_samples(database: dict) -> tuple[TreeWatch, CpuWatch, float]:
    """A backend opened, kept busy and closed with no sample of the watch after it started
    working (a Celery task's, whose worker closes the connection after each task): the
    watches and the CPU seconds the backend used after its last sample."""
    import psycopg

    plain, tree = CpuWatch(database["NAME"]).start(), TreeWatch(database["NAME"]).start()
    backend = psycopg.connect(
        host=database["HOST"], port=database["PORT"] or 5432, user=database["USER"], dbname=database["NAME"]
    )
    with backend.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
        tree.sample_seconds = 600  # no sample from the next one on
        time.sleep(0.1)  # the sampler took its last one
        last = tree.seen[pid]
        cursor.execute("SELECT count(*) FROM generate_series(1, 5000000)")
        stat = (PROC / str(pid) / "stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()
    backend.close()
    time.sleep(0.2)  # gone, and waited for by the server
    stop(plain, tree)
    assert not (PROC / str(pid)).exists()
    return tree, plain, (int(rest[11]) + int(rest[12]) - last) / os.sysconf("SC_CLK_TCK")


@pytest.mark.postgres
def test_what_a_backend_of_the_database_used_after_its_last_sample_is_ours():
    from django.db import connection

    # Another database's backend ending in the same interval leaves it all to other processes
    # (the watch cannot tell whose the rest was): try again on a busy machine.
    for _ in range(5):
        tree, plain, after = busy_backend_between_two_samples(connection.settings_dict)
        if not tree.mixed:
            break
    else:
        pytest.skip("other databases' backends ended in every try")

    assert after >= 0.2
    assert tree.unseen / os.sysconf("SC_CLK_TCK") == pytest.approx(after, abs=0.1)
    assert other_seconds(plain) - other_seconds(tree) >= after - 0.1


def test_a_parallel_worker_is_of_its_leaders_database():
    titles = {
        10: "postgres: 15/main: postgres bench 127.0.0.1(40248) SELECT",
        11: "postgres: 15/main: postgres other 127.0.0.1(40250) SELECT",
    }

    assert _postgres_ours("postgres: 15/main: parallel worker for PID 10", "bench", titles)
    assert not _postgres_ours("postgres: 15/main: parallel worker for PID 11", "bench", titles)
    assert not _postgres_ours("postgres: 15/main: parallel worker for PID 12", "bench", titles)  # leader gone
    assert _postgres_ours("postgres: 15/main: checkpointer", "bench", titles)
    assert _postgres_ours(titles[10], "bench", titles)
    assert not _postgres_ours(titles[11], "bench", titles)


def test_refusal_words_are_ratio_or_refusals():
    quiet, busy = CpuWatch("none"), CpuWatch("none")
    quiet.other_cores, busy.other_cores = 0.3, 1.4

    assert refusal([quiet]) is None
    assert refusal([quiet, busy]) == "refused (other processes used 1.40 cores > 1; rerun)"
