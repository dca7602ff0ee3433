"""The pages a person uses, in a real headless Chromium (Debian's), driven by Playwright,
which also reports every Content-Security-Policy violation they meet (there must be none).

Screenshots go to ``artifacts/screenshots/``. Skipped with a reason where Chromium or
Playwright is missing, except under CI, where ``.ci/run`` installs both and a missing
browser is a failure.
"""

import contextlib
import csv
import io
import os
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.management import call_command
from django.db import connections, transaction
from django.test.testcases import LiveServerThread

from accounts.services import merchant_payout_account_set
from accounts.tests.factories import DEFAULT_PASSWORD, MerchantFactory, OperatorFactory, UserFactory
from bnpl.models import Plan
from bnpl.services.checkout import Offer, plan_offer
from bnpl.services.sweep import overdue_sweep
from bnpl.tests.factories import plan_originated
from ledger.checks import ledger_check
from payments.models import Payment
from refunds.models import Refund
from refunds.tests.factories import refund_requested
from settlements.tests.factories import settled, settlement_of

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


# Every Content-Security-Policy violation, reported on the console as a line of its own.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI} in ${location.pathname}`);
});
"""


@contextlib.contextmanager
def chromium_page(violations: list[str]):
    """A page in headless Chromium; each Content-Security-Policy violation it meets is appended
    to ``violations``. The ORM is not used while it is open: Playwright's sync API runs the test
    in a greenlet, and Django's connections there would be other ones."""
    assert CHROMIUM, "chromium is not installed"
    assert sync_playwright, "playwright is not installed"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.add_init_script(REPORT_CSP_VIOLATIONS)
            page.on("console", lambda message: _keep_violation(message.text, violations))
            yield page
        finally:
            browser.close()


def _keep_violation(text: str, violations: list[str]) -> None:
    # Chromium's own report ("... violates the following Content Security Policy directive ...")
    # and the event's line above say the same thing: the event's line is the one kept.
    if text.startswith("CSP violation: "):
        violations.append(text.removeprefix("CSP violation: "))


def computed(page, selector: str, prop: str) -> str:
    return page.eval_on_selector(selector, f"(element) => getComputedStyle(element).{prop}")


# Cards whose content is wider than the card (a timestamp, an error's name that does not wrap).
OVERFLOWING_CARDS = """() => [...document.querySelectorAll('.card')]
  .filter((card) => card.scrollWidth > card.clientWidth)
  .map((card) => `${card.querySelector('h2, h3').textContent}: ${card.scrollWidth} > ${card.clientWidth}`)"""
# How much of its card's content box the 30-day chart fills, as a share of the width.
CHART_FILL = """() => {
  const svg = document.querySelector('svg.chart'), card = svg.closest('.card'), style = getComputedStyle(card);
  const inner = card.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return svg.getBoundingClientRect().width / inner;
}"""
SHORT_DAY = re.compile(r"^[A-Z][a-z]{2} \d{1,2}$")  # "Nov 5"


def component_titles(page) -> list[str]:
    return page.locator("[data-component] h3").all_inner_texts()


def sign_in(page, live_url: str, *, username: str, password: str, then: str) -> None:
    page.goto(f"{live_url}/admin/login/?next={then}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{then}")


@pytest.mark.django_db(transaction=True)
def test_home_and_the_dashboard_for_an_anonymous_visitor_in_chromium(live_url, make_plan):
    make_plan(total="100.00")
    overdue_sweep()
    ledger_check(record=True)
    violations: list[str] = []
    with chromium_page(violations) as page:
        page.goto(f"{live_url}/")
        assert page.locator("h1").inner_text() == "Buy now, pay later"
        for name in ("Swagger UI", "ReDoc", "The health dashboard", "sign in to the admin"):
            assert page.get_by_role("link", name=name).count() >= 1, name
        assert "POST /api/v1/auth/token/" in page.locator("#sign-in").inner_text()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
        assert page.evaluate(OVERFLOWING_CARDS) == []
        page.screenshot(path=str(SHOTS / "home-anonymous.png"), full_page=True)

        page.get_by_role("link", name="The health dashboard").click()
        page.wait_for_url("**/api/v1/health/")
        assert page.locator("#overall").inner_text() == "ok"
        assert {"Database", "Celery worker", "Last sweep", "Ledger check"} <= set(component_titles(page))
        assert page.locator("[data-figure]").count() == 0  # no figures for anyone but operators
        assert page.locator("svg").count() == 0
        assert page.locator("#figures-hidden").is_visible()
        assert page.evaluate(OVERFLOWING_CARDS) == []
        assert computed(page, ".card", "borderRadius") == "8px"  # the pages' stylesheet applies
        page.screenshot(path=str(SHOTS / "health-dashboard-anonymous.png"), full_page=True)

    assert violations == [], violations


