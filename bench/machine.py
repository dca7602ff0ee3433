"""The machine a benchmark runs on: its cores and load, and how much CPU processes other
than the benchmark's own took while it measured.

A ratio of two timings means something only if the machine was the benchmark's: a
measurement during which other processes used more than a core (``MAX_OTHER_CORES``) is
reported with its seconds, but its ratios are refused (run it again on a quiet machine).
The benchmark's own processes are this one and its descendants (the Celery workers it
started) and the PostgreSQL server's processes except the backends of other databases.
Linux only (``/proc``); elsewhere nothing can be told and no ratio is refused.
"""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_OTHER_CORES = 1.0
PROC = Path("/proc")


def machine_line() -> str:
    """``machine: N cores, load average a b c (1, 5, 15 min)``."""
    one, five, fifteen = os.getloadavg()
    return f"machine: {os.cpu_count()} cores, load average {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


def _busy_ticks() -> int:
    """CPU ticks spent busy (not idle nor waiting for I/O) by the whole machine since boot."""
    fields = (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return user + nice + system + irq + softirq + steal


def _processes() -> dict[int, tuple[int, int, str]]:
    """Every process's ``(parent pid, CPU ticks used, command line)``."""
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # it ended while we looked
            continue
        rest = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, …
        found[int(entry.name)] = (int(rest[1]), int(rest[11]) + int(rest[12]), cmdline)
    return found


def _ours(processes: dict[int, tuple[int, int, str]], database: str) -> set[int]:
    """This process, its descendants, and the PostgreSQL processes that are not backends
    of another database (a backend's title: ``postgres: [cluster: ]user database host …``)."""
    ours, children = {os.getpid()}, {}
    for pid, (parent, _, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    stack = [os.getpid()]
    while stack:
        for child in children.get(stack.pop(), []):
            ours.add(child)
            stack.append(child)
    for pid, (_, _, cmdline) in processes.items():
        if not cmdline.startswith("postgres:"):
            continue
        words = cmdline.split()[1:]
        if words and words[0].endswith(":"):  # Debian's cluster name, "15/main:"
            words = words[1:]
        backend = len(words) >= 3 and ("(" in words[2] or words[2] == "[local]")
        if not backend or words[1] == database:
            ours.add(pid)
    return ours


@dataclass
class CpuWatch:
    """Started before a measurement and stopped after it: the cores other processes used."""

    database: str
    started: float = 0.0
    busy: int = 0
    ticks: dict[int, int] = field(default_factory=dict)
    other_cores: float | None = None

    def start(self) -> "CpuWatch":
        if PROC.joinpath("stat").exists():
            self.busy = _busy_ticks()
            self.ticks = {pid: used for pid, (_, used, _) in _processes().items()}
        self.started = time.perf_counter()
        return self

    def stop(self) -> float | None:
        """The mean number of cores other processes used since ``start`` (None off Linux)."""
        seconds = time.perf_counter() - self.started
        if not PROC.joinpath("stat").exists() or seconds <= 0:
            return None
        busy = _busy_ticks() - self.busy
        processes = _processes()
        ours = sum(processes[pid][1] - self.ticks.get(pid, 0) for pid in _ours(processes, self.database))
        self.other_cores = max(busy - ours, 0) / os.sysconf("SC_CLK_TCK") / seconds
        return self.other_cores

    @property
    def quiet(self) -> bool:
        return self.other_cores is None or self.other_cores <= MAX_OTHER_CORES

    def describe(self) -> str:
        if self.other_cores is None:
            return "other processes: not known"
        return f"other processes used {self.other_cores:.2f} cores"


def ratio_or_refusal(value: float, watches: list[CpuWatch], suffix: str = "x") -> str:
    """``value`` formatted, or why it is refused: a measurement it depends on was not alone."""
    busy = [watch for watch in watches if not watch.quiet]
    if busy:
        worst = max(watch.other_cores for watch in busy)
        return f"refused (other processes used {worst:.2f} cores > {MAX_OTHER_CORES:.0f}; rerun)"
    return f"{value:.2f}{suffix}"
