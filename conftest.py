"""Fixtures shared by every test, and two guards that run on every test:

- every API response a test client receives is checked for unmasked PII;
- every log line written during the test (through the configured handler's filters and
  formatter) is checked for unmasked PII.

Unmasked PII is what accounts.masking finds (card, phone, passport numbers, IBANs), and any
payout account saved during the test, as stored: a plain account number has no shape of
its own to be found by.
"""

import contextlib
import logging
import os
import re
import time
from datetime import date

import pytest
from django.conf import settings
from django.db import connection
from django.db.models.signals import post_save
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.masking import find_unmasked_pii
from accounts.models import User
from accounts.tests.factories import MerchantFactory, OperatorFactory, UserFactory
from bnpl.tests.factories import plan_originated

# Fault injection: private servers, the PostgreSQL proxy, service processes, the faults count.
pytest_plugins = ["config.tests.faults"]

_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
_CHECKED_TYPES = ("application/json", "application/problem+json", "text/html", "text/plain")


def pytest_configure(config):
    # Password hashing is deliberately slow; tests need its behaviour, not its cost.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Like Django's locmem email backend in tests: SMS land in a list, not on the console.
    settings.BNPL_SMS_BACKEND = "events.sms.LocmemSmsBackend"
    # Rate limits stay on, counted on every request, but far above what any test sends from
    # one address in a minute; core/tests/test_throttling.py lowers them to test them.
    settings.BNPL_THROTTLE_RATES = dict.fromkeys(settings.BNPL_THROTTLE_RATES, "100000/min")
    # CI must run against the real servers; a silent fallback to SQLite would hide the
    # PostgreSQL-only tests.
    if os.environ.get("CI") and not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.exit("CI=true but DATABASE_URL is not PostgreSQL: refusing to run on SQLite.", returncode=3)
    if os.environ.get("CI") and not os.environ.get("REDIS_URL"):
        pytest.exit("CI=true but REDIS_URL is not set: refusing to run without Redis.", returncode=3)


def pytest_terminal_summary(terminalreporter):
    """Say how many cells of the permission matrix ran, and how many answered otherwise."""
    cells = [
        report
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if report.when == "call" and "test_permission_matrix.py::test_cell[" in report.nodeid
    ]
    if cells:
        failed = sum(report.failed for report in cells)
        terminalreporter.write_line(f"permission matrix: {len(cells)} cells, {failed} mismatched")


def pytest_collection_modifyitems(config, items):
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://...)"))
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(pytest.mark.skip(reason="needs Redis (set REDIS_URL=redis://...)"))


# The clear payout accounts saved during the current test (by any path that saves a User).
_payout_accounts_saved: set[str] = set()


def _payout_account_saved(sender, instance, **kwargs) -> None:
    number = instance.__dict__.get("payout_account")  # a deferred column was not saved: not read
    if number:
        _payout_accounts_saved.add(number)


post_save.connect(_payout_account_saved, sender=User, dispatch_uid="conftest-payout-accounts-saved")


@pytest.fixture(autouse=True)
def _payout_accounts_of_this_test():
    _payout_accounts_saved.clear()


def assert_no_pii(text: str, where: str) -> None:
    leaked = find_unmasked_pii(_JWT.sub("<jwt>", text))
    leaked += [number for number in list(_payout_accounts_saved) if number in text]
    assert not leaked, f"unmasked PII in {where}: {leaked}"


class PiiCheckingClient(APIClient):
    """An APIClient that fails the test if any response carries a full phone, passport or card."""

    def request(self, **kwargs):
        response = super().request(**kwargs)
        content_type = response.get("Content-Type", "")
        if not getattr(response, "streaming", False) and content_type.startswith(_CHECKED_TYPES):
            assert_no_pii(response.content.decode("utf-8", "replace"), f"response to {kwargs.get('PATH_INFO')}")
        return response


@pytest.fixture
def api_client() -> PiiCheckingClient:
    return PiiCheckingClient()


def client_for(user) -> PiiCheckingClient:
    client = PiiCheckingClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture(autouse=True)
def _no_token_users_kept():
    """Each test reads its users afresh: rows a previous test's requests kept (rolled back
    since) must not answer for this one's."""
    from accounts.authentication import token_users_forget

    token_users_forget()


@pytest.fixture(autouse=True)
def _sms_outbox():
    from events.sms import LocmemSmsBackend

    LocmemSmsBackend.outbox.clear()


