"""Card numbers at the edge: validate, keep only what may be kept, never the full number.

The full card number (PAN) is turned at once into brand, first six, last four and a
gateway token; the PAN itself is dropped and never reaches the database or a log.
"""

import secrets
from dataclasses import dataclass

# Prefix → brand, most specific first.
_BRANDS = (
    ("8600", "uzcard"),
    ("9860", "humo"),
    ("34", "amex"),
    ("37", "amex"),
    ("62", "unionpay"),
    ("4", "visa"),
)


@dataclass(frozen=True)
class CardDetails:
    brand: str
    first6: str
    last4: str
    token: str


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) checksum every card number carries."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str:
    """Brand from the number's prefix (``visa``, ``mastercard``, ...); ``unknown`` otherwise."""
    if 51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720:
        return "mastercard"
    for prefix, brand in _BRANDS:
        if digits.startswith(prefix):
            return brand
    return "unknown"


def normalize_card_number(raw: str) -> str:
    """Digits only (spaces and dashes dropped); raises ValueError when it is no card number."""
    digits = raw.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise ValueError("Enter a card number of 12 to 19 digits.")
    if not luhn_valid(digits):
        raise ValueError("This card number is not valid (checksum).")
    return digits


def card_tokenize(digits: str) -> CardDetails:
    """What may be stored of a validated card number: brand, first 6, last 4 and a token.

    The token stands for the card at the gateway; the built-in gateway decides by the last
    four digits, so no secret mapping back to the PAN is kept anywhere.
    """
    return CardDetails(
        brand=card_brand(digits), first6=digits[:6], last4=digits[-4:], token=f"tok_{secrets.token_hex(12)}"
    )
