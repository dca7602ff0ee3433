"""Settlement helpers for tests: made through the services."""

from datetime import date

from bnpl.schedule import business_today
from settlements.models import Settlement, SettlementRun
from settlements.services.settle import settle_merchants


def settled(day: date | None = None, **kwargs) -> SettlementRun:
    """Run the settlement for ``day`` (today by default: what was posted so far)."""
    return settle_merchants(day=day or business_today(), **kwargs)


def settlement_of(merchant, currency: str = "USD", day: date | None = None) -> Settlement:
    return Settlement.objects.get(merchant=merchant, currency=currency, business_date=day or business_today())
