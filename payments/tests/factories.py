"""Payments for tests, made through the payment services with the built-in fake gateway."""

from decimal import Decimal

from accounts.models import User
from bnpl.models import Installment, Plan
from payments.models import Payment
from payments.services import GatewayUnavailable, payment_attempt


def payment_made(
    plan: Plan,
    amount: str | Decimal | None = None,
    *,
    installment: Installment | None = None,
    payer: User | None = None,
) -> Payment:
    """A payment of ``amount`` (everything payable when None) on ``plan``, or on one
    installment, by its customer (or ``payer``): SUCCEEDED, or FAILED for a declined card."""
    return payment_attempt(
        plan_id=plan.pk,
        payer=payer or plan.customer,
        amount=None if amount is None else Decimal(amount),
        installment_id=installment.pk if installment else None,
    )


def payment_pending(settings, plan: Plan, amount: str | Decimal | None = None, **what) -> Payment:
    """A payment left PENDING on ``plan`` (the gateway did not answer): its cents reserved
    until it is resumed. ``settings`` is pytest-django's fixture; the gateway is the fake
    one again afterwards."""
    gateway = settings.BNPL_PAYMENT_GATEWAY
    settings.BNPL_PAYMENT_GATEWAY = "payments.tests.gateways.TimeoutGateway"
    try:
        payment_made(plan, amount, **what)
    except GatewayUnavailable as pending:
        return Payment.objects.get(pk=pending.extra["payment_id"])
    finally:
        settings.BNPL_PAYMENT_GATEWAY = gateway
    raise AssertionError("the gateway answered: no payment was left pending")