@pytest.fixture
def sms_outbox():
    """The SMS sent during the test (the locmem backend's list)."""
    from events.sms import LocmemSmsBackend

    return LocmemSmsBackend.outbox


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process, as without a broker (what CI's Redis would otherwise queue)."""
    from config.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def customer(db):
    return UserFactory()


@pytest.fixture
def other_customer(db):
    return UserFactory()


@pytest.fixture
def merchant(db):
    return MerchantFactory()


@pytest.fixture
def operator(db):
    return OperatorFactory()


@pytest.fixture
def make_plan(db):
    """``make_plan(total=, count=, purchase_date=, customer=, merchant=)``: a real plan, through the service."""

    def make(*, total="500.00", count=4, frequency="MONTHLY", purchase_date: date | None = None, **parties):
        return plan_originated(total=total, count=count, frequency=frequency, purchase_date=purchase_date, **parties)

    return make


@pytest.fixture
def gateway(settings):
    """The recording gateway, answering after a network's round trip (a race's window): what
    the card network was asked, for tests that watch the money. Test modules with a gateway
    of their own override it."""
    from payments.tests.gateways import RecordingGateway

    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.SlowRecordingGateway"
    RecordingGateway.clear()
    yield RecordingGateway
    RecordingGateway.clear()


@pytest.fixture
def operator_client(operator):
    """A Django test client logged in (session) as an operator: the admin's user."""
    from django.test import Client

    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def database_down():
    """Point the default connection at a port where nothing listens, then back (PostgreSQL)."""
    from config.tests.faults import inject

    inject("postgres unreachable (nothing listens)")
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"
    yield
    connection.close()
    connection.settings_dict["PORT"] = port


def broker_pools_drop() -> None:
    """Forget the process's pooled publishing connections, so the next publish connects to
    the broker URL configured then (tests change it; a running service never does).
    Dropped, not closed: kombu keeps the pools by broker URL and hands them out again."""
    from config.celery import app

    app.amqp._producer_pool = None
    app._pool = None


@contextlib.contextmanager
def broker_unreachable():
    """Within the block, publishing finds no broker (a port where nothing listens)."""
    from config.celery import app
    from config.tests.faults import inject

    inject("broker unreachable (nothing listens)")
    previous = app.conf.broker_write_url
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"
    broker_pools_drop()
    try:
        yield
    finally:
        app.conf.broker_write_url = previous
        broker_pools_drop()


def wait_until(predicate, seconds: float = 30) -> bool:
    """Poll ``predicate`` until it holds (True) or ``seconds`` pass (False): for work a real
    worker does in the background."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def as_user():
    """``as_user(user)`` → a client authenticated with that user's JWT."""
    return client_for


class _LineCollector(logging.Handler):
    def __init__(self, template: logging.Handler):
        super().__init__(level=logging.NOTSET)
        self.lines: list[str] = []
        self.filters = list(template.filters)
        self.setFormatter(template.formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="session")
def _log_lines():
    """Every log line the whole run writes, through the filters and formatter of the
    handler that settings.LOGGING installs on the root logger."""
    root = logging.getLogger()
    configured = next(h for h in root.handlers if isinstance(h.formatter, logging.Formatter) and h.filters)
    collector = _LineCollector(configured)
    root.addHandler(collector)
    yield collector
    root.removeHandler(collector)


@pytest.fixture(autouse=True)
def _no_pii_in_logs(_log_lines):
    start = len(_log_lines.lines)
    yield
    assert_no_pii("\n".join(_log_lines.lines[start:]), "log lines")


@pytest.fixture
def log_lines(_log_lines):
    """A callable returning the log lines written since the test started."""
    start = len(_log_lines.lines)

    def read() -> list[str]:
        return _log_lines.lines[start:]

    return read


@pytest.fixture(autouse=True)
def _ledger_holds_after_every_scenario(request):
    """After every test that touched the database, the ledger invariants must hold —
    except in the tests that break the books on purpose (marked ``breaks_ledger``)."""
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(request.fixturenames)
    if not uses_db or request.node.get_closest_marker("breaks_ledger"):
        yield
        return
    request.getfixturevalue("db")  # set up first, so the check below runs before the rollback
    yield
    from ledger.checks import ledger_check

    report = ledger_check(record=False)
    assert report.ok, "ledger invariants broken after this test:\n" + "\n".join(report.breaches)


@pytest.fixture
def raw_rows():
    """``raw_rows(table)`` → every row of a table as text, read with SQL (not the ORM)."""

    def read(table: str) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - table names from tests  # nosec B608
            return [" | ".join("" if v is None else str(v) for v in row) for row in cursor.fetchall()]

    return read
