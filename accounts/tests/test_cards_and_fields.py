import pytest
from django.db import connection
from django.test import override_settings

from accounts.cards import card_brand, card_tokenize, luhn_valid, normalize_card_number
from accounts.fields import decrypt_str, encrypt_str
from accounts.models import User
from accounts.tests.factories import UserFactory


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4111111111111111", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6200000000000005", "unionpay"),
        ("8600312998765432", "uzcard"),
        ("9860000000000000", "humo"),
        ("1234567890123452", "unknown"),
    ],
)
def test_card_brand(number, brand):
    assert card_brand(number) == brand


def test_luhn_and_normalize():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert normalize_card_number("4111 1111-1111 1111") == "4111111111111111"
    for bad in ("4111111111111112", "41111", "4111x11111111111", "1" * 20):
        with pytest.raises(ValueError):  # noqa: PT011 - the message is the user's, checked in the API tests
            normalize_card_number(bad)


def test_tokenize_keeps_only_what_may_be_stored():
    details = card_tokenize("4111111111111111")
    assert (details.brand, details.first6, details.last4) == ("visa", "411111", "1111")
    assert "4111111111111111" not in details.token
    assert card_tokenize("4111111111111111").token != details.token


def test_encryption_round_trip_and_rotation():
    with override_settings(FIELD_ENCRYPTION_KEY="old-key-" + "x" * 32):
        token = encrypt_str("AA1234567")
    assert "AA1234567" not in token
    with override_settings(FIELD_ENCRYPTION_KEY="new-key-" + "y" * 32 + ",old-key-" + "x" * 32):
        assert decrypt_str(token) == "AA1234567"
        assert decrypt_str(encrypt_str("AA1234567")) == "AA1234567"


@pytest.mark.django_db
def test_passport_is_encrypted_in_the_column():
    user = UserFactory(passport_number="AB7654321")

    with connection.cursor() as cursor:
        cursor.execute("SELECT passport_number FROM accounts_user WHERE id = %s", [user.pk])
        stored = cursor.fetchone()[0]
    assert stored != "AB7654321"
    assert "7654321" not in stored
    assert User.objects.get(pk=user.pk).passport_number == "AB7654321"
