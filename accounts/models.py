"""Users of the platform: customers, merchants and operators, with their PII kept safe (DESIGN §4)."""

import secrets
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower

from accounts.bank import ACCOUNT_NAME_MAX_LENGTH, KIND_ACCOUNT_NUMBER, KIND_IBAN
from accounts.fields import EncryptedTextField
from accounts.masking import mask_bank_account, mask_card, mask_passport, mask_phone

E164_REGEX = r"^\+[1-9]\d{7,14}$"
USER_ID_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"
# A URL path segment that may name a user: anything else is a 404 without a lookup (a NUL,
# say, which PostgreSQL refuses in a text parameter).
USER_ID_IN_PATH = r"[A-Za-z0-9_-]+"
PASSPORT_REGEX = r"^[A-Z0-9]{5,20}$"

PHONE_MESSAGE = 'Enter a phone number in E.164 format: "+", the country code and 7 to 14 more digits.'
phone_validator = RegexValidator(E164_REGEX, PHONE_MESSAGE)
user_id_validator = RegexValidator(
    USER_ID_REGEX, "Use 3 to 64 letters, digits, '-' or '_', starting with a letter or digit."
)


def generate_user_id() -> str:
    """A new public id like ``usr-3f9a1c2b7d4e``."""
    return f"usr-{secrets.token_hex(6)}"


def generate_webhook_secret() -> str:
    """A new merchant webhook secret like ``whsec_…`` (256 bits)."""
    return f"whsec_{secrets.token_urlsafe(32)}"


def default_credit_limit() -> Decimal:
    return settings.BNPL_DEFAULT_CREDIT_LIMIT


