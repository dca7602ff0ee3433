"""Gunicorn settings: ``gunicorn config.wsgi:application -c config/gunicorn.py``.

Everything from the environment, so the same file serves the container, ``make serve`` and
the benchmark. Defaults suit a small machine: 2 x cores sync workers.
"""

import multiprocessing
import os
import shutil

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104 - inside a container  # nosec B104
# 2 x cores, not the usual 2 x cores + 1: the requests wait on PostgreSQL, which on a small
# machine shares the cores. On 2 cores with PostgreSQL beside them, plan creation served
# about 130 req/s with 4 workers, 120 with 3 and 90 with 5 (bench/http_bench.py).
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
# Sync workers: gthread (2 workers x 4 threads sharing a pool of connections) showed no
# gain on 2 cores shared with PostgreSQL, where CPU runs out before concurrency
# (docs/SCALING.md, "The stack's own levers"). GUNICORN_THREADS > 1 still selects it.
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# The longest request line gunicorn takes (its default is 4094): as long as what nginx's
# 8 KiB header buffers let through, so a long query string reaches the API, which answers
# it, rather than an HTML 414 from gunicorn.
limit_request_line = 8190
# Recycle workers now and then (a slow leak never grows without bound), not all at once:
# workers share the load evenly, so with a small jitter they all reached their count within
# a second or two and the service stood still while they booted (wrk saw timeouts).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = max_requests // 2
# The application is loaded once, in the master, and forked: a recycled worker is serving
# again at once instead of importing Django first (a second and more on a busy machine).
# Nothing opens a connection at import (database, broker and cache connect on first use).
preload_app = True
# The application writes one JSON access line per request (with the request id); no second one.
accesslog = None
errorlog = "-"
# No control socket: nothing here uses it, and a read-only root filesystem has no room for it.
control_socket_disable = True
# Trust X-Forwarded-* only from the proxy in front (nginx, the ingress).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server) -> None:
    """Start every run with an empty Prometheus multi-process directory (stale files would count)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker) -> None:
    """A worker's gauges die with it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