@pytest.mark.django_db(transaction=True)
def test_dashboard_admin_refund_approval_and_swagger_in_chromium(live_url, make_plan):
    operator = OperatorFactory(username="ops-browser")
    merchant = MerchantFactory()
    plan = make_plan(merchant=merchant, total="100.00")
    refund = refund_requested(plan, "40.00", transaction_id="rf-browser")
    overdue_sweep()
    ledger_check(record=True)
    violations: list[str] = []
    with chromium_page(violations) as page:
        sign_in(page, live_url, username="ops-browser", password="correct-horse-battery-9", then="/api/v1/health/")
        assert page.locator("#overall").inner_text() == "ok"
        assert {"Database", "Celery worker", "Last sweep", "Ledger check"} <= set(component_titles(page))
        assert not [title for title in component_titles(page) if "_" in title]
        assert page.locator("[data-figure=users]").inner_text() == "3"
        assert page.locator("#figures-hidden").count() == 0
        chart = page.locator("svg.chart[role=img]")
        assert chart.count() == 1
        assert chart.locator("title").first.text_content() == "Plans created and successful payments per day"
        days = chart.locator("text.day-label").all_text_contents()
        assert len(days) == 6, days
        assert all(SHORT_DAY.match(day) for day in days), days
        assert page.evaluate(CHART_FILL) > 0.98  # the chart is as wide as its card
        assert page.evaluate(OVERFLOWING_CARDS) == []
        page.screenshot(path=str(SHOTS / "health-dashboard-operator.png"), full_page=True)

        page.goto(f"{live_url}/admin/refunds/refund/")
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
        assert computed(page, "body", "backgroundColor") == "rgb(250, 250, 250)"
        page.screenshot(path=str(SHOTS / "swagger.png"), full_page=False)

    refund.refresh_from_db()
    assert refund.status == Refund.Status.APPROVED
    assert refund.decided_by == operator
    assert violations == [], violations


# The admin's widest lists, each checked with a few rows of demo data at a 1366x768 screen.
ADMIN_LISTS = ("bnpl/plan", "bnpl/installment", "payments/payment", "refunds/refund", "accounts/user", "events/event")
WIDTHS = """() => {
  const results = document.querySelector('#changelist-form .results');
  return {page: document.documentElement.scrollWidth, results: [results.scrollWidth, results.clientWidth],
          rows: document.querySelectorAll('#result_list tbody tr').length};
}"""


@pytest.mark.django_db(transaction=True)
def test_admin_lists_are_branded_and_fit_a_1366_pixel_screen_in_chromium(live_url, settings):
    settings.DEBUG = True  # the demo data is refused with DEBUG off (pytest-django's default)
    call_command("populate_mock_data", verbosity=0)
    settings.DEBUG = False
    violations: list[str] = []
    with chromium_page(violations) as page:
        page.set_viewport_size({"width": 1366, "height": 768})
        sign_in(page, live_url, username="admin", password="admin123", then="/admin/")
        assert page.locator("#site-name").inner_text() == "BNPL operations"
        assert page.title() == "Operations | BNPL operations"
        assert page.get_by_role("link", name="View site").get_attribute("href") == "/"
        too_wide = {}
        for changelist in ADMIN_LISTS:
            page.goto(f"{live_url}/admin/{changelist}/")
            assert page.locator("#site-name").inner_text() == "BNPL operations"
            widths = page.evaluate(WIDTHS)
            assert widths["rows"] >= 2, (changelist, widths)
            if widths["page"] > 1366 or widths["results"][0] > widths["results"][1]:
                too_wide[changelist] = widths
            page.screenshot(path=str(SHOTS / f"admin-{changelist.split('/')[1]}-1366.png"))
        assert too_wide == {}, f"scrolls sideways at 1366 px: {too_wide}"

    assert violations == [], violations


# ReDoc's side menu shows Redocly's logo from their CDN; the policy blocks that outside request
# (the logo then hides itself). It is the one violation the page reports, and shows that
# violations are seen at all.
REDOC_LOGO_BLOCKED = "img-src blocked https://cdn.redoc.ly/redoc/logo-mini.svg in /redoc/"


