"""The machine a benchmark runs on: its cores and load, and how much CPU processes other
than the benchmark's own took while it measured.

A ratio of two timings means something only if the machine was the benchmark's: a
measurement during which other processes used more than a core (``MAX_OTHER_CORES``) is
reported with its seconds, but its ratios are refused (run it again on a quiet machine).
The benchmark's own processes are this one and its descendants (the Celery workers it
started) and the PostgreSQL server's processes except the backends of other databases and
their parallel workers. Linux only (``/proc``); elsewhere nothing can be told and no ratio is refused.
"""

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_OTHER_CORES = 1.0
PROC = Path("/proc")
_PARALLEL = re.compile(r"parallel worker for PID (\d+)")


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
    """This process, its descendants, and the PostgreSQL processes that are not backends of
    another database nor their parallel workers (``_postgres_ours``)."""
    ours, children = {os.getpid()}, {}
    for pid, (parent, _, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    stack = [os.getpid()]
    while stack:
        for child in children.get(stack.pop(), []):
            ours.add(child)
            stack.append(child)
    titles = {pid: cmdline for pid, (_, _, cmdline) in processes.items()}
    ours.update(pid for pid, cmdline in titles.items() if _postgres_ours(cmdline, database, titles))
    return ours


def _postgres_ours(cmdline: str, database: str, titles: dict[int, str]) -> bool:
    """Whether a process is one of PostgreSQL's that are the benchmark's: any of the server's
    own, a backend of ``database`` (a backend's title: ``postgres: [cluster: ]user database
    host …``), or a parallel worker of such a backend (its leader's title in ``titles``)."""
    if not cmdline.startswith("postgres:"):
        return False
    leader = _PARALLEL.search(cmdline)
    if leader:
        return _postgres_ours(titles.get(int(leader.group(1)), ""), database, {})
    words = cmdline.split()[1:]
    if words and words[0].endswith(":"):  # Debian's cluster name, "15/main:"
        words = words[1:]
    backend = len(words) >= 3 and ("(" in words[2] or words[2] == "[local]")
    return not backend or words[1] == database


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


def refusal(watches: list[CpuWatch]) -> str | None:
    """Why a figure that depends on ``watches`` is refused (``ratio_or_refusal``'s words), or
    None when no measurement had other processes using more than a core: for a ratio shown
    in another form than ``1.23x`` (a percentage)."""
    refused = ratio_or_refusal(0.0, watches)
    return refused if refused.startswith("refused") else None


def _descendants(processes: dict[int, tuple[int, int, str]], root: int) -> set[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    found, stack = {root}, [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _reaped_ticks(pids: set[int]) -> dict[int, int]:
    """The CPU ticks of the ended children each of ``pids`` has waited for (cutime + cstime)."""
    found = {}
    for pid in pids:
        try:
            stat = (PROC / str(pid) / "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        found[pid] = int(rest[13]) + int(rest[14])
    return found


@dataclass
class TreeWatch(CpuWatch):
    """A ``CpuWatch`` for a benchmark whose own processes end during a measurement: a wrk
    run, a gunicorn worker recycled after its ``max_requests``, a pool process replaced, a
    database connection closed. ``CpuWatch`` would count what they used as other processes'
    (they are gone when it looks); this one counts

    - the processes of this one's tree that ended, from the CPU time their parents
      collected when they waited for them (less what they had used before the start);
    - the PostgreSQL processes it counts as the benchmark's (the backends of its database)
      that ended: up to their last sample, taken every ``sample_seconds`` by a thread (the
      server's children only, from ``/proc/<server>/task/<server>/children``: a fraction of
      a millisecond each), and what they used after it, from the server's count of its
      waited-for children. Between two samples that count grows by the whole of what the
      children that ended meanwhile used, so what it grew by beyond their last samples is
      theirs: the benchmark's when every child seen ending in that interval was, and at
      most one core for each of them over the interval (a child that started and ended
      unseen in it may be another database's: the figure errs towards refusing).

    A Celery worker of Django closes its database connection before and after every task
    (celery's Django fixup), so each task of a benchmark's workers has a backend of its own
    that ends with it. Sampled every half second and counted up to its last sample only, the
    work of each chunk after it (the commit included) went to other processes: 25 chunks of
    a sweep with two workers, done in about 5 s, put about a core there.

    The Redis server is shared by every database it serves, so it stays another process."""

    sample_seconds: float = 0.02
    reaped: dict[int, int] = field(default_factory=dict)
    tree: set[int] = field(default_factory=set)
    seen: dict[int, int] = field(default_factory=dict)
    # What the benchmark's PostgreSQL processes that ended used after their last sample (ticks).
    unseen: int = 0
    # Samples after which children of another database had ended too (nothing counted then).
    mixed: int = 0
    # The PostgreSQL servers (postmasters) with their counts of waited-for children at the
    # last sample; their children then, {pid: (ticks, the benchmark's)}; their titles.
    _servers: dict[int, int] = field(default_factory=dict)
    _children: dict[int, tuple[int, bool]] = field(default_factory=dict)
    _titles: dict[int, str] = field(default_factory=dict)
    _sampled: float = 0.0
    _done: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    def start(self) -> "TreeWatch":
        super().start()
        if PROC.joinpath("stat").exists():
            processes = _processes()
            self.tree = _descendants(processes, os.getpid())
            self.reaped = _reaped_ticks(self.tree)
            postgres = [pid for pid, (_, _, cmdline) in processes.items() if cmdline.startswith("postgres:")]
            self._servers = _reaped_ticks({processes[pid][0] for pid in postgres})
            self._children, self._sampled = self._server_children(), time.perf_counter()
            self._done.clear()
            self._sampler = threading.Thread(target=self._sample, name="tree-watch", daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(self.sample_seconds):
            self._remember()

    def _server_children(self) -> dict[int, tuple[int, bool]]:
        """The PostgreSQL servers' children now: ``{pid: (CPU ticks used, the benchmark's)}``."""
        found: dict[int, tuple[int, str]] = {}
        for server in self._servers:
            try:
                pids = (PROC / str(server) / "task" / str(server) / "children").read_text().split()
            except OSError:  # the server is gone, or the kernel does not list children
                continue
            for pid in map(int, pids):
                try:
                    stat = (PROC / str(pid) / "stat").read_text()
                    title = (
                        self._titles.get(pid)
                        or (PROC / str(pid) / "cmdline")
                        .read_bytes()
                        .replace(b"\0", b" ")
                        .decode(errors="replace")
                        .strip()
                    )
                except OSError:  # it ended while we looked
                    continue
                if title.startswith("postgres:"):  # a child just forked still has the server's
                    self._titles[pid] = title
                rest = stat[stat.rindex(")") + 2 :].split()
                found[pid] = (int(rest[11]) + int(rest[12]), title)
        return {pid: (used, _postgres_ours(title, self.database, self._titles)) for pid, (used, title) in found.items()}

    def _remember(self) -> None:
        # The servers' counts first: a child that ends between the two reads is counted once,
        # in the next interval, where it is among the children that ended.
        servers, children, now = _reaped_ticks(set(self._servers)), self._server_children(), time.perf_counter()
        ended = [self._children[pid] for pid in self._children.keys() - children.keys()]
        if ended and all(ours for _, ours in ended):
            grown = sum(ticks - self._servers.get(pid, ticks) for pid, ticks in servers.items())
            after = grown - sum(used for used, _ in ended)
            most = len(ended) * (now - self._sampled) * os.sysconf("SC_CLK_TCK")
            self.unseen += int(min(max(after, 0), most))
        elif ended:
            self.mixed += 1
        self._children, self._sampled = children, now
        self._servers = {pid: servers.get(pid, ticks) for pid, ticks in self._servers.items()}
        self._titles = {pid: title for pid, title in self._titles.items() if pid in children}  # pids are reused
        self.seen.update((pid, used) for pid, (used, ours) in children.items() if ours)

    def stop(self) -> float | None:
        seconds = time.perf_counter() - self.started
        if self._sampler is not None:
            self._done.set()
            self._sampler.join()
        if not PROC.joinpath("stat").exists() or seconds <= 0:
            return None
        busy = _busy_ticks() - self.busy
        self._remember()
        processes = _processes()
        ours = _ours(processes, self.database)
        used = sum(processes[pid][1] - self.ticks.get(pid, 0) for pid in ours)
        # What the tree's ended processes used is in their parents' counts of waited-for
        # children, from the processes' start: what they had used before ours started is not.
        # (Only the tree's: the PostgreSQL server's waited-for children are every database's.)
        tree = _descendants(processes, os.getpid())
        ended = self.tree - processes.keys()
        used += sum(ticks - self.reaped.get(pid, 0) for pid, ticks in _reaped_ticks(tree).items())
        used -= sum(self.ticks.get(pid, 0) + self.reaped.get(pid, 0) for pid in ended)
        used += sum(last - self.ticks.get(pid, 0) for pid, last in self.seen.items() if pid not in processes)
        used += self.unseen
        self.other_cores = max(busy - used, 0) / os.sysconf("SC_CLK_TCK") / seconds
        return self.other_cores
