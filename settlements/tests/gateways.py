"""Payout gateways for tests: stand-ins for a bank that misbehaves."""

from settlements.gateways import PayoutResult


class TimingOutPayoutGateway:
    """A bank that never answers in time: every call raises ``TimeoutError``."""

    def payout(self, **kwargs) -> PayoutResult:
        raise TimeoutError("payout gateway timed out")
