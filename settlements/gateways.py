"""The payout gateway interface (money to a merchant's bank account), and the built-in
deterministic fake.

The gateway in use is ``settings.BNPL_PAYOUT_GATEWAY`` (a dotted path to a class). A gateway
must treat ``idempotency_key`` as banks' payout APIs do: the same key never pays twice, and
asking again answers what the first call did. A timeout or a dropped connection raises; the
payout stays PENDING and the reconcile task asks again with the same key.
"""

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

PAID, FAILED = "paid", "failed"


@dataclass(frozen=True)
class PayoutResult:
    status: str  # PAID or FAILED
    failure_code: str = ""
    reference: str = ""

    @property
    def paid(self) -> bool:
        return self.status == PAID


class PayoutGateway(Protocol):
    def payout(
        self, *, amount: Decimal, currency: str, account: str, account_name: str, idempotency_key: str
    ) -> PayoutResult:
        """Send ``amount`` to the bank ``account``; the same ``idempotency_key`` pays at most once."""
        ...


class FakePayoutGateway:
    """Deterministic stand-in for a bank: an account ending ``0002`` is closed
    (``account_closed``); any other is paid."""

    FAILURES = {"0002": "account_closed"}

    def payout(
        self, *, amount: Decimal, currency: str, account: str, account_name: str, idempotency_key: str
    ) -> PayoutResult:
        reference = "fake_payout_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]
        failure = self.FAILURES.get(account[-4:])
        if failure:
            return PayoutResult(FAILED, failure, reference)
        return PayoutResult(PAID, "", reference)


def get_payout_gateway() -> PayoutGateway:
    """The configured payout gateway (read at each payout: a few a day per merchant)."""
    return import_string(settings.BNPL_PAYOUT_GATEWAY)()
