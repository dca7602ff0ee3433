"""Every change to users goes through here."""

from django.db import IntegrityError, transaction

from accounts.cards import card_tokenize, normalize_card_number
from accounts.errors import UserIdTaken, UsernameTaken
from accounts.models import User, generate_user_id, generate_webhook_secret


@transaction.atomic
def user_register(
    *,
    username: str,
    password: str,
    role: str,
    full_name: str,
    phone_number: str,
    email: str,
    passport_number: str = "",
    card_number: str = "",
    user_id: str | None = None,
) -> User:
    """Create a customer or merchant with a hashed password; the card is kept tokenized only.

    Inputs are expected validated (api.serializers.RegisterIn). Raises UsernameTaken,
    UserIdTaken; a concurrent registration with the same name loses with the same error.
    """
    if User.objects.filter(username__iexact=username).exists():
        raise UsernameTaken()
    if user_id and User.objects.filter(user_id=user_id).exists():
        raise UserIdTaken()
    user = User(
        username=username,
        user_id=user_id or generate_user_id(),
        role=role,
        full_name=full_name,
        phone_number=phone_number,
        email=email,
        passport_number=passport_number,
    )
    if card_number:
        _set_card(user, card_number)
    if role == User.Role.MERCHANT:
        user.webhook_secret = generate_webhook_secret()
    user.set_password(password)
    try:
        # A savepoint, so the losing side of a race can still answer cleanly.
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        if User.objects.filter(user_id=user.user_id).exists():
            raise UserIdTaken() from exc
        raise UsernameTaken() from exc
    return user


def _set_card(user: User, card_number: str) -> None:
    details = card_tokenize(normalize_card_number(card_number))
    user.card_brand = details.brand
    user.card_first6 = details.first6
    user.card_last4 = details.last4
    user.card_token = details.token


def merchant_webhook_secret_rotate(*, merchant: User) -> str:
    """Give ``merchant`` a new webhook secret and return it: the only time it is shown."""
    secret = generate_webhook_secret()
    merchant.webhook_secret = secret
    merchant.save(update_fields=["webhook_secret", "updated_at"])
    return secret


def user_settings_update(*, user: User, autopay: bool | None = None, webhook_url: str | None = None) -> User:
    """Change what a user may change about themselves (validated by api.serializers.MeUpdateIn)."""
    fields = []
    if autopay is not None:
        user.autopay = autopay
        fields.append("autopay")
    if webhook_url is not None:
        user.webhook_url = webhook_url
        fields.append("webhook_url")
    if fields:
        user.save(update_fields=[*fields, "updated_at"])
    return user
