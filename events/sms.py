"""Pluggable SMS backends, chosen by ``settings.BNPL_SMS_BACKEND`` (a dotted path).

A backend has ``send_messages(messages) -> int`` (how many were sent) and raises OSError
when the provider cannot be reached, like Django's email backends.
"""

import sys
from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

from accounts.masking import mask_phone


@dataclass(frozen=True)
class SmsMessage:
    to: str  # E.164
    body: str


class ConsoleSmsBackend:
    """Local development: writes each message to standard output, the number masked."""

    def send_messages(self, messages: list[SmsMessage]) -> int:
        for message in messages:
            sys.stdout.write(f"SMS to {mask_phone(message.to)}: {message.body}\n")
        sys.stdout.flush()
        return len(messages)


class LocmemSmsBackend:
    """Tests: keeps the messages in ``outbox`` (cleared between tests)."""

    outbox: list[SmsMessage] = []

    def send_messages(self, messages: list[SmsMessage]) -> int:
        type(self).outbox.extend(messages)
        return len(messages)


def get_sms_backend():
    """An instance of the configured SMS backend."""
    return import_string(settings.BNPL_SMS_BACKEND)()
