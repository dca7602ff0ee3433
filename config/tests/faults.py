"""Fault injection: private servers a test may stop, a PostgreSQL proxy it may cut, the
service and its workers as real processes, and the count of faults injected.

Nothing here touches the machine's shared PostgreSQL or Redis: a test that stops a server
stops its own (a private ``redis-server`` on a free port), and PostgreSQL is cut at a TCP
proxy in front of it, never at the server.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Every fault a test injects, by kind: the run's figures (printed at the end of the run).
INJECTED: Counter = Counter()


def inject(kind: str) -> None:
    """Count one fault of ``kind`` (call it at the moment the fault is made)."""
    INJECTED[kind] += 1


def free_port(first: int, last: int) -> int:
    """A port in ``first..last`` where nothing listens on 127.0.0.1."""
    for port in range(first, last + 1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}..{last}")


def wait_for(predicate, seconds: float, what: str) -> None:
    """Poll ``predicate`` every 0.1 s until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with suppress(Exception):
            if predicate():
                return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def _log_file(name: str):
    return tempfile.NamedTemporaryFile(prefix=f"bnpl-{name}-", suffix=".log", delete=False)


def _tail(path: str, lines: int = 40) -> str:
    with suppress(OSError), open(path, errors="replace") as handle:
        return "".join(handle.readlines()[-lines:])
    return ""


