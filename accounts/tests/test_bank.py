"""Payout bank accounts: IBAN and account number checks (accounts.bank), their masking, and
the service that sets them."""

import logging
import re

import pytest
from django.db import IntegrityError, connection, transaction
from hypothesis import given
from hypothesis import strategies as st

from accounts.bank import (
    KIND_ACCOUNT_NUMBER,
    KIND_IBAN,
    iban_checksum_valid,
    normalize_account_name,
    normalize_payout_account,
)
from accounts.masking import find_unmasked_pii, mask_bank_account, mask_text
from accounts.models import User
from accounts.services import merchant_payout_account_set
from accounts.tests.factories import MerchantFactory, UserFactory
from core.problems import FieldInvalid

# Examples of SWIFT's IBAN registry, one per country: each is valid.
VALID_IBANS = [
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "NL91ABNA0417164300",
    "FR1420041010050500013M02606",
    "NO9386011117947",  # the shortest, 15
    "BE68539007547034",
    "AT611904300234573201",
    "CH9300762011623852957",
    "IT60X0542811101000000123456",
    "ES9121000418450200051332",
    "PL61109010140000071219812874",
    "MT84MALT011000012345MTLCAST001S",
    "LC55HEMM000100010012001200023015",
    "RU0304452522540817810538091310419",  # the longest in use, 33
]


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_valid_ibans_of_several_countries_pass(iban):
    assert normalize_payout_account(iban) == normalize_payout_account(iban.lower())
    account = normalize_payout_account(iban)
    assert (account.kind, account.number) == (KIND_IBAN, iban)


@pytest.mark.parametrize(
    "typed",
    [
        "DE89 3704 0044 0532 0130 00",
        "de89370400440532013000",
        " de89 3704 0044 0532 0130 00 ",
        "De89\t37040044 0532013000",
    ],
)
def test_an_iban_is_stored_upper_case_without_spaces(typed):
    assert normalize_payout_account(typed).number == "DE89370400440532013000"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("DE89370400440532013001", "check digits do not match"),  # one digit off
        ("GB82WEST12345698765433", "check digits do not match"),
        ("DE98370400440532013000", "check digits do not match"),  # two digits swapped
        ("GB28WEST12345698765432", "check digits do not match"),
        ("DE01370400440532013000", "check digits do not match"),  # 01 is 98 modulo 97: never issued
        ("US89370400440532013000", "US is not the code of a country"),
        ("XX89370400440532013000", "XX is not the code of a country"),
        ("DE8937040044053201300", "from DE has 22 characters; this one has 21"),
        ("DE893704004405320130000", "from DE has 22 characters; this one has 23"),
        ("GB82WEST1234569876543", "from GB has 22 characters; this one has 21"),
        ("DEXX370400440532013000", "two letters (the country), two check digits"),
        ("DE89-3704-0044-0532-0130-00", "two letters (the country), two check digits"),
        ("DE89370400440532013ÄÖ0", "two letters (the country), two check digits"),
        ("12345", "6 to 34 digits; this one has 5"),
        ("1" * 35, "6 to 34 digits; this one has 35"),
        ("12-34-56-78", "Enter an IBAN"),
        ("1DE89370400440532013000", "Enter an IBAN"),
        ("   ", "Enter an IBAN"),
    ],
)
def test_invalid_accounts_are_refused_with_a_reason_that_does_not_repeat_them(typed, message):
    with pytest.raises(ValueError, match=re.escape(message)) as refused:
        normalize_payout_account(typed)

    assert typed.strip() not in str(refused.value) or not typed.strip()


@pytest.mark.parametrize("number", ["123456", "0012345678", "4" * 34, "12 345 678"])
def test_plain_account_numbers_of_6_to_34_digits_pass(number):
    account = normalize_payout_account(number)
    assert (account.kind, account.number) == (KIND_ACCOUNT_NUMBER, number.replace(" ", ""))


@given(st.sampled_from(VALID_IBANS), st.data())
def test_changing_any_one_character_of_an_iban_breaks_its_checksum(iban, data):
    position = data.draw(st.integers(min_value=4, max_value=len(iban) - 1))
    replacement = data.draw(st.sampled_from("0123456789").filter(lambda c: c != iban[position]))
    # Mod 97 catches every single substitution of a digit (97 is prime and beyond 10 * 10).
    assert not iban_checksum_valid(iban[:position] + replacement + iban[position + 1 :])


