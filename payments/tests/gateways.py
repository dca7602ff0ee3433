"""Gateways for tests: the fake card network, watched or made to misbehave (the only thing
outside the system that tests stand in for)."""

from decimal import Decimal

from payments.gateways import ChargeResult, FakeGateway


class RecordingGateway(FakeGateway):
    """The fake gateway, recording every charge it is asked for: ``(idempotency_key, amount)``."""

    charges: list[tuple[str, Decimal]] = []

    def charge(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        type(self).charges.append((idempotency_key, amount))
        return super().charge(amount=amount, currency=currency, card_token=card_token, idempotency_key=idempotency_key)


class OvercapturingGateway(FakeGateway):
    """Reports that it captured 3.00 more than asked (the customer overpaid at the network)."""

    EXTRA = Decimal("3.00")

    def charge(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        result = super().charge(
            amount=amount, currency=currency, card_token=card_token, idempotency_key=idempotency_key
        )
        return ChargeResult(result.status, result.decline_code, result.reference, captured=amount + self.EXTRA)


class TimeoutGateway(FakeGateway):
    """Never answers in time: whether the card was charged is unknown."""

    def charge(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        raise TimeoutError("the gateway did not answer in time")


class UndercapturingGateway(FakeGateway):
    """Reports that it captured 1.00 less than asked."""

    def charge(self, *, amount, currency, card_token, idempotency_key) -> ChargeResult:
        result = super().charge(
            amount=amount, currency=currency, card_token=card_token, idempotency_key=idempotency_key
        )
        return ChargeResult(result.status, result.decline_code, result.reference, captured=amount - Decimal("1.00"))
