"""Money helpers: Decimal only, two places, rounded once at the edge (DESIGN §3)."""

import re
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def to_money(value: Decimal | int | str) -> Decimal:
    """``value`` as a two-place Decimal, half-up: the one rounding step for amounts."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def split_amount(total: Decimal, parts: int) -> list[Decimal]:
    """Split ``total`` into ``parts`` amounts that add up to it exactly.

    Each part is ``floor(total / parts)`` to the cent; the leftover cents go one each to
    the first parts: 500.00 / 3 → 166.67, 166.67, 166.66.
    """
    if parts < 1:
        raise ValueError("parts must be at least 1")
    cents = int(to_money(total) / CENT)
    base, leftover = divmod(cents, parts)
    return [(Decimal(base + (1 if index < leftover else 0)) * CENT).quantize(CENT) for index in range(parts)]


def floor_money(value: Decimal) -> Decimal:
    """``value`` rounded down to the cent (for caps: never charge a fraction above a limit)."""
    return Decimal(value).quantize(CENT, rounding=ROUND_DOWN)


# An amount as the API takes it: ASCII digits (``[0-9]``, not ``\d``, which takes Arabic-Indic
# and mathematical bold digits too), an optional minus sign (then refused as not positive,
# a clearer message), at most ten digits before the point (max_digits 12) and one or two
# after it. No "+", no exponent, no spaces: each was another way to write an amount, and
# perhaps not the one the client meant.
AMOUNT_PATTERN = r"-?[0-9]{1,10}(?:\.[0-9]{1,2})?"
_AMOUNT = re.compile(AMOUNT_PATTERN)
# What the schema tells clients to send: a positive amount written plainly, 1 to 10 digits
# with no leading zero, or 0.01 to 0.99. The server takes a little more (leading zeros; a
# sign, to refuse it by name), but every string this matches it accepts, up to the maximum.
POSITIVE_AMOUNT_PATTERN = r"(?:[1-9][0-9]{0,9}(?:\.[0-9]{1,2})?|0\.(?:[1-9][0-9]?|0[1-9]))"


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": f"^{POSITIVE_AMOUNT_PATTERN}$", "example": "166.67"}
)
class MoneyField(serializers.DecimalField):
    """An amount in JSON: a string such as ``"166.67"`` (DESIGN §3: amounts travel as strings)
    matching ``AMOUNT_PATTERN``, with ``0 < amount <= BNPL_MAX_AMOUNT``. A JSON number, an
    exponent, a sign "+", spaces or digits other than ASCII are invalid, each naming the field."""

    default_error_messages = {
        "not_a_string": 'Must be a string such as "166.67", not a JSON number.',
        "format": 'Must be a decimal string of ASCII digits with at most two decimals, such as "166.67".',
        "not_positive": "Must be greater than 0.",
        "too_large": "Must be at most {max_amount}.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 12)
        kwargs.setdefault("decimal_places", 2)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            # A number too: a float has already lost what the client wrote ("0.1" + "0.2").
            self.fail("not_a_string")
        if not _AMOUNT.fullmatch(data):
            self.fail("format")
        value = super().to_internal_value(data)
        if value <= 0:
            self.fail("not_positive")
        if value > settings.BNPL_MAX_AMOUNT:
            self.fail("too_large", max_amount=settings.BNPL_MAX_AMOUNT)
        return value


class CurrencyField(serializers.CharField):
    """An ISO 4217 code among ``BNPL_CURRENCIES``; defaults to ``BNPL_DEFAULT_CURRENCY``."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 3)
        kwargs.setdefault("min_length", 3)
        kwargs.setdefault("help_text", "ISO 4217 code, e.g. USD.")
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data).upper()
        if value not in settings.BNPL_CURRENCIES:
            raise serializers.ValidationError(f"Use one of: {', '.join(settings.BNPL_CURRENCIES)}.")
        return value
