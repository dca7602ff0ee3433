from datetime import date, timedelta

import pytest
from django.core import mail

from accounts.tests.factories import UserFactory
from bnpl.models import Reminder
from bnpl.services.reminders import reminders_send
from bnpl.services.sweep import overdue_sweep

pytestmark = pytest.mark.django_db

TODAY = date(2026, 6, 15)


def test_due_soon_and_overdue_reminders_are_sent_once(make_plan, settings):
    settings.BNPL_DUE_SOON_DAYS = 3
    soon = make_plan(customer=UserFactory(email="soon@example.com"), purchase_date=date(2026, 5, 17))  # due 6/17
    make_plan(purchase_date=date(2026, 5, 25))  # due 6/25: not yet
    make_plan(customer=UserFactory(email="late@example.com"), purchase_date=date(2026, 4, 30))  # due 5/30
    overdue_sweep(today=TODAY)

    sent = reminders_send(today=TODAY)

    assert sent == {"due_soon": 1, "overdue": 1, "failed": 0}
    assert sorted(m.to[0] for m in mail.outbox) == ["late@example.com", "soon@example.com"]
    assert any("is due on 2026-06-17" in m.subject for m in mail.outbox)
    assert any("overdue" in m.subject for m in mail.outbox)
    assert Reminder.objects.filter(installment__plan=soon, kind="DUE_SOON").count() == 1

    assert reminders_send(today=TODAY) == {"due_soon": 0, "overdue": 0, "failed": 0}
    assert reminders_send(today=TODAY + timedelta(days=1)) == {"due_soon": 0, "overdue": 0, "failed": 0}
    assert len(mail.outbox) == 2


def test_a_failed_send_is_recorded_and_not_retried(make_plan, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1  # no SMTP server there
    make_plan(purchase_date=date(2026, 5, 17))

    assert reminders_send(today=TODAY) == {"due_soon": 1, "overdue": 0, "failed": 1}
    assert Reminder.objects.get().outcome == Reminder.Outcome.FAILED
    assert reminders_send(today=TODAY)["due_soon"] == 0
