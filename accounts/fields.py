"""A text column encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

Keys come from ``FIELD_ENCRYPTION_KEY`` (comma-separated: the first encrypts, all decrypt,
so a key can be rotated by prepending a new one). Ciphertext is randomised, so the column
cannot be searched or compared in SQL: that is the point.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    secrets = [key.strip() for key in keys.split(",") if key.strip()]
    if not secrets:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY is empty.")
    # Any high-entropy secret works: it is stretched to Fernet's 32-byte key format.
    return MultiFernet(
        [Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"bnpl-field-v1:" + s.encode()).digest())) for s in secrets]
    )


def encrypt_str(value: str) -> str:
    """Ciphertext (Fernet token as text) for ``value``."""
    return _fernet(settings.FIELD_ENCRYPTION_KEY).encrypt(value.encode()).decode()


def decrypt_str(token: str) -> str:
    """The plaintext behind a token made by ``encrypt_str`` with any configured key."""
    try:
        return _fernet(settings.FIELD_ENCRYPTION_KEY).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured("An encrypted value cannot be read with FIELD_ENCRYPTION_KEY.") from exc


class EncryptedTextField(models.TextField):
    """Stores text encrypted; reads give the plaintext back. Empty values stay empty."""

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt_str(value)

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return decrypt_str(value)
