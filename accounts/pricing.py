"""A merchant's price for a plan sold (DESIGN §6): the effective percent and fixed part, and
the one place where a fee, and the share of it a refund returns, is computed.

A merchant row's ``fee_percent`` and ``fee_fixed`` are empty unless an operator set them:
an empty one is the settings' default (``BNPL_MERCHANT_FEE_PERCENT``,
``BNPL_MERCHANT_FEE_FIXED``) as it is when the fee is charged, so changing a default reprices
every merchant without a price of its own. The fee is charged once, when a plan becomes
ACTIVE, and stored on the plan: a later change of price never touches a plan already active.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import connection

from accounts.models import User
from core.db import postgresql
from core.money import ZERO, to_money


@dataclass(frozen=True)
class MerchantPricing:
    """The effective price: ``fee_percent`` of the plan total plus ``fee_fixed``."""

    fee_percent: Decimal
    fee_fixed: Decimal


def merchant_pricing(*, fee_percent: Decimal | None, fee_fixed: Decimal | None) -> MerchantPricing:
    """The effective price of a merchant row's values (empty: the settings' default)."""
    return MerchantPricing(
        fee_percent=settings.BNPL_MERCHANT_FEE_PERCENT if fee_percent is None else fee_percent,
        fee_fixed=settings.BNPL_MERCHANT_FEE_FIXED if fee_fixed is None else fee_fixed,
    )


def merchant_pricing_of(user: User) -> MerchantPricing | None:
    """``user``'s effective price as its row was read, or None when it is not a merchant."""
    if not user.is_merchant:
        return None
    return merchant_pricing(fee_percent=user.fee_percent, fee_fixed=user.fee_fixed)


_USERS = User._meta.db_table
_PRICING_SQL = f"SELECT id, fee_percent, fee_fixed FROM {_USERS} WHERE id = ANY(%s)"  # noqa: S608  # nosec B608


def merchant_pricings(merchant_ids: list[int] | set[int]) -> dict[int, MerchantPricing]:
    """The effective price of each merchant in ``merchant_ids``, read now (one statement): a
    fee is charged at the price committed, never at one a request's cached user row holds.
    Written out on PostgreSQL because it runs on every activation (the ORM composes slower
    than this runs)."""
    if postgresql():
        with connection.cursor() as cursor:
            cursor.execute(_PRICING_SQL, [list(merchant_ids)])
            rows = cursor.fetchall()
    else:
        rows = User.objects.filter(pk__in=merchant_ids).values_list("pk", "fee_percent", "fee_fixed")
    return {pk: merchant_pricing(fee_percent=percent, fee_fixed=fixed) for pk, percent, fixed in rows}


def merchant_fee(*, total: Decimal, pricing: MerchantPricing) -> Decimal:
    """The merchant's fee for a plan of ``total``: ``total * fee_percent / 100`` rounded half
    up to the cent, plus ``fee_fixed``; never above ``total`` (a 0.01 plan at 4 % + 0.30 costs
    its merchant 0.01, not 0.30). Zero for a merchant priced 0 % + 0."""
    fee = to_money(total * pricing.fee_percent / 100) + pricing.fee_fixed
    return min(to_money(fee), total)


def merchant_fee_refunded(
    *, fee: Decimal, returned: Decimal, total: Decimal, amount: Decimal, refunded: Decimal
) -> Decimal:
    """The part of a plan's ``fee`` a refund of ``amount`` returns: ``fee * amount / total``
    rounded half up, never more than the fee not yet ``returned``. When the refunds approved,
    this one included, reach the plan ``total`` (``refunded``), all the rest of the fee goes
    back: a plan refunded whole keeps no fee, whatever the rounding of its parts."""
    left = fee - returned
    if left <= 0:
        return ZERO
    if refunded >= total:
        return left
    return min(to_money(fee * amount / total), left)
