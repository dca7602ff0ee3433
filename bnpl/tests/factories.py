"""Plans and late fees for tests, made through the services (never rows written past them)."""

from datetime import date, timedelta
from decimal import Decimal

from accounts.models import User
from accounts.tests.factories import MerchantFactory, UserFactory
from bnpl.models import LateFee, Plan
from bnpl.services.origination import plan_create
from bnpl.services.sweep import overdue_sweep


def plan_originated(
    *,
    total: str | Decimal = "500.00",
    count: int = 4,
    frequency: str = "MONTHLY",
    purchase_date: date | None = None,
    customer: User | None = None,
    merchant: User | None = None,
    currency: str = "USD",
) -> Plan:
    """A plan originated by ``plan_create``: installments, ledger entry and event."""
    return plan_create(
        customer=customer or UserFactory(),
        merchant=merchant or MerchantFactory(),
        total_amount=Decimal(total),
        installment_count=count,
        frequency=frequency,
        currency=currency,
        purchase_date=purchase_date,
    )


def late_fee_charged(plan: Plan) -> LateFee:
    """The first late fee of ``plan``'s first installment, charged by a sweep run on the day
    that installment is overdue past the grace days (settings as they are)."""
    from django.conf import settings

    first = plan.installments.order_by("sequence").first()
    overdue_sweep(today=first.due_date + timedelta(days=settings.BNPL_GRACE_DAYS + 1), late_fees=True)
    return LateFee.objects.get(installment=first, kind=LateFee.Kind.FIRST)