class BnplUserManager(UserManager):
    def create_superuser(self, username, email=None, password=None, **extra_fields):
        # An operator made from the command line is an operator, not a customer with staff rights.
        extra_fields.setdefault("role", User.Role.OPERATOR)
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser):
    class Role(models.TextChoices):
        CUSTOMER = "CUSTOMER", "Customer"
        MERCHANT = "MERCHANT", "Merchant"
        OPERATOR = "OPERATOR", "Operator"

    class Status(models.TextChoices):
        NORMAL = "NORMAL", "Normal"
        DEBT_USER = "DEBT_USER", "Debt user"

    class PayoutAccountKind(models.TextChoices):
        IBAN = KIND_IBAN, "IBAN"
        ACCOUNT_NUMBER = KIND_ACCOUNT_NUMBER, "Account number"

    # One display name instead of Django's first/last pair.
    first_name = None
    last_name = None

    user_id = models.CharField(
        max_length=64, unique=True, default=generate_user_id, validators=[user_id_validator], editable=False
    )
    full_name = models.CharField(max_length=150, blank=True)
    # Deliberately not indexed: the sweep flips `status` for many customers at once, and an
    # unindexed column lets PostgreSQL update the row in place (HOT) without touching indexes.
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CUSTOMER)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NORMAL)
    credit_limit = models.DecimalField(max_digits=12, decimal_places=2, default=default_credit_limit)

    phone_number = models.CharField(max_length=16, blank=True, validators=[phone_validator])
    passport_number = EncryptedTextField(blank=True, default="")
    # Never the full card number: brand, first 6, last 4 and the gateway's token.
    card_brand = models.CharField(max_length=16, blank=True)
    card_first6 = models.CharField(max_length=6, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    # Indexed: a gateway callback or the fake gateway finds the card holder by token.
    card_token = models.CharField(max_length=64, blank=True, db_index=True)
    # Merchants sign their refund-status webhooks with this (HMAC-SHA256); encrypted at rest
    # and shown in clear only once, when made.
    webhook_secret = EncryptedTextField(blank=True, default="")
    # Where a merchant's events are delivered (signed with the webhook secret); none when blank.
    webhook_url = models.URLField(max_length=500, blank=True)
    # Merchants: the bank account payouts go to (accounts.bank: an IBAN or a plain account
    # number, normalized), encrypted at rest and only ever shown masked; set through
    # services.merchant_payout_account_set, its one writer. The kind is blank when no account is.
    # Defaults in the database too: a row inserted by SQL that names none of them (the benches'
    # seeds) has no account, consistently.
    payout_account = EncryptedTextField(blank=True, default="", db_default="")
    payout_account_kind = models.CharField(
        max_length=16, choices=PayoutAccountKind.choices, blank=True, default="", db_default=""
    )
    payout_account_name = models.CharField(max_length=ACCOUNT_NAME_MAX_LENGTH, blank=True, default="", db_default="")
    # Customers: charge the card on file automatically on each due date.
    autopay = models.BooleanField(default=True)
    # Merchants: the price of a plan sold (DESIGN §6), set by operators, each change recorded
    # (MerchantPricingChange). Empty: the settings' defaults, BNPL_MERCHANT_FEE_PERCENT and
    # BNPL_MERCHANT_FEE_FIXED, as they are when a plan becomes ACTIVE (accounts.pricing).
    fee_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Merchants: percent of each plan total taken as the fee (0 to 100). Empty: the default.",
    )
    fee_fixed = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Merchants: fixed amount added to each plan's fee, in the plan's currency. Empty: the default.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BnplUserManager()

    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ["id"]
        constraints = [
            # "Alice" and "alice" are one login name, even when two sign-ups race.
            models.UniqueConstraint(Lower("username"), name="user_username_ci_unique"),
            models.CheckConstraint(condition=models.Q(credit_limit__gte=0), name="user_credit_limit_not_negative"),
            models.CheckConstraint(
                condition=models.Q(role__in=["CUSTOMER", "MERCHANT", "OPERATOR"]), name="user_role_valid"
            ),
            models.CheckConstraint(condition=models.Q(status__in=["NORMAL", "DEBT_USER"]), name="user_status_valid"),
            models.CheckConstraint(
                condition=models.Q(fee_percent__isnull=True) | models.Q(fee_percent__gte=0, fee_percent__lte=100),
                name="user_fee_percent_0_100",
            ),
            models.CheckConstraint(
                condition=models.Q(fee_fixed__isnull=True) | models.Q(fee_fixed__gte=0),
                name="user_fee_fixed_not_negative",
            ),
            # An account has its kind and its holder's name; no account, neither. (Ciphertext is
            # never empty, so "no account" can be told in SQL.)
            models.CheckConstraint(
                condition=models.Q(payout_account="", payout_account_kind="", payout_account_name="")
                | (
                    ~models.Q(payout_account="")
                    & models.Q(payout_account_kind__in=["IBAN", "ACCOUNT_NUMBER"])
                    & ~models.Q(payout_account_name="")
                ),
                name="user_payout_account_complete",
            ),
        ]

    def __str__(self) -> str:
        return self.user_id

    def save(self, *args, **kwargs) -> None:
        # Operators are exactly the staff: the admin is theirs and no one else's.
        self.is_staff = self.role == self.Role.OPERATOR
        super().save(*args, **kwargs)

    @property
    def is_customer(self) -> bool:
        return self.role == self.Role.CUSTOMER

    @property
    def is_merchant(self) -> bool:
        return self.role == self.Role.MERCHANT

    @property
    def is_operator(self) -> bool:
        return self.role == self.Role.OPERATOR

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone_number)

    @property
    def masked_passport(self) -> str:
        return mask_passport(self.passport_number)

    @property
    def masked_card(self) -> str:
        return mask_card(self.card_first6, self.card_last4)

    @property
    def masked_payout_account(self) -> str:
        # No kind, no account (a constraint): the encrypted column, often deferred (the token
        # user's row), is then not read at all.
        if not self.payout_account_kind:
            return ""
        return mask_bank_account(self.payout_account)


class MerchantPricingChange(models.Model):
    """One operator's change of a merchant's pricing: who, when, and the values before and
    after (empty: the settings' default). Written by ``user_save_by_operator`` only, in the
    transaction that saved the merchant; never edited."""

    merchant = models.ForeignKey(User, on_delete=models.PROTECT, related_name="pricing_changes")
    changed_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, related_name="+", db_index=False)
    changed_at = models.DateTimeField(auto_now_add=True)
    fee_percent_before = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    fee_percent_after = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    fee_fixed_before = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    fee_fixed_after = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["merchant", "-changed_at"], name="pricing_change_merchant")]

    def __str__(self) -> str:
        return f"Pricing of {self.merchant_id} changed at {self.changed_at:%Y-%m-%d %H:%M}"
