"""Which database the code runs on, asked in one place.

The hot paths (plan origination, the sweep, late fees) have a hand-written PostgreSQL
statement beside their ORM path, each with a test holding the two equal; the ORM path
serves the embedded SQLite default (``make run`` with nothing installed). Advisory locks
exist on PostgreSQL only; SQLite serialises writers by itself.
"""

from django.db import DatabaseError, connection
from django.db.models import Model
from django.utils import timezone


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


def model_columns(model: type[Model], alias: str = "") -> str:
    """Every column of ``model``, in the order of its fields (``alias.column`` with an alias):
    the select list of a written-out statement whose rows become model instances."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{field.column}" for field in model._meta.concrete_fields)


def row_save(row: Model, fields: list[str]) -> None:
    """Save ``fields`` of ``row`` and only those, as ``row.save(update_fields=fields)`` does
    (an ``auto_now`` field among them set to now); on PostgreSQL by a written-out UPDATE, which
    the hot paths save rows with because the ORM took longer composing its UPDATE than the
    database took to run it (core/tests/test_db.py holds the two equal)."""
    if not postgresql():
        row.save(update_fields=fields)
        return
    meta = type(row)._meta
    columns = [meta.get_field(name) for name in fields]
    now = timezone.now()
    for field in columns:
        if getattr(field, "auto_now", False):
            setattr(row, field.attname, now)
    # The table's and the columns' own names, from the model.
    assignments = ", ".join(f"{connection.ops.quote_name(field.column)} = %s" for field in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {connection.ops.quote_name(meta.db_table)} SET {assignments} WHERE id = %s",  # noqa: S608  # nosec B608
            [*(getattr(row, field.attname) for field in columns), row.pk],
        )
        if cursor.rowcount != 1:
            raise DatabaseError("Save with update_fields did not affect any rows.")  # as Model.save says
