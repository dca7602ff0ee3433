"""``/`` for signed-in customers and merchants: the customer's offers, plans, payment of an
installment, debt status and spending power; the merchant's plans by status, settlements
(with their CSV files) and payouts. Each in a fixed number of queries, whatever the number
of plans, settlements and payouts."""

import csv
import io
import re
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.services import merchant_payout_account_set
from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Installment, Plan
from bnpl.schedule import business_today
from bnpl.services.checkout import Offer, plan_offer
from bnpl.services.sweep import overdue_sweep
from bnpl.tests.factories import plan_originated
from config.tests.test_security_headers import assert_allowed_by_its_csp
from payments.models import Payment
from payments.tests.factories import payment_pending
from settlements.models import Payout, Settlement
from settlements.reports import COLUMNS
from settlements.tests.factories import settled, settlement_of

pytestmark = pytest.mark.django_db


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def offered(customer, merchant, total="300.00", **terms) -> Plan:
    return plan_offer(customer=customer, merchant=merchant, offer=Offer(total_amount=Decimal(total), **terms))[0]


def pay_form(page: str, installment: Installment) -> dict:
    """The pay form's fields for ``installment`` as the portal rendered them."""
    form = re.search(rf'<form method="post" action="/installments/{installment.pk}/pay/".*?</form>', page, re.S)
    assert form, f"no pay form for installment {installment.pk}"
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(0)))


def first_installment(plan: Plan) -> Installment:
    return plan.installments.order_by("sequence").first()


# --- the customer's portal ---------------------------------------------------------------


