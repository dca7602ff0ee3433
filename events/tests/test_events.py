"""Merchant events: recorded with their cause, listed with a cursor, delivered signed and
retried, never lost."""

import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.services.sweep import overdue_sweep
from events.models import Event, EventDelivery
from events.services import (
    backoff_seconds,
    event_deliver,
    event_record,
    event_redeliver,
    events_record_each,
    events_relay,
)

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events/"


@pytest.fixture
def merchant(db, settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_URLS = True  # the receiver listens on 127.0.0.1
    return MerchantFactory(webhook_secret="whsec_events_test")


def types(**filters) -> list[str]:
    return list(Event.objects.filter(**filters).order_by("id").values_list("type", flat=True))


def test_every_change_records_its_event_in_its_own_transaction(as_user, make_plan, merchant, operator):
    customer = UserFactory(credit_limit=Decimal("1000.00"))
    plan = make_plan(customer=customer, merchant=merchant, total="100.00", count=2)
    assert types(merchant=merchant) == ["plan.created"]
    event = Event.objects.get()
    assert event.data["plan_id"] == plan.pk
    assert event.data["total_amount"] == "100.00"
    assert event.data["customer_id"] == customer.user_id

    # A change that is refused records nothing (the event lives in its transaction).
    refused = as_user(merchant).post(
        "/api/v1/plans/", {"user_id": customer.user_id, "total_amount": "5000.00"}, format="json"
    )
    assert refused.status_code == 422
    assert Event.objects.count() == 1

    pay = as_user(customer).post(f"/api/v1/plans/{plan.pk}/pay/", {"amount": "100.00"}, format="json")
    assert pay.status_code == 201
    assert types(merchant=merchant) == ["plan.created", "installment.paid", "installment.paid", "plan.completed"]

    declined = UserFactory(card_last4="0002")
    second = make_plan(customer=declined, merchant=merchant, total="100.00", purchase_date=date(2026, 1, 1))
    assert (
        as_user(declined).post(f"/api/v1/plans/{second.pk}/pay/", {"amount": "10.00"}, format="json").status_code == 402
    )
    overdue_sweep(today=date(2026, 3, 5))  # installments 1 and 2 are past due
    for transaction_id, decision in (("rf-a", "approve"), ("rf-b", "reject")):
        body = {"plan_id": second.pk, "transaction_id": transaction_id, "amount": "10.00"}
        refund = as_user(merchant).post("/api/v1/refunds/", body, format="json").json()
        as_user(operator).post(f"/api/v1/refunds/{refund['id']}/{decision}/")
    assert types(merchant=merchant)[4:] == [
        "plan.created",
        "payment.failed",
        "installment.overdue",
        "installment.overdue",
        "refund.approved",
        "refund.rejected",
    ]
    overdue = Event.objects.filter(type="installment.overdue").order_by("id").first()
    assert (overdue.data["plan_id"], overdue.data["sequence"], overdue.data["status"]) == (second.pk, 1, "OVERDUE")
    assert Event.objects.get(type="payment.failed").data["decline_code"] == "card_declined"


def test_merchants_page_through_their_events_with_a_cursor(as_user, make_plan, merchant, operator):
    for _ in range(5):
        make_plan(merchant=merchant)
    make_plan(merchant=MerchantFactory())  # someone else's

    seen, url = [], f"{EVENTS}?page_size=2"
    while url:
        page = as_user(merchant).get(url)
        assert page.status_code == 200
        seen += page.json()["results"]
        url = page.json()["next"]
    assert len(seen) == 5
    assert [e["id"] for e in seen] == list(
        Event.objects.filter(merchant=merchant).order_by("-id").values_list("public_id", flat=True)
    ), "newest first, no repeats, none missed"
    assert {e["merchant_id"] for e in seen} == {merchant.user_id}

    one = as_user(merchant).get(f"{EVENTS}{seen[0]['id']}/")
    assert one.status_code == 200
    assert one.json()["type"] == "plan.created"
    foreign = Event.objects.exclude(merchant=merchant).get().public_id
    assert as_user(merchant).get(f"{EVENTS}{foreign}/").status_code == 404
    assert as_user(operator).get(f"{EVENTS}{foreign}/").status_code == 200
    assert len(as_user(operator).get(EVENTS, {"merchant_id": merchant.user_id}).json()["results"]) == 5
    assert as_user(merchant).get(EVENTS, {"type": "refund.approved"}).json()["results"] == []
    assert as_user(merchant).get(EVENTS, {"type": "nonsense"}).status_code == 400
    assert as_user(UserFactory()).get(EVENTS).status_code == 403


def test_a_delivery_failing_twice_with_500_succeeds_the_third_time(
    make_plan, merchant, receiver, settings, eager_tasks
):
    settings.BNPL_WEBHOOK_BACKOFF_BASE_SECONDS = 0  # retry at once: the schedule is tested below
    merchant.webhook_url = receiver.url
    merchant.save()
    receiver.statuses = [500, 500]
    make_plan(merchant=merchant)
    event = Event.objects.get()

    for _ in range(3):
        events_relay(grace_seconds=0)

    event.refresh_from_db()
    assert event.delivery_status == Event.Delivery.DELIVERED
    assert event.attempts == 3
    attempts = list(event.deliveries.order_by("number"))
    assert [(a.number, a.response_status, a.succeeded) for a in attempts] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert all(a.duration_ms >= 0 and a.url == receiver.url for a in attempts)
    assert receiver.verified("whsec_events_test") == [True, True, True]
    bodies = [json.loads(r["body"]) for r in receiver.received]
    assert {b["id"] for b in bodies} == {event.public_id}
    assert bodies[0]["type"] == "plan.created"
    assert bodies[0]["data"]["plan_id"] == event.data["plan_id"]
    assert receiver.received[0]["headers"]["BNPL-Event-Id"] == event.public_id
    # Delivered: nothing more happens, whoever asks.
    assert event_deliver(event_id=event.pk) is None
    assert events_relay(grace_seconds=0) == 0


def test_retries_back_off_exponentially_and_give_up_after_three_days(make_plan, merchant, receiver, settings):
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert backoff_seconds(20) == 6 * 3600
    merchant.webhook_url = receiver.url
    merchant.save()
    receiver.statuses = [503] * 100
    make_plan(merchant=merchant)
    event = Event.objects.get()
    assert event.give_up_at - event.created_at == timedelta(hours=72)

    started = timezone.now()
    event_deliver(event_id=event.pk)
    event.refresh_from_db()
    assert abs((event.next_attempt_at - started).total_seconds() - 60) < 5
    assert event_deliver(event_id=event.pk) is None, "not due yet: an early task does nothing"

    attempts = 1
    with time_machine.travel(started, tick=False) as clock:
        while event.delivery_status == Event.Delivery.PENDING:
            clock.move_to(event.next_attempt_at)
            event_deliver(event_id=event.pk)
            event.refresh_from_db()
            attempts += 1
    assert event.delivery_status == Event.Delivery.FAILED
    assert event.attempts == attempts == EventDelivery.objects.count()
    assert event.next_attempt_at <= event.give_up_at
    assert 15 <= attempts <= 25  # 60 s doubling to 6 h, over 72 h


def test_an_operator_redelivers_an_event_by_hand(
    make_plan, merchant, receiver, operator_client, eager_tasks, django_capture_on_commit_callbacks
):
    make_plan(merchant=merchant)
    event = Event.objects.get()
    event_deliver(event_id=event.pk)
    event.refresh_from_db()
    assert event.delivery_status == Event.Delivery.NO_ENDPOINT

    merchant.webhook_url = receiver.url
    merchant.save()
    page = operator_client.get(f"/admin/events/event/{event.pk}/change/")
    assert page.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        answer = operator_client.post(
            "/admin/events/event/", {"action": "redeliver", "_selected_action": [event.pk]}, follow=True
        )
    assert answer.status_code == 200

    event.refresh_from_db()
    assert event.delivery_status == Event.Delivery.DELIVERED
    assert list(event.deliveries.values_list("manual", "response_status")) == [(True, 200)]
    # The change page lists the attempts inline.
    assert receiver.url.encode() in operator_client.get(f"/admin/events/event/{event.pk}/change/").content


def test_an_event_delivered_again_after_delivery_is_redelivered_once(make_plan, merchant, receiver, eager_tasks):
    merchant.webhook_url = receiver.url
    merchant.save()
    make_plan(merchant=merchant)
    event = Event.objects.get()
    event_deliver(event_id=event.pk)
    event_redeliver(event_id=event.pk)
    event_deliver(event_id=event.pk, manual=True)
    event.refresh_from_db()
    assert event.delivery_status == Event.Delivery.DELIVERED
    assert event.attempts == 2


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9/hook", "non-public address"),
        ("http://10.1.2.3/hook", "non-public address"),
        ("ftp://example.com/hook", "http or https"),
    ],
)
def test_private_addresses_are_refused_outside_development(make_plan, merchant, settings, url, why):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_URLS = False
    merchant.webhook_url = url
    merchant.save()
    make_plan(merchant=merchant)

    attempt = event_deliver(event_id=Event.objects.get().pk)

    assert attempt.response_status is None
    assert not attempt.succeeded
    assert why in attempt.error


