"""PII masking: the only way phone, passport and card numbers leave the system (DESIGN §4).

Formats: phone ``+998****4567`` (``+``, first 3 digits, ``****``, last 4), passport
``AA*******`` (first 2 characters, the rest as ``*``), card ``4111 **** **** 1111``.
``mask_text`` finds such values inside free text (log lines) and masks them in place.
"""

import re

# Not inside a decimal number (1.404780840002786e-05 is a float, not a card).
_CARD_RUN = re.compile(r"(?<![\w+])(?<!\d\.)(?:\d[ -]?){12,18}\d(?!\w)(?!\.\d)")
_PHONE = re.compile(r"\+\d{8,15}(?!\d)")
# Passport numbers as issued in the region: two letters and six to nine digits.
_PASSPORT = re.compile(r"\b[A-Z]{2}\d{6,9}\b")


def mask_phone(phone: str | None) -> str:
    """``+998901234567`` → ``+998****4567``; empty stays empty."""
    if not phone:
        return ""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "+" + "*" * len(digits)
    return f"+{digits[:3]}****{digits[-4:]}"


def mask_passport(passport: str | None) -> str:
    """``AA1234567`` → ``AA*******``; empty stays empty."""
    if not passport:
        return ""
    return passport[:2] + "*" * (len(passport) - 2)


def mask_card(first_digits: str | None, last4: str | None) -> str:
    """From the stored first digits and last four: ``4111 **** **** 1111``; no card → empty."""
    if not first_digits or not last4:
        return ""
    return f"{first_digits[:4]} **** **** {last4}"


def _mask_card_run(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return mask_card(digits[:4], digits[-4:])


def mask_text(text: str) -> str:
    """Masks every card-number-like digit run, phone number and passport number in ``text``."""
    if not text:
        return text
    text = _CARD_RUN.sub(_mask_card_run, text)
    text = _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
    return _PASSPORT.sub(lambda m: mask_passport(m.group(0)), text)


def find_unmasked_pii(text: str) -> list[str]:
    """Every value in ``text`` that ``mask_text`` would have to mask (empty when clean)."""
    return [m.group(0) for pattern in (_CARD_RUN, _PHONE, _PASSPORT) for m in pattern.finditer(text or "")]
