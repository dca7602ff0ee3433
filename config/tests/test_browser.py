"""The pages a person uses, in a real headless Chromium (Debian's), driven by Playwright.

Screenshots go to ``artifacts/screenshots/``. Skipped with a reason where Chromium or
Playwright is missing, except under CI, where ``.ci/run`` installs both and a missing
browser is a failure.
"""

import contextlib
import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.db import connections
from django.test.testcases import LiveServerThread

from accounts.tests.factories import MerchantFactory, OperatorFactory
from refunds.models import Refund

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

if not os.environ.get("CI") and (CHROMIUM is None or sync_playwright is None):
    pytestmark = pytest.mark.skip(reason="needs Debian's chromium and the playwright package (installed by .ci/run)")


@pytest.fixture
def live_url(transactional_db):
    """A live server for this test only, stopped (its connections closed) when the test ends."""
    shared = {c.alias: c for c in connections.all() if c.vendor == "sqlite" and c.is_in_memory_db()}
    for connection in shared.values():
        connection.inc_thread_sharing()  # an in-memory SQLite database exists in one connection only
    # Request threads must not keep persistent connections past the test (the database is dropped after).
    max_age = connections.settings["default"].get("CONN_MAX_AGE", 0)
    connections.settings["default"]["CONN_MAX_AGE"] = 0
    thread = LiveServerThread("localhost", StaticFilesHandler, connections_override=shared, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://localhost:{thread.port}"
    thread.terminate()
    connections.settings["default"]["CONN_MAX_AGE"] = max_age
    for connection in shared.values():
        connection.dec_thread_sharing()


@contextlib.contextmanager
def chromium_page():
    """A page in headless Chromium. The ORM is not used while it is open: Playwright's sync
    API runs the test in a greenlet, and Django's connections there would be other ones."""
    assert CHROMIUM, "chromium is not installed"
    assert sync_playwright, "playwright is not installed"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


@pytest.mark.django_db(transaction=True)
def test_dashboard_admin_refund_approval_and_swagger_in_chromium(live_url, make_plan):
    operator = OperatorFactory(username="ops-browser")
    merchant = MerchantFactory()
    plan = make_plan(merchant=merchant, total="100.00")
    refund = Refund.objects.create(
        plan=plan,
        merchant=merchant,
        customer=plan.customer,
        requested_by=merchant,
        transaction_id="rf-browser",
        amount=Decimal("40.00"),
        currency="USD",
    )
    with chromium_page() as page:
        page.goto(f"{live_url}/api/v1/health/")
        assert page.locator("#overall").inner_text() == "ok"
        assert page.locator("svg[role=img]").count() == 1
        page.screenshot(path=str(SHOTS / "health-dashboard.png"), full_page=True)

        page.goto(f"{live_url}/admin/login/?next=/admin/refunds/refund/")
        page.fill("#id_username", "ops-browser")
        page.fill("#id_password", "correct-horse-battery-9")
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/refunds/refund/")
        page.check(f"input[name=_selected_action][value='{refund.pk}']")
        page.select_option("select[name=action]", "approve")
        page.click("button[name=index]")
        page.wait_for_selector(".messagelist")
        assert "rf-browser: approved" in page.locator(".messagelist").inner_text().lower()
        page.screenshot(path=str(SHOTS / "admin-refund-approved.png"), full_page=True)

        page.goto(f"{live_url}/swagger/")
        page.wait_for_selector(".opblock", timeout=20000)
        operations = page.locator(".opblock").count()
        assert operations >= 20, operations
        assert page.get_by_text("/api/v1/plans/{id}/pay/").count() >= 1
        page.screenshot(path=str(SHOTS / "swagger.png"), full_page=False)

    refund.refresh_from_db()
    assert refund.status == Refund.Status.APPROVED
    assert refund.decided_by == operator