def test_a_redirect_is_a_failed_attempt_not_a_hop(make_plan, merchant, receiver):
    merchant.webhook_url = receiver.url
    merchant.save()
    receiver.statuses = [302]
    make_plan(merchant=merchant)
    attempt = event_deliver(event_id=Event.objects.get().pk)
    assert (attempt.response_status, attempt.succeeded) == (302, False)
    assert len(receiver.received) == 1


def test_merchants_set_their_webhook_url_and_customers_their_autopay(as_user, merchant, customer):
    answer = as_user(merchant).patch(
        "/api/v1/auth/me/", {"webhook_url": "https://shop.example.com/hooks"}, format="json"
    )
    assert answer.status_code == 200
    assert answer.json()["webhook_url"] == "https://shop.example.com/hooks"

    wrong_role = as_user(customer).patch("/api/v1/auth/me/", {"webhook_url": "https://x.example.com"}, format="json")
    assert wrong_role.status_code == 400
    assert "webhook_url" in wrong_role.json()["errors"]
    bad_url = as_user(merchant).patch("/api/v1/auth/me/", {"webhook_url": "javascript:alert(1)"}, format="json")
    assert bad_url.status_code == 400
    assert "webhook_url" in bad_url.json()["errors"]
    not_a_customer = as_user(merchant).patch("/api/v1/auth/me/", {"autopay": False}, format="json")
    assert not_a_customer.status_code == 400
    assert "autopay" in not_a_customer.json()["errors"]
    nothing = as_user(customer).patch("/api/v1/auth/me/", {}, format="json")
    assert nothing.status_code == 400

    off = as_user(customer).patch("/api/v1/auth/me/", {"autopay": False}, format="json")
    assert off.status_code == 200
    assert off.json()["autopay"] is False
    customer.refresh_from_db()
    assert customer.autopay is False


