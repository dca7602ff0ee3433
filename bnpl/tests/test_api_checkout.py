"""Consent over REST (DESIGN §5, §6): the merchant's offer, the customer's confirm or decline,
the merchant's capture or void; references, wrong states, foreign plans and bad input."""

import re
from decimal import Decimal

import pytest

from accounts.models import User
from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import Installment, Plan
from events.models import Event
from ledger.models import JournalEntry
from ledger.tests.books import money_state

pytestmark = pytest.mark.django_db

PLANS = "/api/v1/plans/"


@pytest.fixture
def offer_of(as_user, merchant, customer):
    """``offer_of(**terms)``: the JSON of an offer ``merchant`` made to ``customer``."""

    def offer(**terms):
        body = {"user_id": customer.user_id, "total_amount": "300.00", "installment_count": 3} | terms
        response = as_user(merchant).post(PLANS, body, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    return offer


def _post(client, plan_id, action, body=None, **headers):
    return client.post(f"{PLANS}{plan_id}/{action}/", body or {}, format="json", **headers)


def test_decline_ends_the_offer_and_frees_the_credit(as_user, customer, merchant, offer_of):
    customer.credit_limit = Decimal("300.00")
    customer.save()
    offer = offer_of()
    blocked = as_user(merchant).post(PLANS, {"user_id": customer.user_id, "total_amount": "1.00"}, format="json")
    assert blocked.status_code == 422  # the offer holds the whole limit

    declined = _post(as_user(customer), offer["id"], "decline")

    assert declined.status_code == 200, declined.content
    assert declined.json()["status"] == "DECLINED"
    assert declined.json()["checkout_url"] is None
    assert not Installment.objects.exists()
    assert not JournalEntry.objects.exists()
    assert Event.objects.filter(type="plan.declined").count() == 1
    freed = as_user(merchant).post(PLANS, {"user_id": customer.user_id, "total_amount": "1.00"}, format="json")
    assert freed.status_code == 201


def test_manual_capture_in_part_splits_the_schedule_over_what_was_captured(as_user, customer, merchant, offer_of):
    offer = offer_of(capture_mode="manual", total_amount="500.00")

    authorized = _post(as_user(customer), offer["id"], "confirm")
    assert authorized.status_code == 200, authorized.content
    assert authorized.json()["status"] == "AUTHORIZED"
    assert authorized.json()["expires_at"] is not None
    assert not JournalEntry.objects.exists()

    captured = _post(as_user(merchant), offer["id"], "capture", {"amount": "200.00"})

    assert captured.status_code == 200, captured.content
    body = captured.json()
    assert (body["status"], body["total_amount"], body["authorized_amount"]) == ("ACTIVE", "200.00", "500.00")
    assert [i["amount_due"] for i in body["installments"]] == ["66.67", "66.67", "66.66"]
    entry = JournalEntry.objects.get(kind="ORIGINATION", plan_id=offer["id"])
    assert [(p.account.code, p.amount) for p in entry.postings.select_related("account").order_by("id")] == [
        ("customer_receivable", Decimal("200.00")),
        ("merchant_payable", Decimal("-200.00")),
        ("merchant_payable", Decimal("8.30")),  # the fee on the 200.00 captured: 4 % + 0.30
        ("merchant_fee_income", Decimal("-8.30")),
    ]
    assert Event.objects.filter(type="plan.captured").count() == 1


def test_void_by_an_operator(as_user, customer, operator, offer_of):
    offer = offer_of(capture_mode="manual")
    _post(as_user(customer), offer["id"], "confirm")

    voided = _post(as_user(operator), offer["id"], "void")

    assert voided.status_code == 200, voided.content
    assert voided.json()["status"] == "VOIDED"
    assert Event.objects.filter(type="plan.voided").count() == 1
    assert not JournalEntry.objects.exists()


@pytest.mark.parametrize(
    ("setup", "who", "action", "code"),
    [
        ("confirmed", "customer", "confirm", "plan_not_pending"),
        ("confirmed", "customer", "decline", "plan_not_pending"),
        ("declined", "customer", "confirm", "plan_not_pending"),
        ("pending", "merchant", "capture", "plan_not_authorized"),
        ("pending", "merchant", "void", "plan_not_authorized"),
        ("confirmed", "merchant", "capture", "plan_not_authorized"),
        ("voided", "merchant", "capture", "plan_not_authorized"),
        ("captured", "merchant", "void", "plan_not_authorized"),
    ],
)
def test_a_transition_from_the_wrong_state_is_a_409_that_changes_nothing(
    as_user, customer, merchant, offer_of, setup, who, action, code
):
    manual = setup in ("voided", "captured")
    offer = offer_of(capture_mode="manual" if manual else "automatic")
    steps = {
        "pending": [],
        "confirmed": [("customer", "confirm")],
        "declined": [("customer", "decline")],
        "voided": [("customer", "confirm"), ("merchant", "void")],
        "captured": [("customer", "confirm"), ("merchant", "capture")],
    }[setup]
    actors = {"customer": customer, "merchant": merchant}
    for actor, step in steps:
        assert _post(as_user(actors[actor]), offer["id"], step).status_code == 200
    before, events = money_state(), Event.objects.count()

    response = _post(as_user(actors[who]), offer["id"], action)

    assert response.status_code == 409, response.content
    assert response.json()["code"] == code
    assert money_state() == before
    assert Event.objects.count() == events


def test_a_lapsed_offer_cannot_be_confirmed_even_before_the_expiry_task_ran(as_user, customer, offer_of):
    offer = offer_of()
    Plan.objects.filter(pk=offer["id"]).update(expires_at="2000-01-01T00:00:00Z")

    response = _post(as_user(customer), offer["id"], "confirm")

    assert response.status_code == 409
    assert response.json()["code"] == "plan_not_pending"
    assert response.json()["plan_status"] == "EXPIRED"
    assert Plan.objects.get(pk=offer["id"]).status == Plan.Status.PENDING  # the task's to change


def test_confirm_rechecks_debt_and_credit_and_shows_the_customer_their_figures(
    as_user, customer, merchant, offer_of, make_plan
):
    offer = offer_of(total_amount="300.00")
    make_plan(customer=customer, merchant=merchant, total="200.00")  # made in the back office since the offer
    User.objects.filter(pk=customer.pk).update(credit_limit=Decimal("400.00"))  # and the limit lowered

    declined = _post(as_user(customer), offer["id"], "confirm")

    assert declined.status_code == 422
    body = declined.json()
    assert body["code"] == "credit_declined"
    assert (body["currency"], body["credit_limit"], body["outstanding"], body["reserved"], body["available"]) == (
        "USD",
        "400.00",
        "200.00",
        "0.00",
        "200.00",
    )
    User.objects.filter(pk=customer.pk).update(status=User.Status.DEBT_USER, credit_limit=Decimal("10000"))
    debtor = _post(as_user(customer), offer["id"], "confirm")
    assert debtor.status_code == 403
    assert debtor.json()["detail"] == "Users with DEBT_USER status cannot create new BNPL plans"
    assert Plan.objects.get(pk=offer["id"]).status == Plan.Status.PENDING


@pytest.mark.parametrize("action", ["confirm", "decline"])
def test_another_customers_offer_is_a_404(as_user, other_customer, offer_of, action):
    offer = offer_of()
    before = money_state()

    response = _post(as_user(other_customer), offer["id"], action)

    assert response.status_code == 404
    assert money_state() == before


@pytest.mark.parametrize("action", ["capture", "void"])
def test_another_merchants_authorization_is_a_404(as_user, customer, offer_of, action):
    offer = offer_of(capture_mode="manual")
    _post(as_user(customer), offer["id"], "confirm")
    before = money_state()

    response = _post(as_user(MerchantFactory()), offer["id"], action)

    assert response.status_code == 404
    assert money_state() == before


@pytest.mark.parametrize(
    ("body", "status", "field_or_code"),
    [
        ({"amount": "300.01"}, 422, "capture_exceeds_authorized"),
        ({"amount": "0.02"}, 400, "amount"),  # less than a cent per installment
        ({"amount": "0"}, 400, "amount"),
        ({"amount": "ten"}, 400, "amount"),
        ({"amount": "1.001"}, 400, "amount"),
        ({"amount": "100", "currency": "EUR"}, 400, "currency"),
    ],
)
def test_bad_captures_name_the_field_and_change_nothing(
    as_user, customer, merchant, offer_of, body, status, field_or_code
):
    offer = offer_of(capture_mode="manual")
    _post(as_user(customer), offer["id"], "confirm")
    before = money_state()

    response = _post(as_user(merchant), offer["id"], "capture", body)

    assert response.status_code == status, response.content
    problem = response.json()
    assert field_or_code in (problem.get("errors") or {}) or problem["code"] == field_or_code
    assert money_state() == before


def test_confirm_takes_no_fields(as_user, customer, offer_of):
    offer = offer_of()
    response = _post(as_user(customer), offer["id"], "confirm", {"amount": "1.00"})
    assert response.status_code == 400
    assert "amount" in response.json()["errors"]
    assert Plan.objects.get(pk=offer["id"]).status == Plan.Status.PENDING


def test_the_same_reference_returns_the_plan_and_other_terms_are_a_409(as_user, merchant, customer, offer_of):
    first = offer_of(merchant_reference="order-7")

    again = as_user(merchant).post(
        PLANS,
        {
            "user_id": customer.user_id,
            "total_amount": "300.00",
            "installment_count": 3,
            "merchant_reference": "order-7",
        },
        format="json",
    )
    other = as_user(merchant).post(
        PLANS,
        {
            "user_id": customer.user_id,
            "total_amount": "301.00",
            "installment_count": 3,
            "merchant_reference": "order-7",
        },
        format="json",
    )
    elsewhere = as_user(MerchantFactory()).post(
        PLANS, {"user_id": customer.user_id, "total_amount": "10.00", "merchant_reference": "order-7"}, format="json"
    )

    assert again.status_code == 200
    assert again.json() == first
    assert other.status_code == 409
    assert other.json()["code"] == "merchant_reference_conflict"
    assert elsewhere.status_code == 201  # references are per merchant
    assert Plan.objects.count() == 2
    found = as_user(merchant).get(PLANS, {"merchant_reference": "order-7"}).json()
    assert [plan["id"] for plan in found["results"]] == [first["id"]]


def test_confirm_with_an_idempotency_key_replays(as_user, customer, offer_of):
    offer = offer_of()
    client = as_user(customer)

    first = _post(client, offer["id"], "confirm", HTTP_IDEMPOTENCY_KEY="confirm-1")
    second = _post(client, offer["id"], "confirm", HTTP_IDEMPOTENCY_KEY="confirm-1")

    assert first.status_code == second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert JournalEntry.objects.filter(kind="ORIGINATION").count() == 1


@pytest.mark.parametrize("status", ["pending", "authorized", "declined"])
def test_a_plan_not_captured_is_neither_paid_nor_refunded(as_user, customer, merchant, offer_of, status):
    offer = offer_of(capture_mode="manual" if status == "authorized" else "automatic")
    if status == "authorized":
        _post(as_user(customer), offer["id"], "confirm")
    if status == "declined":
        _post(as_user(customer), offer["id"], "decline")
    before = money_state()

    paid = as_user(customer).post(f"{PLANS}{offer['id']}/pay/", {"amount": "10.00"}, format="json")
    refunded = as_user(merchant).post(
        "/api/v1/refunds/",
        {"plan_id": offer["id"], "transaction_id": "rf-1", "amount": "10.00", "reason": "x"},
        format="json",
    )

    assert (paid.status_code, paid.json()["code"]) == (409, "plan_not_payable")
    assert (refunded.status_code, refunded.json()["code"]) == (409, "plan_not_refundable")
    assert money_state() == before


def test_an_offer_tells_the_customer_with_the_checkout_link(offer_of):
    from events.models import Notification

    offer = offer_of()

    sent = Notification.objects.filter(kind=Notification.Kind.OFFER)
    assert sorted(sent.values_list("channel", flat=True)) == ["EMAIL", "SMS"]
    assert all(offer["checkout_url"] in body for body in sent.values_list("body", flat=True))


def test_only_the_customer_confirms(as_user, merchant, operator, offer_of):
    offer = offer_of()
    assert _post(as_user(merchant), offer["id"], "confirm").status_code == 403
    assert _post(as_user(operator), offer["id"], "confirm").status_code == 403
    assert Plan.objects.get(pk=offer["id"]).status == Plan.Status.PENDING


def test_customers_see_their_offers_merchants_see_theirs(as_user, customer, other_customer, merchant, offer_of):
    offer = offer_of()
    assert as_user(customer).get(f"{PLANS}{offer['id']}/").status_code == 200
    assert as_user(other_customer).get(f"{PLANS}{offer['id']}/").status_code == 404
    listed = as_user(merchant).get(PLANS, {"status": "PENDING"}).json()["results"]
    assert [plan["id"] for plan in listed] == [offer["id"]]


def test_a_customer_in_another_currency_keeps_the_limit_of_each(as_user, merchant, customer, offer_of):
    customer.credit_limit = Decimal("300.00")
    customer.save()
    offer_of(currency="USD")

    euros = as_user(merchant).post(
        PLANS, {"user_id": customer.user_id, "total_amount": "300.00", "currency": "EUR"}, format="json"
    )
    more_dollars = as_user(merchant).post(
        PLANS, {"user_id": customer.user_id, "total_amount": "0.04", "currency": "USD"}, format="json"
    )

    assert euros.status_code == 201
    assert more_dollars.status_code == 422


def test_unknown_customer_is_not_enumerable(as_user, merchant):
    taken = UserFactory(credit_limit=Decimal("0.00"))
    answers = [
        as_user(merchant).post(PLANS, {"user_id": user_id, "total_amount": "10.00"}, format="json")
        for user_id in (taken.user_id, "usr-does-not-exist")
    ]
    assert answers[0].json() == answers[1].json()


@pytest.mark.breaks_ledger  # an installment written past the services, on purpose
def test_the_ledger_check_finds_installments_on_a_plan_never_agreed_to(offer_of):
    from datetime import date

    from ledger.checks import ledger_check

    offer = offer_of()
    plan = Plan.objects.get(pk=offer["id"])
    Installment.objects.create(plan=plan, customer_id=plan.customer_id, sequence=1, amount_due=1, due_date=date.today())

    report = ledger_check(record=False)

    assert f"plan {plan.pk} is PENDING and has installments" in report.breaches


def _statements(captured) -> list[str]:
    """The statements a request sent, without the savepoints that bracket its blocks."""
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


# Each request, past its authentication (the token's user is kept a few seconds, so the
# second request of a client reads none): the Idempotency-Key's claim and kept answer, and
# for the offer the customer named and locked in one statement, its credit, then the plan
# with its event and notifications; for the confirm the plan and its customer locked in one
# statement (with its merchant's id and price), its credit, then the plan made ACTIVE with
# its installments, entry and event. On SQLite the rows the one statements write are written
# by the ORM, one by one. On PostgreSQL neither request sets a savepoint inside the key's
# transaction (their refusals come before their writes: core.db.atomic_refusing_first).
# A statement that reads plans by their id (with their parties or not), not the credit's sums.
PLAN_READ = re.compile(r"^SELECT .* FROM bnpl_plan( p)? .*WHERE \(?(bnpl_plan\.id|p\.id) = \d+")
OFFER_STATEMENTS = {"postgresql": 5, "sqlite": 9}
CONFIRM_STATEMENTS = {"postgresql": 5, "sqlite": 11}


def test_an_offer_and_its_confirm_take_a_fixed_number_of_statements(as_user, customer, merchant):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    seller, buyer = as_user(merchant), as_user(customer)
    counts = []
    for n in range(3):
        body = {"user_id": customer.user_id, "total_amount": "30.00", "merchant_reference": f"order-{n}"}
        with CaptureQueriesContext(connection) as offer:
            offered = seller.post(PLANS, body, format="json", HTTP_IDEMPOTENCY_KEY=f"offer-{n}")
        assert offered.status_code == 201, offered.content
        with CaptureQueriesContext(connection) as confirm:
            confirmed = _post(buyer, offered.json()["id"], "confirm", HTTP_IDEMPOTENCY_KEY=f"confirm-{n}")
        assert confirmed.status_code == 200, confirmed.content
        counts.append((len(_statements(offer)), len(_statements(confirm))))
        if connection.vendor == "postgresql":
            # One block each: the key's transaction (a savepoint here, inside the test's own).
            for captured in (offer, confirm):
                sent = [q["sql"] for q in captured.captured_queries]
                assert len([sql for sql in sent if sql.startswith("SAVEPOINT")]) == 1, sent
        if n:
            # Nothing reads the installments of one plan (a pending plan has none; the confirm
            # wrote them), nor the plan just written.
            for captured, plan_reads in ((offer, 0), (confirm, 1)):  # the confirm's: the lock
                plain = [" ".join(statement.replace('"', "").split()) for statement in _statements(captured)]
                assert not [s for s in plain if "FROM bnpl_installment WHERE" in s], plain
                assert len([s for s in plain if PLAN_READ.search(s)]) == plan_reads, plain

    vendor = connection.vendor
    # The first pair also reads its token users (and the process, once, the ledger's accounts).
    assert counts[1:] == [(OFFER_STATEMENTS[vendor], CONFIRM_STATEMENTS[vendor])] * 2, [
        _statements(offer),
        _statements(confirm),
    ]


@pytest.mark.parametrize("mode", ["automatic", "manual"])
def test_the_confirms_answer_is_the_plan_as_stored(as_user, customer, merchant, offer_of, mode):
    """The confirm answers the plan it made without reading it back: what a read gives."""
    offer = offer_of(capture_mode=mode, total_amount="100.01")

    confirmed = _post(as_user(customer), offer["id"], "confirm")

    assert confirmed.status_code == 200, confirmed.content
    assert confirmed.json()["status"] == ("ACTIVE" if mode == "automatic" else "AUTHORIZED")
    assert confirmed.json() == as_user(customer).get(f"{PLANS}{offer['id']}/").json()
    assert confirmed.json() == as_user(merchant).get(f"{PLANS}{offer['id']}/").json()


@pytest.mark.parametrize("state", ["active", "declined"])
def test_another_customers_plan_is_a_404_whatever_its_state_and_body(
    as_user, customer, other_customer, offer_of, state
):
    offer = offer_of()
    _post(as_user(customer), offer["id"], "confirm" if state == "active" else "decline")
    before = money_state()

    for body in (None, {"amount": "1.00"}):  # a body it does not take is still a 404
        response = _post(as_user(other_customer), offer["id"], "confirm", body)
        assert response.status_code == 404, response.content
    for pk in ("999999999", "1²", "9" * 19):
        assert _post(as_user(customer), pk, "confirm").status_code == 404
    assert money_state() == before
