"""Extra read-only fields of the own profile (``GET /api/v1/auth/me/``) that other apps own.

``accounts`` imports no other app, so an app that knows something about a user (the credit
balance lives in the payments ledger) registers a function here in its ``AppConfig.ready``.
"""

from collections.abc import Callable

from accounts.models import User

_EXTRAS: dict[str, Callable[[User], object]] = {}


def register_profile_field(name: str, reader: Callable[[User], object]) -> None:
    """Serve ``reader(user)`` as the profile field ``name``."""
    _EXTRAS[name] = reader


def profile_field(name: str, user: User, default=None):
    """The registered value of ``name`` for ``user``, or ``default`` when no app provides it."""
    reader = _EXTRAS.get(name)
    return default if reader is None else reader(user)
