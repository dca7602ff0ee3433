"""Merchants' payout bank accounts: an IBAN (ISO 13616) or a plain account number, checked
and normalized before it is stored (encrypted, accounts.fields) or used.

An IBAN is the country code, two check digits and the country's BBAN; it is valid when the
country issues IBANs, the length is that country's (SWIFT's IBAN registry), and the whole,
with its first four characters moved to the end and letters read as numbers (A=10 … Z=35),
leaves 1 divided by 97. A plain account number is 6 to 34 digits. Spaces are allowed in
what people type; the stored form is upper-case without them.
"""

import re
from dataclasses import dataclass

# Lengths of the IBAN of each country in SWIFT's IBAN registry. A country missing here does
# not issue IBANs (the United States, say): its "IBAN" is refused rather than guessed at.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
IBAN_MIN_LENGTH, IBAN_MAX_LENGTH = 15, 34
ACCOUNT_NUMBER_MIN_DIGITS, ACCOUNT_NUMBER_MAX_DIGITS = 6, 34
# The creditor name of a SEPA credit transfer holds at most 70 characters.
ACCOUNT_NAME_MAX_LENGTH = 70
# What may be typed, spaces included: the longest IBAN in its printed groups of four.
PAYOUT_ACCOUNT_INPUT_MAX_LENGTH = 64

KIND_IBAN = "IBAN"
KIND_ACCOUNT_NUMBER = "ACCOUNT_NUMBER"

ACCOUNT_MESSAGE = (
    f"Enter an IBAN (e.g. DE89 3704 0044 0532 0130 00) or an account number of "
    f"{ACCOUNT_NUMBER_MIN_DIGITS} to {ACCOUNT_NUMBER_MAX_DIGITS} digits."
)

_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]+")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class PayoutAccount:
    kind: str  # KIND_IBAN or KIND_ACCOUNT_NUMBER
    number: str  # normalized: upper-case, no spaces


def iban_checksum_valid(iban: str) -> bool:
    """ISO 13616 (ISO 7064 MOD 97-10): the rearranged number leaves 1 divided by 97.

    ``iban`` is normalized (upper-case letters and digits only). Check digits 00, 01 and 99
    are never issued (they are 97, 98 and 02 again, modulo 97) and so never valid.
    """
    if iban[2:4] in ("00", "01", "99"):
        return False
    remainder = 0
    # Digit by digit (a letter is two digits), so no number grows beyond a few digits.
    for char in iban[4:] + iban[:4]:
        for digit in str(int(char, 36)):
            remainder = (remainder * 10 + int(digit)) % 97
    return remainder == 1


def iban_error(iban: str) -> str | None:
    """Why the normalized ``iban`` is not a valid IBAN, or None when it is."""
    if not _IBAN_SHAPE.fullmatch(iban):
        return "An IBAN is two letters (the country), two check digits, then letters and digits only."
    country = iban[:2]
    expected = IBAN_LENGTHS.get(country)
    if expected is None:
        return f"{country} is not the code of a country that issues IBANs."
    if len(iban) != expected:
        return f"An IBAN from {country} has {expected} characters; this one has {len(iban)}."
    if not iban_checksum_valid(iban):
        return "The IBAN's check digits do not match the rest of it (ISO 13616 mod 97): check it for a typo."
    return None


def normalize_payout_account(value: str) -> PayoutAccount:
    """The account typed (spaces allowed, any case), checked and normalized.

    Two letters first make it an IBAN; digits only, a plain account number. Raises
    ValueError with a message for the person who typed it (the value is never repeated in it).
    """
    number = re.sub(r"\s+", "", value or "").upper()
    if not number:
        raise ValueError(ACCOUNT_MESSAGE)
    if _DIGITS.fullmatch(number):
        if not ACCOUNT_NUMBER_MIN_DIGITS <= len(number) <= ACCOUNT_NUMBER_MAX_DIGITS:
            raise ValueError(
                f"An account number has {ACCOUNT_NUMBER_MIN_DIGITS} to {ACCOUNT_NUMBER_MAX_DIGITS} digits; "
                f"this one has {len(number)}."
            )
        return PayoutAccount(kind=KIND_ACCOUNT_NUMBER, number=number)
    if re.match(r"[A-Z]{2}", number):
        error = iban_error(number)
        if error:
            raise ValueError(error)
        return PayoutAccount(kind=KIND_IBAN, number=number)
    raise ValueError(ACCOUNT_MESSAGE)


def normalize_account_name(value: str) -> str:
    """The account holder's name typed, trimmed and checked. Raises ValueError."""
    name = " ".join((value or "").split())
    if not name:
        raise ValueError("Enter the name of the account holder, as the bank knows it.")
    if len(name) > ACCOUNT_NAME_MAX_LENGTH:
        raise ValueError(f"At most {ACCOUNT_NAME_MAX_LENGTH} characters (the limit of a SEPA credit transfer).")
    if any(not char.isprintable() for char in name):
        raise ValueError("The name holds characters that cannot be printed.")
    return name


class PayoutAccountInvalid(ValueError):
    """A payout account change that cannot be made, naming the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def payout_account_after(
    *, number: str, kind: str, holder: str, account: str | None, name: str | None
) -> tuple[str, str, str]:
    """The (number, kind, holder name) a merchant has once ``account`` and ``name`` are applied
    to what is on file (``number``, ``kind``, ``holder``).

    ``account``: as typed, ``""`` removes the account and its name, None keeps it; ``name``:
    None keeps it. An account always has a name, and a name an account. Raises
    PayoutAccountInvalid naming ``payout_account`` or ``payout_account_name``.
    """
    if account is not None:
        if not account.strip():
            number, kind, holder = "", "", ""
        else:
            try:
                parsed = normalize_payout_account(account)
            except ValueError as exc:
                raise PayoutAccountInvalid("payout_account", str(exc)) from exc
            number, kind = parsed.number, parsed.kind
    if name is not None:
        try:
            holder = normalize_account_name(name) if name.strip() or number else ""
        except ValueError as exc:
            raise PayoutAccountInvalid("payout_account_name", str(exc)) from exc
    if number and not holder:
        raise PayoutAccountInvalid("payout_account_name", "Give the account holder's name with the account.")
    if holder and not number:
        raise PayoutAccountInvalid(
            "payout_account_name", "There is no payout account to name: give payout_account too."
        )
    return number, kind, holder
