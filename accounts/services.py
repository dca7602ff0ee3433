"""Every change to users, and to the refresh tokens they hold, goes through here."""

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts.bank import PayoutAccountInvalid, payout_account_after
from accounts.cards import card_tokenize, normalize_card_number
from accounts.errors import UserIdTaken, UsernameTaken
from accounts.masking import mask_bank_account
from accounts.models import MerchantPricingChange, User, generate_user_id, generate_webhook_secret
from core.problems import FieldInvalid

logger = logging.getLogger(__name__)


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


@transaction.atomic
def user_settings_update(
    *,
    user: User,
    autopay: bool | None = None,
    webhook_url: str | None = None,
    payout_account: str | None = None,
    payout_account_name: str | None = None,
) -> User:
    """Change what a user may change about themselves (validated by api.serializers.MeUpdateIn),
    all or nothing. Raises FieldInvalid as merchant_payout_account_set does."""
    if payout_account is not None or payout_account_name is not None:
        merchant_payout_account_set(merchant=user, account=payout_account, name=payout_account_name, changed_by=user)
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


@transaction.atomic
def user_save_by_operator(*, user: User, operator: User | None) -> MerchantPricingChange | None:
    """Save ``user`` as an operator edited it (the admin's form) and, when its pricing
    (``fee_percent``, ``fee_fixed``) differs from the row's, record who changed it, when, and
    the values before and after, in the same transaction. Returns the change recorded, if any."""
    # The row is locked before it is compared: two operators saving at once each record the
    # change from what the other left, never both from the same "before".
    before = (
        User.objects.select_for_update(no_key=True).filter(pk=user.pk).values_list("fee_percent", "fee_fixed").get()
    )
    user.save()
    if (user.fee_percent, user.fee_fixed) == before:
        return None
    return MerchantPricingChange.objects.create(
        merchant=user,
        changed_by=operator,
        fee_percent_before=before[0],
        fee_percent_after=user.fee_percent,
        fee_fixed_before=before[1],
        fee_fixed_after=user.fee_fixed,
    )


def merchant_payout_account_set(
    *, merchant: User, account: str | None = None, name: str | None = None, changed_by: User
) -> User:
    """Set, replace or remove ``merchant``'s payout bank account and its holder's name.

    ``account`` and ``name`` as accounts.bank.payout_account_after takes them (checked and
    normalized here, whoever calls). Raises FieldInvalid naming ``payout_account`` or
    ``payout_account_name``. The change is logged with both accounts masked, and who made it.
    """
    if not merchant.is_merchant:
        raise FieldInvalid(
            "payout_account" if account is not None else "payout_account_name", "Only merchants are paid out."
        )
    # The row under lock: two changes at once end as one of them, never half of each.
    current = (
        User.objects.select_for_update()
        .only("pk", "payout_account", "payout_account_kind", "payout_account_name")
        .get(pk=merchant.pk)
    )
    try:
        number, kind, holder = payout_account_after(
            number=current.payout_account,
            kind=current.payout_account_kind,
            holder=current.payout_account_name,
            account=account,
            name=name,
        )
    except PayoutAccountInvalid as exc:
        raise FieldInvalid(exc.field, exc.message) from exc
    before = mask_bank_account(current.payout_account)
    merchant.payout_account, merchant.payout_account_kind, merchant.payout_account_name = number, kind, holder
    merchant.save(update_fields=["payout_account", "payout_account_kind", "payout_account_name", "updated_at"])
    logger.info(
        "Payout account of %s set by %s: %s -> %s",
        merchant.user_id,
        changed_by.user_id,
        before or "(none)",
        mask_bank_account(number) or "(none)",
    )
    return merchant


# --- Refresh tokens -------------------------------------------------------------------------
# simplejwt signs them; its token_blacklist app records each one issued (OutstandingToken,
# written by RefreshToken.for_user) and each one spent or revoked (BlacklistedToken, one per
# outstanding row: the unique key that makes spending a token a once-only event).

TOKENS_PRUNE_CHUNK = 10_000


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


