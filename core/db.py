"""Which database the code runs on, asked in one place.

The hot paths (plan origination, the sweep, late fees) have a hand-written PostgreSQL
statement beside their ORM path, each with a test holding the two equal; the ORM path
serves the embedded SQLite default (``make run`` with nothing installed). Advisory locks
exist on PostgreSQL only; SQLite serialises writers by itself.
"""

from django.db import connection


def postgresql() -> bool:
    """Whether the default connection is PostgreSQL, where the hand-written statements run."""
    return connection.vendor == "postgresql"


def advisory_xact_lock_try(key: int) -> bool:
    """Take the transaction-scoped advisory lock ``key``; False when another transaction holds
    it. Always True where there are no advisory locks (SQLite: one writer at a time)."""
    if not postgresql():
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
        return bool(cursor.fetchone()[0])