@pytest.mark.django_db(transaction=True)
def test_redoc_renders_its_styles_under_the_content_security_policy(live_url):
    violations: list[str] = []
    with chromium_page(violations) as page:
        page.goto(f"{live_url}/redoc/")
        page.wait_for_selector("h1", timeout=20000)
        assert page.locator("h1").first.inner_text().startswith("BNPL API")
        assert computed(page, ".menu-content", "width") == "260px"  # styled-components, with the nonce
        assert computed(page, ".ps", "overflow") == "hidden"  # perfect-scrollbar's stylesheet, by its hash
        page.fill("input[placeholder='Search...']", "refund")  # search runs in a blob: worker
        page.wait_for_selector("[data-role='search:results'] li, .search-results li, [role=search] li")
        page.screenshot(path=str(SHOTS / "redoc.png"), full_page=False)

    assert set(violations) == {REDOC_LOGO_BLOCKED}, violations


def sign_in_on_the_page(page, *, username: str, password: str) -> None:
    """Fill the session sign-in form the page shows (``/login/``) and send it."""
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#sign-in-form button[type=submit]")


@pytest.mark.django_db(transaction=True)
def test_a_customer_confirms_an_offer_and_pays_then_the_merchant_sees_it_active_in_chromium(live_url):
    customer = UserFactory(username="usr-001", user_id="usr-001", full_name="Aziz Karimov")
    merchant = MerchantFactory(username="merchant-001", user_id="merchant-001", full_name="Demo Electronics LLC")
    plan, _ = plan_offer(
        customer=customer,
        merchant=merchant,
        offer=Offer(total_amount=Decimal("1200.00"), merchant_reference="order-browser"),
    )
    checkout = f"/checkout/{plan.checkout_token}/"
    violations: list[str] = []
    with chromium_page(violations) as page:
        # The link the customer was sent: signed out, the page asks them to sign in, then comes back.
        page.goto(f"{live_url}{checkout}")
        page.wait_for_url(re.compile(r".*/login/\?next=.*"))
        page.screenshot(path=str(SHOTS / "sign-in.png"), full_page=True)
        sign_in_on_the_page(page, username="usr-001", password=DEFAULT_PASSWORD)
        page.wait_for_url(f"**{checkout}")
        assert page.locator("h1").inner_text() == "Your offer from Demo Electronics LLC"
        assert page.locator("#total").inner_text() == "1200.00 USD"
        assert page.locator("#schedule tbody tr").count() == 4
        assert page.locator("#schedule tbody tr").first.locator("td").last.inner_text() == "300.00 USD"
        assert page.evaluate(OVERFLOWING_CARDS) == []
        page.screenshot(path=str(SHOTS / "checkout.png"), full_page=True)

        page.click("#confirm")
        page.wait_for_url(f"{live_url}/")
        assert (
            f"Confirmed: plan #{plan.pk} with Demo Electronics LLC is active." in page.locator(".messages").inner_text()
        )
        row = page.locator(f'#plans tr[data-plan="{plan.pk}"]')
        assert row.locator("[data-status]").inner_text() == "Active"
        assert page.locator("#offers").inner_text().endswith("No offer is waiting for your answer.")
        page.screenshot(path=str(SHOTS / "portal-customer-confirmed.png"), full_page=True)

        row.get_by_role("button", name="Pay 300.00 USD").click()
        page.wait_for_selector(".messages")
        assert f"Paid 300.00 USD for installment 1 of plan #{plan.pk}" in page.locator(".messages").inner_text()
        assert "900.00 USD" in page.locator(f'#plans tr[data-plan="{plan.pk}"]').inner_text()  # left to pay
        assert page.evaluate(OVERFLOWING_CARDS) == []
        page.screenshot(path=str(SHOTS / "portal-customer-paid.png"), full_page=True)

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_selector("h1:text('Buy now, pay later')")
        page.get_by_role("link", name="Sign in", exact=True).click()
        sign_in_on_the_page(page, username="merchant-001", password=DEFAULT_PASSWORD)
        page.wait_for_selector("#sold")
        sold = page.locator(f'#sold tr[data-plan="{plan.pk}"]')
        assert sold.locator("[data-status]").inner_text() == "ACTIVE"
        assert sold.locator("a.api-link").get_attribute("href") == f"/api/v1/plans/{plan.pk}/"
        page.locator("[data-status-filter=ACTIVE]").click()
        page.wait_for_url("**/?status=ACTIVE")
        assert page.locator("#sold tbody tr").count() == 1
        page.screenshot(path=str(SHOTS / "portal-merchant.png"), full_page=True)

    plan = Plan.objects.get(pk=plan.pk)
    assert plan.status == Plan.Status.ACTIVE
    assert list(Payment.objects.filter(plan=plan).values_list("status", "amount")) == [
        (Payment.Status.SUCCEEDED, Decimal("300.00"))
    ]
    assert violations == [], violations


