"""Reads that may lag go to a read replica, when one is configured (``DATABASE_REPLICA_URL``).

Only code that asks for it reads from the replica (``with reading_from_replica():``), so a
request never reads its own write from a replica that has not caught up: the analytics
dashboard does, every other read and every write go to the primary. Without a replica the
context changes nothing. Migrations run on the primary only.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings

REPLICA = "replica"
_prefer_replica: ContextVar[bool] = ContextVar("prefer_replica", default=False)


@contextmanager
def reading_from_replica() -> Iterator[None]:
    """Within this block, ORM reads go to the replica (when there is one)."""
    token = _prefer_replica.set(True)
    try:
        yield
    finally:
        _prefer_replica.reset(token)


class ReplicaRouter:
    def db_for_read(self, model, **hints) -> str | None:
        if _prefer_replica.get() and REPLICA in settings.DATABASES:
            return REPLICA
        return None  # the primary

    def db_for_write(self, model, **hints) -> str | None:
        return None  # always the primary

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True  # one database, two copies of it

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db != REPLICA
