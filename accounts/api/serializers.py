"""Request and response shapes of the accounts API. PII only ever goes out masked."""

import re

from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from accounts.cards import normalize_card_number
from accounts.models import E164_REGEX, PASSPORT_REGEX, PHONE_MESSAGE, USER_ID_REGEX, User


class RegisterIn(serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    password = serializers.CharField(write_only=True, max_length=128, style={"input_type": "password"})
    role = serializers.ChoiceField(
        choices=[User.Role.CUSTOMER, User.Role.MERCHANT], help_text="Operators are created by operators only."
    )
    full_name = serializers.CharField(max_length=150)
    phone_number = serializers.CharField(max_length=32, help_text="E.164, e.g. +998901234567.")
    email = serializers.EmailField(max_length=254)
    passport_number = serializers.CharField(max_length=32, required=False, allow_blank=True, default="")
    card_number = serializers.CharField(
        max_length=32,
        required=False,
        allow_blank=True,
        default="",
        help_text="Tokenized on arrival: only brand, first 6 and last 4 digits are kept.",
    )
    user_id = serializers.CharField(
        max_length=64, required=False, help_text="Public id; generated (`usr-…`) when omitted."
    )

    def validate_phone_number(self, value: str) -> str:
        value = re.sub(r"[\s()-]", "", value)
        if not re.match(E164_REGEX, value):
            raise serializers.ValidationError(PHONE_MESSAGE)
        return value

    def validate_passport_number(self, value: str) -> str:
        value = value.replace(" ", "").upper()
        if value and not re.match(PASSPORT_REGEX, value):
            raise serializers.ValidationError("Enter a passport number of 5 to 20 letters and digits.")
        return value

    def validate_card_number(self, value: str) -> str:
        if not value:
            return value
        try:
            return normalize_card_number(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate_user_id(self, value: str) -> str:
        if not re.match(USER_ID_REGEX, value):
            raise serializers.ValidationError(
                "Use 3 to 64 letters, digits, '-' or '_', starting with a letter or digit."
            )
        return value

    def validate(self, attrs: dict) -> dict:
        probe = User(username=attrs["username"], email=attrs["email"], full_name=attrs["full_name"])
        try:
            validate_password(attrs["password"], probe)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return attrs


class UserOut(serializers.Serializer):
    """A user as others see them: PII masked."""

    user_id = serializers.CharField()
    full_name = serializers.CharField()
    phone_number = serializers.CharField(source="masked_phone", help_text="Masked: +998****4567.")
    passport_number = serializers.CharField(source="masked_passport", help_text="Masked: AA*******.")
    card_number = serializers.CharField(source="masked_card", help_text="Masked: 4111 **** **** 1111.")
    status = serializers.ChoiceField(choices=User.Status.choices)
    role = serializers.ChoiceField(choices=User.Role.choices)
    created_at = serializers.DateTimeField()


class MeOut(UserOut):
    """Your own profile: still masked, plus what only you and operators need."""

    username = serializers.CharField()
    email = serializers.EmailField()
    credit_limit = serializers.DecimalField(max_digits=12, decimal_places=2)
    card_brand = serializers.CharField()


class RegisteredOut(MeOut):
    """The new profile; a merchant also gets its webhook secret, shown this once."""

    webhook_secret = serializers.SerializerMethodField()

    def get_webhook_secret(self, user: User) -> str | None:
        return user.webhook_secret if user.is_merchant else None