@transaction.atomic
def refresh_token_rotate(*, refresh: str) -> TokenPair:
    """Spend the refresh token ``refresh``: blacklist it and return a new pair for its user,
    the new refresh token recorded as outstanding. A token is spent once: of two calls with
    it, even at the same moment, one gets a pair and the other an error.

    Raises simplejwt's TokenError (malformed, expired, of the wrong type, blacklisted, or
    spent by a concurrent call) and AuthenticationFailed ``no_active_account`` (its user
    is inactive or gone; the token is left unspent).
    """
    token = RefreshToken(refresh)  # signature, expiry, type, and not blacklisted (a read)
    user = (
        User.objects.filter(**{api_settings.USER_ID_FIELD: token.get(api_settings.USER_ID_CLAIM)})
        .only("pk", "is_active", api_settings.USER_ID_FIELD)
        .first()
    )
    if not api_settings.USER_AUTHENTICATION_RULE(user):
        # DRF's exception, as simplejwt's refresh raised it: the problem's code is this one
        # (simplejwt's AuthenticationFailed would answer authentication_failed).
        raise AuthenticationFailed(_("No active account found for the given token."), "no_active_account")
    _refresh_token_spend(token, raw=refresh, user=user)
    # The same claims under a new id and lifetime, as simplejwt rotates them.
    token.set_jti()
    token.set_exp()
    token.set_iat()
    encoded = str(token)
    OutstandingToken.objects.create(
        user=user,
        jti=token[api_settings.JTI_CLAIM],
        token=encoded,
        created_at=token.current_time,
        expires_at=datetime_from_epoch(token["exp"]),
    )
    return TokenPair(access=str(token.access_token), refresh=encoded)


@transaction.atomic
def refresh_token_revoke(*, refresh: str) -> None:
    """Blacklist the refresh token ``refresh`` (log out): from now on it refreshes nothing and
    cannot be revoked again. Access tokens already made from it stay valid until they
    expire (``ACCESS_TOKEN_LIFETIME``): they are checked against no list.

    Raises simplejwt's TokenError (malformed, expired, of the wrong type, or already
    blacklisted: spent by a refresh or revoked before).
    """
    token = RefreshToken(refresh)
    _refresh_token_spend(token, raw=refresh, user=None)


def _refresh_token_spend(token: RefreshToken, *, raw: str, user: User | None) -> None:
    """Blacklist ``token``, or raise TokenError when it already is. simplejwt's own
    ``blacklist()`` is a get-or-create: two refreshes of one token at the same moment both
    pass the blacklist check and both "blacklist" it, so both get a new pair. Here the
    insert decides: the unique key lets one transaction in, the other waits for it and fails."""
    jti = token[api_settings.JTI_CLAIM]
    outstanding = OutstandingToken.objects.filter(jti=jti).first()
    if outstanding is None:  # issued before the blacklist app was installed
        if user is None:
            user_id = token.get(api_settings.USER_ID_CLAIM)
            user = User.objects.filter(**{api_settings.USER_ID_FIELD: user_id}).only("pk").first()
        outstanding, _created = OutstandingToken.objects.get_or_create(
            jti=jti,
            defaults={
                "user": user,
                "token": raw,
                "created_at": token.current_time,
                "expires_at": datetime_from_epoch(token["exp"]),
            },
        )
    try:
        with transaction.atomic():  # a savepoint: the losing side still answers cleanly
            BlacklistedToken.objects.create(token=outstanding)
    except IntegrityError as exc:
        raise TokenError(_("Token is blacklisted")) from exc


def outstanding_tokens_prune(*, chunk: int = TOKENS_PRUNE_CHUNK) -> int:
    """Delete the records of refresh tokens that have expired (their outstanding rows, and
    the blacklisted rows with them): an expired token is refused whatever the blacklist
    says. Tokens not yet expired keep theirs. Returns how many outstanding rows went.
    """
    # Past the expiry plus the leeway the token backend grants, or a revoked token just
    # past its expiry would be accepted again.
    cutoff = timezone.now() - token_backend.get_leeway()
    expired = OutstandingToken.objects.filter(expires_at__lte=cutoff).order_by("pk")
    deleted, after = 0, 0
    while True:
        # A chunk at a time in primary-key order (no index on expires_at: each chunk's scan
        # starts where the last one ended). One delete of everything expired would load
        # every expired row first, for the collector's cascade to the blacklisted ones.
        ids = list(expired.filter(pk__gt=after).values_list("pk", flat=True)[:chunk])
        if not ids:
            return deleted
        _total, per_model = OutstandingToken.objects.filter(pk__in=ids).only("pk").delete()
        deleted += per_model.get(OutstandingToken._meta.label, 0)
        after = ids[-1]
