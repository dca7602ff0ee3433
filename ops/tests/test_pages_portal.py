"""``/`` for signed-in customers and merchants: the customer's offers, plans, payment of an
installment, debt status and spending power; the merchant's plans by status. Each in a
fixed number of queries, whatever the number of plans."""

import re
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Installment, Plan
from bnpl.schedule import business_today
from bnpl.services.checkout import Offer, plan_offer
from bnpl.services.sweep import overdue_sweep
from bnpl.tests.factories import plan_originated
from config.tests.test_security_headers import assert_allowed_by_its_csp
from payments.models import Payment
from payments.tests.factories import payment_pending

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


def test_the_merchant_portal_reads_a_fixed_number_of_queries(merchant, make_plan):
    make_plan(merchant=merchant)
    client = signed_in(merchant)
    few = portal_queries(client)
    for _ in range(5):
        make_plan(merchant=merchant, customer=UserFactory())
        offered(UserFactory(), merchant)

    assert portal_queries(client) == few <= 6  # session, user, counts, page count, page


def test_the_merchant_pages_through_many_plans(merchant, make_plan, settings):
    customer = UserFactory(credit_limit=Decimal("100000.00"))
    plans = [make_plan(merchant=merchant, customer=customer, total="20.00") for _ in range(27)]

    first = signed_in(merchant).get("/").content.decode()
    second = signed_in(merchant).get("/?page=2").content.decode()

    assert len(re.findall(r'<tr data-plan="', first)) == 25
    assert "page 1 of 2" in first
    assert 'href="?page=2"' in first
    assert re.findall(r'<tr data-plan="(\d+)"', second) == [str(plans[1].pk), str(plans[0].pk)]
