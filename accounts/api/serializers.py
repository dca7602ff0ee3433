"""Request and response shapes of the accounts API. PII only ever goes out masked."""

import re

from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.bank import (
    ACCOUNT_NAME_MAX_LENGTH,
    PAYOUT_ACCOUNT_INPUT_MAX_LENGTH,
    normalize_account_name,
    normalize_payout_account,
)
from accounts.cards import normalize_card_number
from accounts.models import E164_REGEX, PASSPORT_REGEX, PHONE_MESSAGE, USER_ID_REGEX, User
from accounts.pricing import merchant_pricing_of
from accounts.profile import profile_field
from core.serializers import CaseInsensitiveChoiceField


class RegisterIn(serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    password = serializers.CharField(write_only=True, max_length=128, style={"input_type": "password"})
    role = CaseInsensitiveChoiceField(
        choices=[User.Role.CUSTOMER, User.Role.MERCHANT],
        help_text="In any case (`customer` is `CUSTOMER`). Operators are created by operators only.",
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
    autopay = serializers.BooleanField(help_text="Customers: the card is charged automatically on each due date.")
    credit_balance = serializers.SerializerMethodField(
        help_text="What the platform holds for you per currency (refunds taken as credit, overpayments); "
        "spent first by your next payment."
    )
    webhook_url = serializers.CharField(help_text="Merchants: where your events are delivered (blank: none).")
    fee_percent = serializers.SerializerMethodField(
        help_text="Merchants: the percent of each plan total charged as your fee when the plan becomes ACTIVE "
        "(your own price, else the platform's default); null for customers and operators. Read-only: "
        "operators set it."
    )
    fee_fixed = serializers.SerializerMethodField(
        help_text="Merchants: the fixed part added to each plan's fee, in the plan's currency. The fee is "
        "total * fee_percent / 100 rounded half up to the cent, plus fee_fixed, never above the total. "
        "Null for customers and operators. Read-only."
    )
    payout_account = serializers.CharField(
        source="masked_payout_account",
        help_text="Merchants: the bank account your payouts go to, masked like a card (first 4 and last 4: "
        "DE89**************3000); blank: none yet.",
    )
    payout_account_kind = serializers.CharField(
        help_text="Merchants: `IBAN` or `ACCOUNT_NUMBER` (a plain account number); blank: no account."
    )
    payout_account_name = serializers.CharField(help_text="Merchants: the account holder's name; blank: no account.")

    @extend_schema_field(serializers.DictField(child=serializers.DecimalField(max_digits=14, decimal_places=2)))
    def get_credit_balance(self, user: User) -> dict:
        return {currency: str(amount) for currency, amount in profile_field("credit_balance", user, {}).items()}

    @extend_schema_field(serializers.DecimalField(max_digits=5, decimal_places=2, allow_null=True))
    def get_fee_percent(self, user: User) -> str | None:
        pricing = merchant_pricing_of(user)
        return None if pricing is None else f"{pricing.fee_percent:.2f}"

    @extend_schema_field(serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True))
    def get_fee_fixed(self, user: User) -> str | None:
        pricing = merchant_pricing_of(user)
        return None if pricing is None else f"{pricing.fee_fixed:.2f}"


class MeUpdateIn(serializers.Serializer):
    """What you may change about yourself."""

    autopay = serializers.BooleanField(required=False, help_text="Customers only.")
    webhook_url = serializers.URLField(
        max_length=500, required=False, allow_blank=True, help_text="Merchants only; http(s), blank to stop deliveries."
    )
    payout_account = serializers.CharField(
        max_length=PAYOUT_ACCOUNT_INPUT_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text="Merchants only: where payouts go, an IBAN (checked: country, length, check digits; spaces "
        "allowed, any case) or a plain account number of 6 to 34 digits. Stored encrypted, shown masked. "
        "Blank removes the account (and its name).",
    )
    payout_account_name = serializers.CharField(
        max_length=ACCOUNT_NAME_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text="Merchants only: the account holder's name, as the bank knows it; needed with a new account "
        "unless one is on file.",
    )

    def validate_payout_account(self, value: str) -> str:
        if not value.strip():
            return ""
        try:
            return normalize_payout_account(value).number
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate_payout_account_name(self, value: str) -> str:
        if not value.strip():
            return ""
        try:
            return normalize_account_name(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    # Shown on the profile, changed only by operators (the admin, where each change is recorded).
    READ_ONLY = ("fee_percent", "fee_fixed")

    def validate(self, attrs: dict) -> dict:
        for name in self.READ_ONLY:
            if name in self.initial_data:
                raise serializers.ValidationError(
                    {name: ["Read-only: your pricing is set by the platform's operators."]}
                )
        if not attrs:
            raise serializers.ValidationError(
                "Give at least one of: autopay, webhook_url, payout_account, payout_account_name."
            )
        user: User = self.context["user"]
        if "autopay" in attrs and not user.is_customer:
            raise serializers.ValidationError({"autopay": ["Only customers pay installments automatically."]})
        merchants_only = {
            "webhook_url": "Only merchants receive event webhooks.",
            "payout_account": "Only merchants are paid out.",
            "payout_account_name": "Only merchants are paid out.",
        }
        refused = {field: [message] for field, message in merchants_only.items() if field in attrs}
        if refused and not user.is_merchant:
            raise serializers.ValidationError(refused)
        url = attrs.get("webhook_url", "")
        if url and not url.lower().startswith(("https://", "http://")):
            raise serializers.ValidationError({"webhook_url": ["Use an http or https URL."]})
        return attrs


class RegisteredOut(MeOut):
    """The new profile; a merchant also gets its webhook secret, shown this once."""

    webhook_secret = serializers.SerializerMethodField()

    def get_webhook_secret(self, user: User) -> str | None:
        return user.webhook_secret if user.is_merchant else None


class TokenPairOut(serializers.Serializer):
    """A JWT pair."""

    access = serializers.CharField(help_text="Send as `Authorization: Bearer <access>`; short-lived.")
    refresh = serializers.CharField(
        help_text="Exchange it at `/api/v1/auth/token/refresh/` for the next pair, once: it is spent by its use."
    )


class TokenRefreshIn(serializers.Serializer):
    refresh = serializers.CharField(help_text="The refresh token of your latest pair.")

    class Meta:
        # The request schema keeps the name it had when simplejwt's serializer described it
        # (TokenRefreshRequest): clients generated from the schema keep their type names.
        ref_name = "TokenRefresh"


class LogoutIn(serializers.Serializer):
    refresh = serializers.CharField(help_text="The refresh token to revoke.")
