import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.signatures import signature_problem


class Receiver(ThreadingHTTPServer):
    """A merchant's endpoint on 127.0.0.1: answers the scripted statuses in turn (then 200)
    and keeps every request it got."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses: list[int] = []
        self.received: list[dict] = []
        self.hold = threading.Event()  # set() by default: answer at once
        self.hold.set()
        self.arrived = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/bnpl/events"

    def verified(self, secret: str) -> list[bool]:
        """Whether each request carried a valid signature of its body with ``secret``."""
        return [
            signature_problem(secret, r["headers"].get("BNPL-Signature", ""), r["body"], time.time()) is None
            for r in self.received
        ]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        server: Receiver = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        # The headers as received (names are case-insensitive, as in any HTTP framework).
        server.received.append({"headers": self.headers, "body": body, "path": self.path})
        server.arrived.set()
        server.hold.wait(timeout=60)
        status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.hold.set()
    server.shutdown()
    server.server_close()