# --- Redis -------------------------------------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free port (6390-6399), no persistence."""

    def __init__(self) -> None:
        self.port = free_port(6390, 6399)
        self.process: subprocess.Popen | None = None
        self.frozen = False

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> "PrivateRedis":
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        # Debian's redis-server from PATH, with fixed arguments.
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603  # nosec B603
        # Ours answering, not another Redis that took the port meanwhile.
        wait_for(lambda: self.process.poll() is None and self.answers(), 20, f"redis-server on port {self.port}")
        return self

    def answers(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, its data with it."""
        inject("redis killed (SIGKILL)")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and new ones are accepted by the kernel, but
        nothing answers (a hung server, a network that drops replies)."""
        inject("redis frozen (SIGSTOP)")
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if self.frozen:
            self.thaw()
        self.process.kill()
        self.process.wait(timeout=10)


# --- PostgreSQL, behind a proxy ----------------------------------------------------------


class PgProxy:
    """A TCP proxy on a free port (5440-5449) in front of the shared PostgreSQL, which a
    test cuts instead of the server:

    - ``cut()``: every connection through it is dropped at once and new ones are reset
      (the server crashed, or the network between);
    - ``hang()``: new connections are accepted and never answered (a server that does not
      respond); those already open are dropped;
    - ``cut_on(*patterns)``: the moment a client, having sent statements containing each
      of ``patterns`` in turn, sends the last one, cut as above (the statement never
      reaches the server); with ``after=True`` it reaches the server and only its answer is
      lost (a COMMIT that happened, though the client never heard it); with
      ``only_this=True`` only that connection is dropped and the database stays up (a
      connection lost on the way, not the server);
    - ``restore()``: the database is back.
    """

    def __init__(self) -> None:
        from django.db import connection

        self.upstream = (connection.settings_dict["HOST"] or "127.0.0.1", int(connection.settings_dict["PORT"] or 5432))
        self.port = free_port(5440, 5449)
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.state = "up"
        self.links: list[_Link] = []
        self.held: list[socket.socket] = []
        self.lock = threading.Lock()
        self.trigger: _Trigger | None = None
        self.fired = threading.Event()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                state = self.state
            if state == "down":
                _drop(client)
            elif state == "hang":
                with self.lock:
                    self.held.append(client)
            else:
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                    server.settimeout(None)
                except OSError:
                    _drop(client)
                    continue
                link = _Link(client, server)
                with self.lock:
                    self.links.append(link)
                threading.Thread(target=self._to_server, args=(link,), daemon=True).start()
                threading.Thread(target=self._to_client, args=(link,), daemon=True).start()

    def _to_server(self, link: "_Link") -> None:
        while data := _recv(link.client):
            trigger = self.trigger
            if trigger is not None and trigger.fires(link, data):
                self.trigger = None
                if not trigger.after:
                    self._fire(link, trigger)  # the statement never reaches the server
                    return
                link.lose_answers = trigger  # it runs; its answer is lost, then the cut
            try:
                link.server.sendall(data)
            except OSError:
                break
        link.drop()

    def _to_client(self, link: "_Link") -> None:
        while data := _recv(link.server):
            if link.lose_answers:
                self._fire(link, link.lose_answers)
                return
            try:
                link.client.sendall(data)
            except OSError:
                break
        link.drop()

    def _fire(self, link: "_Link", trigger: "_Trigger") -> None:
        # Set before the cut: the service answers as soon as its connection drops, and the
        # test may look at ``fired`` before this thread would get past the cut.
        self.fired.set()
        if trigger.only_this:
            link.drop()
        else:
            self.cut(counted=False)

    def cut(self, *, counted: bool = True) -> None:
        if counted:
            inject("postgres cut (connections dropped, new ones reset)")
        with self.lock:
            self.state = "down"
            links, self.links = self.links, []
        for link in links:
            link.drop()

    def cut_on(self, *patterns: str, after: bool = False, only_this: bool = False) -> None:
        inject(
            "postgres connection lost mid-transaction"
            + (" (after the statement ran)" if after else "")
            + (", the server stays up" if only_this else ", the server down")
        )
        self.fired.clear()
        self.trigger = _Trigger([p.encode() for p in patterns], after=after, only_this=only_this)

    def hang(self) -> None:
        inject("postgres hangs (connections accepted, never answered)")
        self.cut(counted=False)
        with self.lock:
            self.state = "hang"

    def restore(self) -> None:
        with self.lock:
            self.state = "up"
            held, self.held = self.held, []
        for client in held:
            _drop(client)

    def close(self) -> None:
        self.closed = True
        self.restore()
        self.cut(counted=False)
        _drop(self.listener)


class _Trigger:
    """Statements to watch for, in order, on one connection; fires at the last one."""

    def __init__(self, patterns: list[bytes], *, after: bool, only_this: bool) -> None:
        self.patterns, self.after, self.only_this = patterns, after, only_this
        self.seen: dict[int, int] = {}  # connection -> how many patterns it has sent

    def fires(self, link: "_Link", data: bytes) -> bool:
        seen = self.seen.get(id(link), 0)
        if self.patterns[seen] in data:
            seen += 1
        self.seen[id(link)] = seen
        return seen == len(self.patterns)


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client, self.server = client, server
        self.lose_answers: _Trigger | None = None

    def drop(self) -> None:
        _drop(self.client)
        _drop(self.server)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _drop(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


class RowLock:
    """A row lock the test holds from a connection of its own (straight to the server): a
    worker that needs the row waits on it, in the middle of its transaction, until the test
    lets go."""

    def __init__(self, table: str, pk: int, mode: str = "FOR NO KEY UPDATE") -> None:
        self.table, self.pk, self.mode = table, pk, mode

    def __enter__(self) -> "RowLock":
        import psycopg
        from django.db import connection

        settings = connection.settings_dict
        self.connection = psycopg.connect(
            host=settings["HOST"],
            port=settings["PORT"],
            user=settings["USER"],
            password=settings["PASSWORD"] or None,
            dbname=settings["NAME"],
        )
        self.cursor = self.connection.cursor()
        self.cursor.execute(f'SELECT id FROM "{self.table}" WHERE id = %s {self.mode}', [self.pk])  # noqa: S608  # nosec B608
        assert self.cursor.fetchone(), f"no row {self.table} {self.pk}"
        self.cursor.execute("SELECT pg_backend_pid()")
        self.pid = self.cursor.fetchone()[0]
        return self

    def blocked(self) -> list[int]:
        """The backends waiting on this lock."""
        self._fresh_statistics()
        self.cursor.execute("SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [self.pid])
        return [row[0] for row in self.cursor.fetchall()]

    def wait_blocked(self, seconds: float = 60) -> int:
        """Wait for a backend to block on the lock; its pid."""
        wait_for(self.blocked, seconds, f"a transaction to wait on the lock of {self.table} {self.pk}")
        return self.blocked()[0]

    def has_written(self, pid: int) -> bool:
        """Whether the backend's open transaction has written anything (it has a transaction id)."""
        self._fresh_statistics()
        self.cursor.execute("SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = %s", [pid])
        return self.cursor.fetchone()[0]

    def backend_gone(self, pid: int) -> bool:
        self._fresh_statistics()
        self.cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return self.cursor.fetchone()[0] == 0

    def release(self) -> None:
        self.connection.rollback()

    def _fresh_statistics(self) -> None:
        # pg_stat_activity is read once per transaction and kept; the lock's transaction
        # must see it change.
        self.cursor.execute("SELECT pg_stat_clear_snapshot()")

    def __exit__(self, *exc) -> None:
        self.connection.close()


def publish(broker_url: str, task, *args) -> str:
    """Queue ``task(*args)`` on the broker at ``broker_url`` (a private Redis); the task's id."""
    from config.celery import app

    with app.connection_for_write(broker_url) as connection:
        return task.apply_async(args, connection=connection, ignore_result=True).id


# --- The service and its workers as processes --------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes
    seconds: float
    data: dict | list | None = field(default=None)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self):
        return self.data


class Service:
    """The web service under gunicorn (config/gunicorn.py, one sync worker) on a free port,
    with the environment given (DATABASE_URL, REDIS_URL, ...)."""

    def __init__(self, env: dict, *, workers: int = 1) -> None:
        self.port = free_port(8460, 8499)
        self.log = _log_file("web").name
        self.env = {
            **os.environ,
            **env,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_TIMEOUT": "60",
            "LOG_LEVEL": "WARNING",
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.process: subprocess.Popen | None = None

    def start(self) -> "Service":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(  # our own gunicorn, fixed arguments  # nosec B603
                [sys.executable, "-m", "gunicorn", "config.wsgi:application", "-c", "config/gunicorn.py"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            wait_for(
                lambda: self.process.poll() is None and self.request("GET", "/healthz", timeout=2).status == 200,
                60,
                "gunicorn to answer /healthz",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log ends:\n{self.logs()}") from None
        return self

    def request(
        self,
        method: str,
        path: str,
        body: dict | bytes | None = None,
        *,
        token: str | None = None,
        headers: dict | None = None,
        timeout: float = 30,
    ) -> Answer:
        """One HTTP request on a new connection; the answer with the seconds it took."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        payload = None
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=payload, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, raw, 0)
        finally:
            connection.close()
        answer.seconds = time.monotonic() - started
        if answer.content_type.startswith(("application/json", "application/problem+json")):
            answer.data = json.loads(raw)
        return answer

    def logs(self) -> str:
        return _tail(self.log)

    def stop(self) -> None:
        _stop_group(self.process)


class Worker:
    """``celery -A config worker`` as a process of its own (its own process group)."""

    def __init__(self, env: dict, *, pool: str = "solo", concurrency: int = 1) -> None:
        self.log = _log_file("worker").name
        self.env = {**os.environ, **env, "LOG_LEVEL": "INFO"}
        self.args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname=faults-{uuid.uuid4().hex[:8]}@%h",
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> "Worker":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own Celery worker, fixed arguments  # nosec B603
                self.args, cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        try:
            wait_for(lambda: "ready" in _tail(self.log, 400), 60, "the Celery worker to be ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log ends:\n{self.logs()}") from None
        return self

    def children(self) -> list[int]:
        """The pool's processes (prefork)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def kill(self) -> None:
        """SIGKILL to the worker and its pool at once: the node is lost mid-task."""
        inject("celery worker killed (SIGKILL, whole node)")
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def kill_child(self) -> int:
        """SIGKILL to one pool process (the kernel's OOM killer, say); the worker lives on."""
        inject("celery pool process killed (SIGKILL)")
        child = self.children()[0]
        os.kill(child, signal.SIGKILL)
        return child

    def logs(self) -> str:
        return _tail(self.log)

    def log_lines(self, containing: str) -> list[str]:
        """The worker's log lines containing ``containing``."""
        with open(self.log, errors="replace") as handle:
            return [line for line in handle if containing in line]

    def stop(self) -> None:
        # After the test: nothing left to finish (a warm shutdown would take seconds).
        _stop_group(self.process, signal.SIGKILL)


def _stop_group(process: subprocess.Popen | None, first: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


# --- Fixtures and the run's figures (a pytest plugin: see pytest_plugins in conftest.py) ---


def service_env(*, proxy: "PgProxy | None" = None, redis_url: str = "", **extra: str) -> dict:
    """The environment of a service process on the test database (through ``proxy`` if given)."""
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    host, port = ("127.0.0.1", proxy.port) if proxy else (db["HOST"] or "127.0.0.1", db["PORT"] or 5432)
    env = {
        "DATABASE_URL": f"postgres://{quote(db['USER'], safe='')}{password}@{host}:{port}/{db['NAME']}",
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": f"bnpl-faults-{uuid.uuid4().hex[:8]}",
    }
    if not redis_url:
        env["CELERY_TASK_ALWAYS_EAGER"] = "true"
    if proxy:
        # The proxy finds a statement by its text, which a prepared statement sends once per
        # connection: through it every statement is sent whole (bound on the server still).
        env["DATABASE_PREPARE_THRESHOLD"] = "0"
    return env | extra


class Launcher:
    """Starts services and workers for one test and stops every one of them afterwards."""

    def __init__(self) -> None:
        self.started: list[Service | Worker] = []

    def service(self, env: dict, **options) -> Service:
        self.started.append(Service(env, **options))
        return self.started[-1].start()

    def worker(self, env: dict, **options) -> Worker:
        self.started.append(Worker(env, **options))
        return self.started[-1].start()

    def stop(self) -> None:
        for process in reversed(self.started):
            process.stop()
            with suppress(OSError):
                os.unlink(process.log)


# Fault tests that were skipped: in CI that fails the run (every fault must be injected there).
SKIPPED: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if report.skipped and "faults" in report.keywords:
        SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus) -> None:
    if os.environ.get("CI") and SKIPPED and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter) -> None:
    if INJECTED:
        terminalreporter.write_sep("-", f"fault injection: {sum(INJECTED.values())} faults injected")
        for kind, count in sorted(INJECTED.items()):
            terminalreporter.write_line(f"{count:4d}  {kind}")
    if SKIPPED:
        verdict = "a failure in CI" if os.environ.get("CI") else "allowed outside CI"
        terminalreporter.write_sep("-", f"{len(SKIPPED)} fault tests skipped ({verdict})")
        for nodeid in SKIPPED:
            terminalreporter.write_line(nodeid)


def require_redis_server() -> None:
    """Skip without Debian's redis-server (fail in CI, which must run every fault test)."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: the Redis fault tests cannot run")
        pytest.skip("needs redis-server (Debian's redis-server package) for a private Redis")


@pytest.fixture
def private_redis():
    """A Redis of the test's own, which it may kill, freeze or shut down."""
    require_redis_server()
    server = PrivateRedis().start()
    yield server
    server.stop()


@pytest.fixture
def pg_proxy():
    """A proxy in front of the shared PostgreSQL, which the test may cut."""
    proxy = PgProxy()
    yield proxy
    proxy.close()


@pytest.fixture
def launch():
    """``launch.service(env)`` / ``launch.worker(env)``: processes stopped after the test."""
    launcher = Launcher()
    yield launcher
    launcher.stop()


@pytest.fixture
def broker_at(monkeypatch):
    """``broker_at(url)``: for the test, the app publishes its tasks (not eager) to the broker
    at ``url``: one whose transport cannot be loaded, or where nothing listens."""
    from config.celery import app

    def point(url: str) -> None:
        monkeypatch.setitem(app.conf, "broker_write_url", url)
        monkeypatch.setitem(app.conf, "task_always_eager", False)

    return point
