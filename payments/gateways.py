"""The payment gateway interface, and the built-in deterministic fake gateway.

The gateway in use is ``settings.BNPL_PAYMENT_GATEWAY`` (a dotted path to a class), so a
real one plugs in without touching the services. A gateway must treat ``idempotency_key``
as the card networks do: the same key never charges twice.
"""

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from accounts.models import User

SUCCEEDED, FAILED = "succeeded", "failed"


@dataclass(frozen=True)
class ChargeResult:
    status: str  # SUCCEEDED or FAILED
    decline_code: str = ""
    reference: str = ""
    # What was actually captured when it differs from what was asked (an overpayment the
    # gateway reports); None means exactly the amount asked.
    captured: Decimal | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED


class Gateway(Protocol):
    def charge(self, *, amount: Decimal, currency: str, card_token: str, idempotency_key: str) -> ChargeResult:
        """Charge the card behind ``card_token``; the same ``idempotency_key`` charges at most once."""
        ...

    def refund(self, *, amount: Decimal, currency: str, card_token: str, idempotency_key: str) -> ChargeResult:
        """Pay ``amount`` back to the card; the same ``idempotency_key`` pays at most once."""
        ...


class FakeGateway:
    """Deterministic stand-in for a card network: a card ending 0002 is declined
    (``card_declined``), 9995 has ``insufficient_funds``, any other card is charged."""

    DECLINES = {"0002": "card_declined", "9995": "insufficient_funds"}

    def charge(self, *, amount: Decimal, currency: str, card_token: str, idempotency_key: str) -> ChargeResult:
        last4 = User.objects.filter(card_token=card_token).values_list("card_last4", flat=True).first()
        if last4 is None:
            return ChargeResult(FAILED, "invalid_card_token")
        reference = "fake_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]
        if last4 in self.DECLINES:
            return ChargeResult(FAILED, self.DECLINES[last4], reference)
        return ChargeResult(SUCCEEDED, "", reference)

    def refund(self, *, amount: Decimal, currency: str, card_token: str, idempotency_key: str) -> ChargeResult:
        """Refunds to a known card always go through."""
        if not User.objects.filter(card_token=card_token).exists():
            return ChargeResult(FAILED, "invalid_card_token")
        return ChargeResult(SUCCEEDED, "", "fake_refund_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20])


@cache
def _gateway_class(path: str) -> type:
    return import_string(path)


def get_gateway() -> Gateway:
    """The configured gateway."""
    return _gateway_class(settings.BNPL_PAYMENT_GATEWAY)()
