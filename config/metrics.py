"""Business counters, kept in the cache (Redis when configured) so every process adds to
one total and the metrics endpoint can read them."""

from django.core.cache import cache
from django.db import transaction

PREFIX = "metrics:"


def counter_incr(name: str, amount: int = 1, **labels: str) -> None:
    """Add ``amount`` to a counter once the current transaction commits (never for a rollback)."""
    key = counter_key(name, **labels)

    def add() -> None:
        try:
            cache.incr(key, amount)
        except ValueError:  # first use: the key does not exist yet
            if not cache.add(key, amount, timeout=None):
                cache.incr(key, amount)

    transaction.on_commit(add)


def counter_value(name: str, **labels: str) -> int:
    return int(cache.get(counter_key(name, **labels)) or 0)


def counter_key(name: str, **labels: str) -> str:
    suffix = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"{PREFIX}{name}{{{suffix}}}"