def test_the_sweeps_events_are_relayed_in_bulk(
    make_plan, merchant, receiver, eager_tasks, django_capture_on_commit_callbacks
):
    merchant.webhook_url = receiver.url
    merchant.save()
    silent = MerchantFactory()  # no endpoint
    for seller in (merchant, merchant, silent):
        make_plan(merchant=seller, purchase_date=date(2026, 1, 1))
    Event.objects.update(delivery_status=Event.Delivery.DELIVERED)  # plan.created: not under test

    with django_capture_on_commit_callbacks(execute=True):
        overdue_sweep(today=date(2026, 2, 5))  # the first installment of each plan

    overdue = Event.objects.filter(type=Event.Type.INSTALLMENT_OVERDUE)
    assert dict(overdue.values_list("merchant_id", "delivery_status")) == {
        merchant.pk: Event.Delivery.DELIVERED,
        silent.pk: Event.Delivery.NO_ENDPOINT,
    }
    assert overdue.filter(merchant=merchant).count() == 2
    assert len(receiver.received) == 2
    assert not EventDelivery.objects.filter(event__merchant=silent).exists()


def test_a_forged_cursor_is_a_404_not_a_500(as_user, merchant):
    answer = as_user(merchant).get(EVENTS, {"cursor": "cD1hYmM="})  # "p=abc"
    assert answer.status_code == 404
    assert answer["Content-Type"] == "application/problem+json"