# The merchant's tables, each as wide as what it holds: none may scroll sideways on its own.
SCROLLING_TABLES = """() => [...document.querySelectorAll('.table-wrap')]
  .filter((wrap) => wrap.scrollWidth > wrap.clientWidth)
  .map((wrap) => `${wrap.closest('.card').id}: ${wrap.scrollWidth} > ${wrap.clientWidth}`)"""
# The settlement file fetched with the page's session, as a script of the site would.
FETCH_CSV = """async (href) => {
  const response = await fetch(href);
  return {status: response.status, type: response.headers.get('content-type'), text: await response.text()};
}"""


@pytest.mark.django_db(transaction=True)
def test_a_merchant_sees_its_settlements_and_payouts_and_downloads_the_settlement_file_in_chromium(
    live_url, eager_tasks
):
    merchant = MerchantFactory(
        username="merchant-001", user_id="merchant-001", full_name="Demo Electronics LLC", payout=True
    )
    plans = [plan_originated(total=total, merchant=merchant) for total in ("1200.00", "100.00")]
    settled()
    # The EUR sales of the day go to an account the bank refuses: a failed payout beside a paid one.
    with transaction.atomic():
        merchant_payout_account_set(merchant=merchant, account="123450002", name="Demo", changed_by=merchant)
    plan_originated(total="200.00", merchant=merchant, currency="EUR")
    settled()
    plan_originated(total="300.00")  # another merchant's, settled too, never shown
    settled()
    usd, eur = settlement_of(merchant), settlement_of(merchant, "EUR")
    paid, failed = usd.payout, eur.payout
    filename = f"settlement-{usd.business_date}-USD-{usd.pk}.csv"
    violations: list[str] = []
    with chromium_page(violations) as page:
        page.set_viewport_size({"width": 1366, "height": 768})
        page.goto(f"{live_url}/login/")
        sign_in_on_the_page(page, username="merchant-001", password=DEFAULT_PASSWORD)
        page.wait_for_selector("#settlements")
        assert page.locator("#settlements tbody tr").count() == 2
        row = page.locator(f'#settlements tr[data-settlement="{usd.pk}"]')
        assert row.locator("td.num").all_inner_texts() == ["1300.00 USD", "52.60 USD", "1247.40 USD", "2"]
        assert row.locator("[data-payout-status]").inner_text() == "PAID"
        assert page.locator(f'#settlements tr[data-settlement="{eur.pk}"] [data-payout-status]').inner_text() == (
            "FAILED"
        )
        assert page.locator("#payouts tbody tr").count() == 2
        paid_row = page.locator(f'#payouts tr[data-payout="{paid.pk}"]')
        assert "1247.40 USD" in paid_row.inner_text()
        assert paid_row.locator("code.account").inner_text() == "DE89**************3000"
        failed_row = page.locator(f'#payouts tr[data-payout="{failed.pk}"]')
        assert failed_row.locator("[data-status]").inner_text() == "FAILED"
        assert failed_row.locator("[data-failure-code]").inner_text() == "account_closed"
        assert failed_row.locator("code.account").inner_text() == "*****0002"
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1366
        assert page.evaluate(OVERFLOWING_CARDS) == []
        assert page.evaluate(SCROLLING_TABLES) == []
        page.locator("#settlements").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "portal-merchant-settlements.png"), full_page=True)

        link = row.locator("a.csv-link")
        href = link.get_attribute("href")
        assert href == f"/api/v1/settlements/{usd.pk}/lines/?format=csv"
        fetched = page.evaluate(FETCH_CSV, href)
        assert (fetched["status"], fetched["type"]) == (200, "text/csv; charset=utf-8")
        with page.expect_download() as download_info:
            link.click()
        download = download_info.value
        assert download.failure() is None
        assert download.suggested_filename == filename
        with open(download.path(), newline="") as handle:
            downloaded = handle.read()
        assert downloaded == fetched["text"]
        assert page.url == f"{live_url}/"  # the file came as a download: the portal stays

    lines = list(csv.DictReader(io.StringIO(downloaded)))
    assert [(int(line["plan_id"]), line["type"], line["net"]) for line in lines] == [
        (plans[0].pk, "capture", "1151.70"),
        (plans[1].pk, "capture", "95.70"),
    ]
    assert {line["settlement_id"] for line in lines} == {str(usd.pk)}
    assert violations == [], violations
