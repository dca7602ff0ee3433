"""Notifications by email and SMS: at most once per cause, failures recorded, numbers masked."""

from datetime import date

import pytest
from django.core import mail

from accounts.tests.factories import UserFactory
from bnpl.models import Reminder
from bnpl.services.reminders import reminders_send
from bnpl.services.sweep import overdue_sweep
from events.models import Notification
from events.notifications import notifications_queue, notifications_send
from events.sms import ConsoleSmsBackend, SmsMessage

pytestmark = pytest.mark.django_db


def receipt(customer, cause="payment:1"):
    return (customer.pk, Notification.Kind.PAYMENT_RECEIPT, cause, "Payment received: 25.00 USD", "Thank you.")


def test_a_cause_is_told_once_per_channel_however_often_it_is_queued_or_sent(customer, sms_outbox):
    notifications_queue(items=[receipt(customer)], send=False)
    notifications_queue(items=[receipt(customer)], send=False)  # the same cause again (a retried task)

    assert Notification.objects.count() == 2  # email and SMS
    first = notifications_send()
    second = notifications_send()

    assert (first["sent"], second["sent"]) == (2, 0)
    assert [m.subject for m in mail.outbox] == ["Payment received: 25.00 USD"]
    assert [(m.to, m.body) for m in sms_outbox] == [(customer.phone_number, "Payment received: 25.00 USD")]
    assert set(Notification.objects.values_list("status", flat=True)) == {Notification.Status.SENT}


def test_a_payment_sends_a_receipt_after_commit(
    as_user, make_plan, customer, sms_outbox, django_capture_on_commit_callbacks, eager_tasks
):
    plan = make_plan(customer=customer)
    with django_capture_on_commit_callbacks(execute=True):
        paid = as_user(customer).post(f"/api/v1/plans/{plan.pk}/pay/", {"amount": "50.00"}, format="json")
    assert paid.status_code == 201
    assert [m.subject for m in mail.outbox] == [f"Payment received: 50.00 USD for plan #{plan.pk}"]
    assert len(sms_outbox) == 1
    row = Notification.objects.get(channel=Notification.Channel.EMAIL)
    assert (row.kind, row.cause, row.status) == ("PAYMENT_RECEIPT", f"payment:{paid.json()['id']}", "SENT")


def test_a_missing_address_is_skipped_and_a_dead_smtp_server_is_recorded_not_retried(settings, sms_outbox):
    no_phone = UserFactory(phone_number="")
    notifications_queue(items=[receipt(no_phone)], send=False)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1  # nothing listens

    counts = notifications_send()

    assert (counts["sent"], counts["failed"]) == (0, 1)  # the SMS was skipped when recorded: no number
    email = Notification.objects.get(channel=Notification.Channel.EMAIL)
    assert email.status == Notification.Status.FAILED
    assert email.error
    assert Notification.objects.get(channel=Notification.Channel.SMS).status == Notification.Status.SKIPPED
    assert notifications_send()["failed"] == 0, "a failed message is not sent again"


def test_overdue_notices_go_by_email_and_sms_once(make_plan, sms_outbox):
    customer = UserFactory(email="late@example.com")
    make_plan(customer=customer, purchase_date=date(2026, 4, 30))  # due 5/30
    overdue_sweep(today=date(2026, 6, 15))

    assert reminders_send(today=date(2026, 6, 15))["overdue"] == 1
    assert reminders_send(today=date(2026, 6, 16))["overdue"] == 0

    assert [m.to for m in mail.outbox] == [["late@example.com"]]
    assert len(sms_outbox) == 1
    assert "overdue" in sms_outbox[0].body
    assert Notification.objects.filter(kind=Notification.Kind.OVERDUE).count() == 2


def test_the_console_sms_backend_masks_the_number(capsys):
    ConsoleSmsBackend().send_messages([SmsMessage(to="+998901234567", body="Payment received")])
    assert capsys.readouterr().out == "SMS to +998****4567: Payment received\n"


def test_a_reminder_nobody_could_receive_is_failed(make_plan):
    make_plan(customer=UserFactory(email="", phone_number=""), purchase_date=date(2026, 5, 17))  # due 6/17

    assert reminders_send(today=date(2026, 6, 15)) == {"due_soon": 1, "overdue": 0, "failed": 1}
    assert Reminder.objects.get().outcome == Reminder.Outcome.FAILED