def test_an_unusable_url_or_a_missing_secret_is_a_recorded_failed_attempt(make_plan, merchant, settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_URLS = False  # production: the address is checked first
    merchant.webhook_url = "https://shop.example.com:99999/hooks"  # passes the URL check, no port like it
    merchant.save()
    make_plan(merchant=merchant)
    attempt = event_deliver(event_id=Event.objects.get().pk)
    assert (attempt.succeeded, attempt.response_status) == (False, None)
    assert "ValueError" in attempt.error

    merchant.webhook_secret = ""
    merchant.save()
    event = Event.objects.get()
    Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    assert "no webhook secret" in event_deliver(event_id=event.pk).error


def test_an_event_past_its_window_is_given_up_without_another_attempt(make_plan, merchant, receiver):
    merchant.webhook_url = receiver.url
    merchant.save()
    make_plan(merchant=merchant)
    event = Event.objects.get()
    Event.objects.filter(pk=event.pk).update(give_up_at=timezone.now() - timedelta(seconds=1))

    assert event_deliver(event_id=event.pk) is None
    event.refresh_from_db()
    assert event.delivery_status == Event.Delivery.FAILED
    assert receiver.received == []


def test_a_refund_on_a_completed_plan_does_not_complete_it_twice(as_user, make_plan, merchant, customer, operator):
    plan = make_plan(customer=customer, merchant=merchant, total="100.00", count=2)
    as_user(customer).post(f"/api/v1/plans/{plan.pk}/pay/", {"amount": "100.00"}, format="json")
    body = {"plan_id": plan.pk, "transaction_id": "rf-late", "amount": "10.00"}
    refund = as_user(merchant).post("/api/v1/refunds/", body, format="json").json()
    as_user(operator).post(f"/api/v1/refunds/{refund['id']}/approve/")

    assert types(type=Event.Type.PLAN_COMPLETED) == ["plan.completed"]
    assert types(type=Event.Type.REFUND_APPROVED) == ["refund.approved"]


def test_created_after_in_any_offset_filters_in_utc(as_user, make_plan, merchant):
    make_plan(merchant=merchant)
    created = Event.objects.get(merchant=merchant).created_at

    # -19:06 is valid ISO 8601 but beyond what PostgreSQL takes as an offset: the filter
    # compares in UTC, so it is a plain (and correct) filter, not a 500.
    long_ago = as_user(merchant).get(EVENTS, {"created_after": "0912-04-20T06:36:16.9-19:06"})
    later = (created + timedelta(minutes=1)).astimezone(timezone.get_fixed_timezone(-(19 * 60 + 6)))
    after_it = as_user(merchant).get(EVENTS, {"created_after": later.isoformat()})

    assert long_ago.status_code == 200
    assert len(long_ago.json()["results"]) == 1
    assert after_it.status_code == 200
    assert after_it.json()["results"] == []


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_created_after_outside_the_calendar_in_utc_is_a_400_naming_it(as_user, merchant, instant):
    answer = as_user(merchant).get(EVENTS, {"created_after": instant})

    assert answer.status_code == 400
    assert answer["Content-Type"] == "application/problem+json"
    assert list(answer.json()["errors"]) == ["created_after"]


def test_an_event_is_recorded_as_the_orm_records_it(merchant, django_capture_on_commit_callbacks, monkeypatch):
    # PostgreSQL records it in one statement (the merchant's endpoint read by the insert);
    # SQLite through the ORM: the same rows, the same delivery queued.
    silent = MerchantFactory(webhook_url="")
    merchant.webhook_url = "https://merchant.example/hooks"
    merchant.save(update_fields=["webhook_url"])
    data = {"plan_id": 7, "amount": Decimal("1.50"), "at": "2026-12-05"}

    def recorded(together=False, **patch):
        for name, value in patch.items():
            monkeypatch.setattr(name, value)
        Event.objects.all().delete()
        with django_capture_on_commit_callbacks() as queued:
            if together:  # a batch's events, in one statement on PostgreSQL
                events_record_each(
                    events=[(owner.pk, Event.Type.INSTALLMENT_PAID, data) for owner in (merchant, silent)]
                )
            for owner in () if together else (merchant, silent):
                event_record(merchant_id=owner.pk, type=Event.Type.INSTALLMENT_PAID, data=data)
        rows = Event.objects.order_by("id").values(
            "merchant_id", "type", "data", "delivery_status", "attempts", "next_attempt_at", "created_at", "give_up_at"
        )
        times = ("created_at", "next_attempt_at", "give_up_at")
        shown = [row | {"due_now": row["next_attempt_at"] == row["created_at"]} for row in rows]
        windows = [row["give_up_at"] - row["created_at"] for row in rows]
        return [{k: v for k, v in row.items() if k not in times} for row in shown], windows, len(queued)

    written = recorded()
    assert recorded(together=True) == written
    orm = recorded(**{"events.services.postgresql": lambda: False})
    assert written == orm
    assert recorded(together=True) == orm
    assert [row["delivery_status"] for row in written[0]] == [Event.Delivery.PENDING, Event.Delivery.NO_ENDPOINT]
    assert written[0][0]["data"] == {"plan_id": 7, "amount": "1.50", "at": "2026-12-05"}
    assert written[2] == 1  # the delivery of the one with an endpoint
    assert all(row["due_now"] for row in written[0])
