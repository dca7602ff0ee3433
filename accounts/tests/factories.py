"""factory-boy factories for users; PII values are valid and deterministic per sequence."""

from decimal import Decimal

import factory

from accounts.cards import card_brand as brand_of
from accounts.models import User

DEFAULT_PASSWORD = "correct-horse-battery-9"


def _luhn_complete(partial: str) -> str:
    """``partial`` plus the check digit that makes it Luhn-valid."""
    for check in "0123456789":
        candidate = partial + check
        total = 0
        for index, char in enumerate(reversed(candidate)):
            value = int(char) * (2 if index % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    user_id = factory.Sequence(lambda n: f"usr-t{n:05d}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    full_name = factory.Sequence(lambda n: f"Test Person {n}")
    role = User.Role.CUSTOMER
    credit_limit = Decimal("2000.00")
    phone_number = factory.Sequence(lambda n: f"+99890{n:07d}")
    passport_number = factory.Sequence(lambda n: f"AC{n:07d}")
    password = factory.django.Password(DEFAULT_PASSWORD)

    class Params:
        card_number = factory.Sequence(lambda n: _luhn_complete(f"411111{n:09d}"))

    card_brand = factory.LazyAttribute(lambda o: brand_of(o.card_number))
    card_first6 = factory.LazyAttribute(lambda o: o.card_number[:6])
    card_last4 = factory.LazyAttribute(lambda o: o.card_number[-4:])
    card_token = factory.Sequence(lambda n: f"tok_test_{n}")


class MerchantFactory(UserFactory):
    """A merchant; ``MerchantFactory(payout=True)`` has a (valid, German) payout IBAN on file."""

    role = User.Role.MERCHANT
    username = factory.Sequence(lambda n: f"merchant{n}")
    user_id = factory.Sequence(lambda n: f"mch-t{n:05d}")

    class Params:
        payout = factory.Trait(
            payout_account="DE89370400440532013000",
            payout_account_kind=User.PayoutAccountKind.IBAN,
            payout_account_name=factory.LazyAttribute(lambda o: o.full_name),
        )


class OperatorFactory(UserFactory):
    role = User.Role.OPERATOR
    is_superuser = True
    username = factory.Sequence(lambda n: f"operator{n}")
    user_id = factory.Sequence(lambda n: f"op-t{n:05d}")
