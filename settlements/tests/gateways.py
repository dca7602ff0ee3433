"""Payout gateways for tests: stand-ins for a bank that misbehaves."""

import threading
import time

from config.tests.faults import inject
from settlements.gateways import FakePayoutGateway, PayoutResult


class TimingOutPayoutGateway:
    """A bank that never answers in time: every call raises ``TimeoutError``."""

    def payout(self, **kwargs) -> PayoutResult:
        inject("payout gateway timeout (no answer)")
        raise TimeoutError("payout gateway timed out")


class SlowPayoutGateway(FakePayoutGateway):
    """The fake bank, answering after a network's round trip (``DELAY`` seconds: a race's
    window), recording the idempotency key of every call."""

    DELAY = 0.05
    calls: list[str] = []
    lock = threading.Lock()

    def payout(self, *, amount, currency, account, account_name, idempotency_key) -> PayoutResult:
        with self.lock:
            self.calls.append(idempotency_key)
        time.sleep(self.DELAY)
        return super().payout(
            amount=amount,
            currency=currency,
            account=account,
            account_name=account_name,
            idempotency_key=idempotency_key,
        )
