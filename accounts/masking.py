"""PII masking: the only way phone, passport, card and bank account numbers leave the
system (DESIGN §4).

Formats: phone ``+998****4567`` (``+``, first 3 digits, ``****``, last 4), passport
``AA*******`` (first 2 characters, the rest as ``*``), card ``4111 **** **** 1111``, bank
account like a card, ``DE89**************3000`` (first 4, last 4, the rest as ``*``).
``mask_text`` finds such values inside free text (log lines) and masks them in place: of
bank accounts, the IBANs (upper-case, compact or in groups of four); a plain account number
is a bare digit run, masked only when it is as long as a card number.
"""

import re

from accounts.bank import IBAN_LENGTHS, IBAN_MAX_LENGTH, IBAN_MIN_LENGTH

# Not inside a decimal number (1.404780840002786e-05 is a float, not a card).
_CARD_RUN = re.compile(r"(?<![\w+])(?<!\d\.)(?:\d[ -]?){12,18}\d(?!\w)(?!\.\d)")
_PHONE = re.compile(r"\+\d{8,15}(?!\d)")
# Passport numbers as issued in the region: two letters and six to nine digits.
_PASSPORT = re.compile(r"\b[A-Z]{2}\d{6,9}\b")
# An IBAN as stored (compact) or as printed (groups of four); checked further by _is_iban_like.
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?|[A-Z0-9]{11,30})(?![A-Za-z0-9])"
)


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


def mask_bank_account(number: str | None) -> str:
    """``DE89370400440532013000`` → ``DE89**************3000``: first 4 and last 4, the rest as
    ``*``; empty stays empty.

    A short number shows less, so that most of it stays hidden: under 12 characters only the
    last 4, under 8 only the last 2.
    """
    number = re.sub(r"\s+", "", number or "")
    if not number:
        return ""
    if len(number) >= 12:
        return number[:4] + "*" * (len(number) - 8) + number[-4:]
    shown = 4 if len(number) >= 8 else 2
    return "*" * (len(number) - shown) + number[-shown:]


def _is_iban_like(text: str) -> bool:
    """A country that issues IBANs and an IBAN's length: masked whether its checksum holds or
    not (a mistyped IBAN is still most of someone's account)."""
    compact = text.replace(" ", "")
    return compact[:2] in IBAN_LENGTHS and IBAN_MIN_LENGTH <= len(compact) <= IBAN_MAX_LENGTH


def _mask_iban(match: re.Match) -> str:
    return mask_bank_account(match.group(0)) if _is_iban_like(match.group(0)) else match.group(0)


def _mask_card_run(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return mask_card(digits[:4], digits[-4:])


def mask_text(text: str) -> str:
    """Masks every IBAN, card-number-like digit run, phone number and passport number in ``text``."""
    if not text:
        return text
    # IBANs first: the digits of one printed in groups would otherwise look like a card's.
    text = _IBAN.sub(_mask_iban, text)
    text = _CARD_RUN.sub(_mask_card_run, text)
    text = _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
    return _PASSPORT.sub(lambda m: mask_passport(m.group(0)), text)


def find_unmasked_pii(text: str) -> list[str]:
    """Every value in ``text`` that ``mask_text`` would have to mask (empty when clean)."""
    text = text or ""
    found = [m.group(0) for m in _IBAN.finditer(text) if _is_iban_like(m.group(0))]
    return found + [m.group(0) for pattern in (_CARD_RUN, _PHONE, _PASSPORT) for m in pattern.finditer(text)]
