"""The dependency audit's choice of vulnerability service (.ci/audit_dependencies.py), against
local stand-ins for PyPI's JSON API and OSV."""

import importlib.util
import json
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("audit_dependencies", ROOT / ".ci" / "audit_dependencies.py")
audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audit)


@pytest.fixture
def service():
    """``service(status, body)`` → the base URL of a local server answering every request so."""
    servers = []

    def start(status: int, body: dict) -> str:
        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_pypi_is_used_when_it_lists_the_canarys_advisories(service):
    pypi = service(200, {"info": {}, "vulnerabilities": [{"id": "PYSEC-2023-100"}]})

    chosen, reasons = audit.choose_service({"pypi": partial(audit.pypi_advisories, pypi)})

    assert (chosen, reasons) == ("pypi", [])


def test_osv_is_used_when_pypi_does_not_answer(service):
    pypi = service(404, {})
    osv = service(200, {"vulns": [{"id": "GHSA-rrm6-wvj7-cwh2"}]})

    chosen, reasons = audit.choose_service(
        {"pypi": partial(audit.pypi_advisories, pypi), "osv": partial(audit.osv_advisories, osv)}
    )

    assert chosen == "osv"
    assert reasons == ["pypi: HTTP 404 for the advisories of sqlparse==0.4.3"]


def test_a_service_that_knows_no_advisory_is_not_trusted(service):
    silent = service(200, {"info": {}, "vulnerabilities": []})

    chosen, reasons = audit.choose_service({"pypi": partial(audit.pypi_advisories, silent)})

    assert chosen is None
    assert reasons == ["pypi: answers, but lists no advisory for sqlparse==0.4.3, which has some"]


def test_no_service_skips_the_audit_saying_why(monkeypatch, capsys):
    def unreachable():
        raise OSError("Name or service not known")

    monkeypatch.setattr(audit, "pypi_advisories", unreachable)
    monkeypatch.setattr(audit, "osv_advisories", unreachable)

    assert audit.main() == 0
    out = capsys.readouterr().out
    assert "pip-audit SKIPPED: no vulnerability service can be used from here." in out
    assert "pypi: OSError: Name or service not known" in out
    assert "osv: OSError: Name or service not known" in out