def test_the_customer_portal_shows_offers_plans_debt_and_spending_power(customer, merchant, make_plan):
    active = make_plan(customer=customer, merchant=merchant, total="400.00")
    euros = make_plan(customer=customer, merchant=merchant, total="90.00", count=3, currency="EUR")
    offer = offered(customer, MerchantFactory(full_name="Shoe Shop"), "300.00")
    authorized = offered(customer, merchant, "50.00", capture_mode=Plan.CaptureMode.MANUAL)
    signed_in(customer).post(f"/checkout/{authorized.checkout_token}/", {"action": "confirm"})

    response = signed_in(customer).get("/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f'role <strong data-role="{customer.role}">Customer</strong>' in page
    offers = page.split('id="offers"')[1].split("</section>")[0]
    assert f'href="/checkout/{offer.checkout_token}/"' in offers
    assert "Shoe Shop: 300.00 USD in 4 installments" in offers
    rows = dict(re.findall(r'<tr data-plan="(\d+)">(.*?)</tr>', page, re.S))
    assert set(rows) == {str(active.pk), str(euros.pk), str(authorized.pk)}
    first = first_installment(active)
    assert f"{first.due_date:%Y-%m-%d}</time>: 100.00 USD" in rows[str(active.pk)]
    assert '<td class="num">400.00 USD</td>' in rows[str(active.pk)]  # left to pay
    assert "Pay 100.00 USD" in rows[str(active.pk)]
    assert "Pay 30.00 EUR" in rows[str(euros.pk)]
    assert 'data-status="AUTHORIZED"' in rows[str(authorized.pk)]
    assert "starts when the merchant captures it" in rows[str(authorized.pk)]
    assert "Pay" not in rows[str(authorized.pk)]
    assert 'data-user-status="NORMAL"' in page
    assert "In good standing" in page
    power = page.split('id="spending-power"')[1].split("</section>")[0]
    available = dict(
        re.findall(r'<dl class="details" data-currency="(\w+)">.*?class="available">([^<]+)<', power, re.S)
    )
    # Per currency, never added together: USD 2000 - 400 owed - 300 and 50 reserved; EUR 2000 - 90.
    assert available == {"EUR": "1910.00 EUR", "USD": "1250.00 USD"}
    assert_allowed_by_its_csp(response, "/ (customer)")


def test_the_portal_shows_what_is_overdue(customer, make_plan):
    plan = make_plan(customer=customer, total="200.00", purchase_date=business_today() - timedelta(days=45))
    overdue_sweep()

    page = signed_in(customer).get("/").content.decode()

    assert 'data-user-status="DEBT_USER"' in page
    debt = page.split('id="debt"')[1].split("</section>")[0]
    assert "Overdue" in debt
    assert f"Plan #{plan.pk}: 50.00 USD due" in debt
    assert '<span class="status status-overdue">overdue</span>' in page


def test_the_portal_shows_late_fees_in_each_currency(customer, make_plan):
    long_ago = business_today() - timedelta(days=45)
    make_plan(customer=customer, total="200.00", purchase_date=long_ago)
    make_plan(customer=customer, total="300.00", purchase_date=long_ago, currency="EUR")
    overdue_sweep(late_fees=True)

    debt = signed_in(customer).get("/").content.decode().split('id="debt"')[1].split("</section>")[0]

    assert '<p data-currency="EUR">Late fees due: 10.00 EUR.</p>' in debt
    assert '<p data-currency="USD">Late fees due: 10.00 USD.</p>' in debt


def test_lapsed_offers_and_other_customers_plans_are_not_shown(customer, merchant, make_plan):
    lapsed = offered(customer, merchant)
    Plan.objects.filter(pk=lapsed.pk).update(expires_at=lapsed.created_at - timedelta(minutes=1))
    someone_elses = make_plan(merchant=merchant)

    page = signed_in(customer).get("/").content.decode()

    assert "No offer is waiting for your answer." in page
    assert f'data-plan="{someone_elses.pk}"' not in page
    assert "You have no active plan." in page


def portal_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/").status_code == 200
    return len(queries)


def test_the_customer_portal_reads_a_fixed_number_of_queries(customer, merchant, make_plan):
    make_plan(customer=customer, merchant=merchant, total="100.00")
    client = signed_in(customer)
    few = portal_queries(client)
    for _ in range(4):
        make_plan(customer=customer, merchant=MerchantFactory(), total="100.00", count=6)
        offered(customer, MerchantFactory(), "20.00")
    declined = offered(customer, merchant, "10.00")
    client.post(f"/checkout/{declined.checkout_token}/", {"action": "decline"})

    many = portal_queries(client)

    assert many == few <= 9  # session, user, plans, installments, finished, debt (2), credit


# --- paying an installment from the portal -----------------------------------------------


def test_paying_an_installment_from_the_portal(customer, make_plan):
    plan = make_plan(customer=customer, total="400.00")
    installment = first_installment(plan)
    client = signed_in(customer)
    form = pay_form(client.get("/").content.decode(), installment)

    response = client.post(f"/installments/{installment.pk}/pay/", form)

    assert response.status_code == 302
    assert response["Location"] == "/"
    installment.refresh_from_db()
    assert installment.status == Installment.Status.PAID
    payment = Payment.objects.get(plan=plan)
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.amount == Decimal("100.00")
    page = client.get("/").content.decode()
    assert f"Paid 100.00 USD for installment 1 of plan #{plan.pk}. Thank you." in page
    assert '<td class="num">300.00 USD</td>' in page  # left to pay
    second = plan.installments.get(sequence=2)
    assert pay_form(page, second)["key"] != form["key"]  # a new render, a new key


def test_a_double_submit_of_one_form_pays_once(customer, make_plan):
    plan = make_plan(customer=customer, total="400.00")
    installment = first_installment(plan)
    client = signed_in(customer)
    form = pay_form(client.get("/").content.decode(), installment)

    first = client.post(f"/installments/{installment.pk}/pay/", form)
    second = client.post(f"/installments/{installment.pk}/pay/", form)

    assert first.status_code == second.status_code == 302
    assert Payment.objects.filter(plan=plan).count() == 1
    assert Plan.objects.get(pk=plan.pk).installments_remaining == Decimal("300.00")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_submits_of_one_form_at_once_charge_the_card_once(gateway):
    customer = UserFactory()
    plan = plan_originated(customer=customer, total="400.00")
    installment = first_installment(plan)
    client = signed_in(customer)
    form = pay_form(client.get("/").content.decode(), installment)
    answers = []

    def submit():
        try:
            answers.append(signed_in(customer).post(f"/installments/{installment.pk}/pay/", form).status_code)
        finally:
            connection.close()  # this thread's own connection: the test database is dropped after

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [302, 302]
    assert Payment.objects.filter(plan=plan).count() == 1
    assert list(gateway.taken().values()) == [Decimal("100.00")]
    installment.refresh_from_db()
    assert installment.status == Installment.Status.PAID


def test_a_declined_card_is_shown_with_its_code(make_plan):
    customer = UserFactory(card_number="4000000000000002")
    plan = make_plan(customer=customer, total="400.00")
    installment = first_installment(plan)
    client = signed_in(customer)
    form = pay_form(client.get("/").content.decode(), installment)

    response = client.post(f"/installments/{installment.pk}/pay/", form)

    assert response.status_code == 402
    page = response.content.decode()
    assert 'data-code="payment_declined" data-decline-code="card_declined"' in page
    assert "Your card was declined (card_declined)" in page
    assert Payment.objects.get(plan=plan).status == Payment.Status.FAILED
    installment.refresh_from_db()
    assert installment.amount_paid == 0
    assert pay_form(page, installment)["key"] != form["key"]  # pay again with a new key
    assert_allowed_by_its_csp(response, "/installments/pay/ (declined)")


def test_paying_an_installment_already_paid_is_409_on_the_portal(customer, make_plan):
    plan = make_plan(customer=customer, total="400.00")
    installment = first_installment(plan)
    client = signed_in(customer)
    form = pay_form(client.get("/").content.decode(), installment)
    assert client.post(f"/installments/{installment.pk}/pay/", form).status_code == 302

    response = client.post(f"/installments/{installment.pk}/pay/", {"key": "another-key-of-22-chars"})

    assert response.status_code == 409
    assert 'data-code="nothing_to_pay"' in response.content.decode()
    assert Payment.objects.filter(plan=plan).count() == 1


def test_a_payment_in_progress_shows_no_pay_button(customer, make_plan, settings):
    plan = make_plan(customer=customer, total="400.00")
    installment = first_installment(plan)
    payment_pending(settings, plan, "100.00", installment=installment)

    page = signed_in(customer).get("/").content.decode()

    assert f'action="/installments/{installment.pk}/pay/"' not in page
    assert "payment in progress" in page


@pytest.mark.parametrize("key", ["", "short", "x" * 33, "bad key with spaces!!!", "a-key-of-twenty-two-ch\n"])
def test_a_pay_form_without_a_valid_key_is_400_naming_it(customer, make_plan, key):
    plan = make_plan(customer=customer, total="400.00")
    installment = first_installment(plan)

    response = signed_in(customer).post(f"/installments/{installment.pk}/pay/", {"key": key})

    assert response.status_code == 400
    assert 'data-code="validation_error" data-field="key"' in response.content.decode()
    assert not Payment.objects.filter(plan=plan).exists()


def test_only_the_customer_pays_their_installment(customer, merchant, make_plan):
    plan = make_plan(customer=customer, merchant=merchant, total="400.00")
    path = f"/installments/{first_installment(plan).pk}/pay/"
    form = {"key": "a-key-of-twenty-two-ch"}

    assert signed_in(UserFactory()).post(path, form).status_code == 404
    assert signed_in(merchant).post(path, form).status_code == 404
    assert signed_in(customer).post("/installments/999999999/pay/", form).status_code == 404
    anonymous = Client().post(path, form)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/?next=/")
    assert signed_in(customer, enforce_csrf_checks=True).post(path, form).status_code == 403
    assert signed_in(customer).get(path).status_code == 405
    assert not Payment.objects.filter(plan=plan).exists()


# --- the merchant's portal ----------------------------------------------------------------


def test_the_merchant_sees_the_plans_they_sold_by_status_with_links(merchant, make_plan):
    customer = UserFactory()
    active = make_plan(customer=customer, merchant=merchant, total="400.00")
    pending = offered(customer, merchant, "100.00")
    others = make_plan(total="50.00")

    response = signed_in(merchant).get("/")

    assert response.status_code == 200
    page = response.content.decode()
    sold = page.split('id="sold"')[1]
    assert f'data-plan="{active.pk}"' in sold
    assert f'data-plan="{pending.pk}"' in sold
    assert f'data-plan="{others.pk}"' not in sold
    assert f'<a href="/api/v1/plans/{active.pk}/" class="api-link">' in sold
    api = signed_in(merchant).get(f"/api/v1/plans/{active.pk}/")  # the link opens with the page's session
    assert api.status_code == 200
    assert api.json()["status"] == "ACTIVE"
    assert customer.user_id in sold
    assert "All (2)" in sold
    assert ">Active (1)<" in sold
    assert ">Pending (1)<" in sold
    assert_allowed_by_its_csp(response, "/ (merchant)")


def test_the_merchant_filters_by_status(merchant, make_plan):
    active = make_plan(merchant=merchant)
    pending = offered(UserFactory(), merchant)

    page = signed_in(merchant).get("/?status=ACTIVE").content.decode()

    assert f'data-plan="{active.pk}"' in page
    assert f'data-plan="{pending.pk}"' not in page
    assert 'data-status-filter="ACTIVE" aria-current="page"' in page


def test_an_unknown_status_filter_is_400_naming_it(merchant, make_plan):
    plan = make_plan(merchant=merchant)

    response = signed_in(merchant).get("/?status=PAID")

    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-field="status"' in page
    assert f'data-plan="{plan.pk}"' in page  # every plan, unfiltered


def test_the_merchant_portal_reads_a_fixed_number_of_queries(make_plan, settle):
    merchant = MerchantFactory(payout=True)
    make_plan(merchant=merchant)
    settle()
    client = signed_in(merchant)
    few = portal_queries(client)
    for _ in range(5):
        make_plan(merchant=merchant, customer=UserFactory())
        offered(UserFactory(), merchant)
    # More settlements and payouts, a failed one among them: the day's EUR and UZS sales.
    make_plan(merchant=merchant, currency="EUR")
    make_plan(merchant=merchant, currency="UZS")
    failing_account(merchant)
    settle()
    assert Settlement.objects.filter(merchant=merchant).count() == Payout.objects.filter(merchant=merchant).count() == 3
    assert Payout.objects.filter(merchant=merchant, status=Payout.Status.FAILED).count() == 2

    # session, user, counts, page count, page, settlements (with their payouts), payouts
    assert portal_queries(client) == few <= 7


def test_the_merchant_pages_through_many_plans(merchant, make_plan, settings):
    customer = UserFactory(credit_limit=Decimal("100000.00"))
    plans = [make_plan(merchant=merchant, customer=customer, total="20.00") for _ in range(27)]

    first = signed_in(merchant).get("/").content.decode()
    second = signed_in(merchant).get("/?page=2").content.decode()

    assert len(re.findall(r'<tr data-plan="', first)) == 25
    assert "page 1 of 2" in first
    assert 'href="?page=2"' in first
    assert re.findall(r'<tr data-plan="(\d+)"', second) == [str(plans[1].pk), str(plans[0].pk)]


# --- the merchant's settlements and payouts ----------------------------------------------


@pytest.fixture
def settle(eager_tasks, django_capture_on_commit_callbacks):
    """``settle()``: the nightly settlement of what was posted so far today, its payouts sent
    once it commits (in-process, as without a broker)."""

    def run():
        with django_capture_on_commit_callbacks(execute=True):
            settled()

    return run


def failing_account(merchant):
    """Give ``merchant`` a bank account the fake payout gateway refuses (``account_closed``)."""
    with transaction.atomic():
        return merchant_payout_account_set(merchant=merchant, account="123450002", name="Shop", changed_by=merchant)


def section(page: str, name: str) -> str:
    return page.split(f'id="{name}"')[1].split("</section>")[0]


def rows_of(part: str, kind: str) -> dict[str, str]:
    return dict(re.findall(rf'<tr data-{kind}="(\d+)"[^>]*>(.*?)</tr>', part, re.S))


def test_the_merchant_sees_its_settlements_with_their_payouts_and_csv_files(make_plan, settle):
    merchant = MerchantFactory(payout=True)
    plans = [make_plan(merchant=merchant, total="100.00") for _ in range(2)]
    make_plan(merchant=merchant, total="200.00", currency="EUR")
    someone_else = MerchantFactory(payout=True)
    make_plan(merchant=someone_else, total="300.00")
    settle()
    usd, eur = settlement_of(merchant), settlement_of(merchant, "EUR")
    theirs = settlement_of(someone_else)
    client = signed_in(merchant)

    response = client.get("/")

    assert response.status_code == 200
    page = response.content.decode()
    settlements = rows_of(section(page, "settlements"), "settlement")
    assert set(settlements) == {str(usd.pk), str(eur.pk)}  # not the other merchant's
    row = settlements[str(usd.pk)]
    assert f'<time datetime="{usd.business_date:%Y-%m-%d}">' in row
    cells = re.findall(r'<td class="num">([^<]+)</td>', row)
    assert cells == ["200.00 USD", "8.60 USD", "191.40 USD", "2"]  # gross, fees (4% + 0.30 each), net, lines
    assert 'data-payout-status="PAID"' in row
    assert re.findall(r'<td class="num">([^<]+)</td>', settlements[str(eur.pk)]) == [
        "200.00 EUR",
        "8.30 EUR",
        "191.70 EUR",
        "1",
    ]
    payouts = rows_of(section(page, "payouts"), "payout")
    assert set(payouts) == {str(usd.payout.pk), str(eur.payout.pk)}
    paid = payouts[str(usd.payout.pk)]
    assert '<td class="num">191.40 USD</td>' in paid
    assert 'data-status="PAID"' in paid
    assert "DE89**************3000" in paid
    assert "data-failure-code" not in paid
    assert f"{usd.business_date:%Y-%m-%d} USD" in paid
    assert_allowed_by_its_csp(response, "/ (merchant, settlements)")

    # The file's link opens with the page's session: the settlement's lines as CSV.
    link = re.search(r'<a href="([^"]+)" class="csv-link"', row).group(1)
    assert link == f"/api/v1/settlements/{usd.pk}/lines/?format=csv"
    csv_file = client.get(link)
    assert csv_file.status_code == 200
    assert csv_file["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="settlement-{usd.business_date}-USD-{usd.pk}.csv"' in csv_file["Content-Disposition"]
    lines = list(csv.DictReader(io.StringIO(b"".join(csv_file.streaming_content).decode())))
    assert list(lines[0]) == COLUMNS
    assert [(int(line["plan_id"]), line["type"], line["net"]) for line in lines] == [
        (plan.pk, "capture", "95.70") for plan in plans
    ]
    # Another merchant's file is not there for this session.
    assert client.get(f"/api/v1/settlements/{theirs.pk}/lines/?format=csv").status_code == 404


def test_a_failed_payout_shows_its_failure_code(make_plan, settle):
    merchant = failing_account(MerchantFactory(payout=True))
    make_plan(merchant=merchant, total="100.00")
    settle()
    payout = Payout.objects.get(merchant=merchant)

    page = signed_in(merchant).get("/").content.decode()

    row = rows_of(section(page, "payouts"), "payout")[str(payout.pk)]
    assert 'data-status="FAILED"' in row
    assert '<code data-failure-code="account_closed">account_closed</code>' in row
    assert "*****0002" in row
    assert '<td class="num">95.70 USD</td>' in row
    assert 'id="failed-payout-note"' in page
    settlement = rows_of(section(page, "settlements"), "settlement")[str(payout.settlement_id)]
    assert 'data-payout-status="FAILED"' in settlement


def test_a_settlement_without_a_payout_says_so(make_plan, settle):
    merchant = MerchantFactory()  # no bank account on file: settled, not paid out
    make_plan(merchant=merchant, total="100.00")
    settle()

    page = signed_in(merchant).get("/").content.decode()

    row = rows_of(section(page, "settlements"), "settlement")[str(settlement_of(merchant).pk)]
    assert '<td class="num">95.70 USD</td>' in row
    assert "data-payout-status" not in row
    assert '<span class="muted">none</span>' in row
    assert "No payout yet" in section(page, "payouts")


def test_a_merchant_with_nothing_settled_sees_the_empty_state(merchant, make_plan):
    make_plan(merchant=merchant)

    page = signed_in(merchant).get("/").content.decode()

    assert "No settlement yet" in section(page, "settlements")
    assert "No payout yet" in section(page, "payouts")
    assert "csv-link" not in page


def test_customers_see_no_settlements(customer, make_plan, settle):
    make_plan(customer=customer)
    settle()

    page = signed_in(customer).get("/").content.decode()

    assert 'id="settlements"' not in page
    assert 'id="payouts"' not in page


def test_only_the_latest_settlements_and_payouts_are_listed_with_the_api_for_the_rest(make_plan, settle, monkeypatch):
    monkeypatch.setattr("ops.pages.portal.SETTLEMENTS_SHOWN", 2)
    monkeypatch.setattr("ops.pages.portal.PAYOUTS_SHOWN", 2)
    merchant = MerchantFactory(payout=True)
    for currency in ("USD", "EUR", "UZS"):
        make_plan(merchant=merchant, currency=currency)
    settle()

    page = signed_in(merchant).get("/").content.decode()

    settlements = section(page, "settlements")
    # The latest day first, then by currency.
    assert list(rows_of(settlements, "settlement")) == [
        str(settlement_of(merchant, currency).pk) for currency in ("EUR", "USD")
    ]
    assert 'The latest 2; every one through the API: <a href="/api/v1/settlements/"' in settlements
    payouts = section(page, "payouts")
    assert len(rows_of(payouts, "payout")) == 2
    assert 'The latest 2; every one through the API: <a href="/api/v1/payouts/"' in payouts