def test_account_holder_names_are_trimmed_and_bounded():
    assert normalize_account_name("  Example   Shop  LLC ") == "Example Shop LLC"
    for bad in ("", "   ", "x" * 71, "Shop\x00LLC"):
        with pytest.raises(ValueError):  # noqa: PT011 - the messages are checked through the API
            normalize_account_name(bad)


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("DE89370400440532013000", "DE89**************3000"),
        ("GB82WEST12345698765432", "GB82**************5432"),
        ("NO9386011117947", "NO93*******7947"),
        ("DE89 3704 0044 0532 0130 00", "DE89**************3000"),
        ("123456789012", "1234****9012"),
        ("12345678", "****5678"),
        ("123456", "****56"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_bank_account_shows_first_4_and_last_4_at_most(number, masked):
    assert mask_bank_account(number) == masked
    assert not find_unmasked_pii(masked)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pay to DE89370400440532013000 today", "pay to DE89**************3000 today"),
        ("iban=DE89 3704 0044 0532 0130 00, ok", "iban=DE89**************3000, ok"),
        ("NO9386011117947.", "NO93*******7947."),
        # A mistyped IBAN is still most of someone's account: masked too.
        ("DE89370400440532013001", "DE89**************3001"),
        ('{"payout_account": "GB82WEST12345698765432"}', '{"payout_account": "GB82**************5432"}'),
        # Not IBANs: no country issuing them, too short, or inside a longer word.
        ("ref US89370400440532013000", "ref US89370400440532013000"),
        ("ref DE89ABC1234", "ref DE89ABC1234"),
        ("XDE89370400440532013000", "XDE89370400440532013000"),
    ],
)
def test_mask_text_masks_ibans(text, expected):
    assert mask_text(text) == expected
    assert not find_unmasked_pii(mask_text(text))


def test_logging_filter_masks_ibans(log_lines):
    logging.getLogger("payouts.bank").warning("payout to %s failed", "GB82WEST12345698765432")
    logging.getLogger("celery.worker").info("payout", extra={"account": "DE89 3704 0044 0532 0130 00"})

    text = "\n".join(log_lines())
    assert "GB82**************5432" in text
    assert "DE89**************3000" in text
    assert "GB82WEST12345698765432" not in text
    assert "0532" not in text


@pytest.mark.django_db
def test_the_payout_account_is_encrypted_in_the_column():
    merchant = MerchantFactory(payout=True)

    with connection.cursor() as cursor:
        cursor.execute("SELECT payout_account, payout_account_kind FROM accounts_user WHERE id = %s", [merchant.pk])
        stored, kind = cursor.fetchone()
    assert kind == "IBAN"
    assert "DE89370400440532013000" not in stored
    assert "0532013000" not in stored
    assert User.objects.get(pk=merchant.pk).payout_account == "DE89370400440532013000"


@pytest.mark.django_db
def test_an_account_without_its_kind_or_name_cannot_be_stored():
    merchant = MerchantFactory()
    for fields in (
        {"payout_account": "DE89370400440532013000", "payout_account_kind": "", "payout_account_name": "Shop"},
        {"payout_account": "DE89370400440532013000", "payout_account_kind": "IBAN", "payout_account_name": ""},
        {"payout_account": "", "payout_account_kind": "IBAN", "payout_account_name": ""},
        {"payout_account": "", "payout_account_kind": "", "payout_account_name": "Shop"},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            User.objects.filter(pk=merchant.pk).update(**fields)


@pytest.mark.django_db
def test_merchant_payout_account_set_normalizes_replaces_and_removes(log_lines):
    merchant, operator = MerchantFactory(), UserFactory(role=User.Role.OPERATOR)

    merchant_payout_account_set(
        merchant=merchant, account="gb82 west 1234 5698 7654 32", name=" Example  Shop ", changed_by=merchant
    )
    merchant.refresh_from_db()
    assert (merchant.payout_account, merchant.payout_account_kind, merchant.payout_account_name) == (
        "GB82WEST12345698765432",
        "IBAN",
        "Example Shop",
    )

    merchant_payout_account_set(merchant=merchant, account="0012345678", changed_by=operator)  # the name stays
    merchant.refresh_from_db()
    assert (merchant.payout_account, merchant.payout_account_kind, merchant.payout_account_name) == (
        "0012345678",
        "ACCOUNT_NUMBER",
        "Example Shop",
    )

    merchant_payout_account_set(merchant=merchant, account="", changed_by=operator)
    merchant.refresh_from_db()
    assert (merchant.payout_account, merchant.payout_account_kind, merchant.payout_account_name) == ("", "", "")

    text = "\n".join(log_lines())
    assert f"Payout account of {merchant.user_id} set by {merchant.user_id}: (none) -> GB82**************5432" in text
    assert f"set by {operator.user_id}: GB82**************5432 -> ******5678" in text
    assert f"set by {operator.user_id}: ******5678 -> (none)" in text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("account", "name", "field"),
    [
        ("DE89370400440532013001", "Shop", "payout_account"),
        ("DE89370400440532013000", None, "payout_account_name"),  # no name on file either
        ("DE89370400440532013000", "  ", "payout_account_name"),
        (None, "Shop", "payout_account_name"),  # no account to name
    ],
)
def test_merchant_payout_account_set_refuses_naming_the_field(account, name, field):
    merchant = MerchantFactory()

    with pytest.raises(FieldInvalid) as refused:
        merchant_payout_account_set(merchant=merchant, account=account, name=name, changed_by=merchant)

    assert list(refused.value.extra["errors"]) == [field]
    merchant.refresh_from_db()
    assert merchant.payout_account == merchant.payout_account_kind == merchant.payout_account_name == ""


@pytest.mark.django_db
def test_only_merchants_have_payout_accounts():
    customer = UserFactory()

    with pytest.raises(FieldInvalid) as refused:
        merchant_payout_account_set(
            merchant=customer, account="DE89370400440532013000", name="Someone", changed_by=customer
        )

    assert list(refused.value.extra["errors"]) == ["payout_account"]
