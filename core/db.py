"""Which database the code runs on, asked in one place.

The hot paths (plan origination, the sweep, late fees) have a hand-written PostgreSQL
statement beside their ORM path, each with a test holding the two equal; the ORM path
serves the embedded SQLite default (``make run`` with nothing installed). Advisory locks
exist on PostgreSQL only; SQLite serialises writers by itself.
"""

import contextlib
import functools
import re

from django.db import DatabaseError, connection, transaction
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


KEYS = "{keys}"


@functools.cache
def _keys_matched(sql: str, one: bool) -> str:
    return sql.replace(KEYS, "= %s" if one else "= ANY(%s)")


def keys_match(sql: str, keys) -> tuple[str, object]:
    """``sql`` with its ``{keys}`` (after a column) matching ``keys``, and the parameter: ``=
    %s`` for one key, which PostgreSQL plans and runs faster than an array of one (a payment
    is a batch of one), else ``= ANY(%s)`` with the keys as an array."""
    keys = list(keys)
    if len(keys) == 1:
        return _keys_matched(sql, True), keys[0]
    return _keys_matched(sql, False), keys


def model_columns(model: type[Model], alias: str = "") -> str:
    """Every column of ``model``, in the order of its fields (``alias.column`` with an alias):
    the select list of a written-out statement whose rows become model instances."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{field.column}" for field in model._meta.concrete_fields)


@functools.cache
def _loading(
    model: type[Model], vendor: str, fields: tuple[str, ...] | None
) -> tuple[list[str], list[tuple[int, list, object]]]:
    """The attribute names of ``fields`` (every column in model_columns' order when None),
    and for each column with converters (the backend's, then the field's, as the ORM applies
    them) its position, its converters and the column expression they take."""
    meta = model._meta
    columns = meta.concrete_fields if fields is None else [meta.get_field(name) for name in fields]
    if fields is not None and columns != [field for field in meta.concrete_fields if field in columns]:
        # Model.from_db takes a subset's values in the model's field order.
        raise ValueError(f"{fields} are not in {model.__name__}'s field order.")
    names, converting = [], []
    for position, field in enumerate(columns):
        names.append(field.attname)
        column = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if converters:
            converting.append((position, converters, column))
    return names, converting


def row_converted(model: type[Model], row, start: int = 0, fields: tuple[str, ...] | None = None) -> list:
    """The values of ``row``'s columns from ``start`` on (every column of ``model`` in
    model_columns' order, or ``fields``, which keep the model's field order) as the ORM gives
    them: its converters applied."""
    names, converting = _loading(model, connection.vendor, fields)
    values = list(row[start : start + len(names)])
    for position, converters, column in converting:
        value = values[position]
        for convert in converters:
            value = convert(value, column, connection)
        values[position] = value
    return values


def model_from_row(model: type[Model], row, start: int = 0, fields: tuple[str, ...] | None = None) -> Model:
    """The ``model`` instance the ORM would build from the columns of ``row`` that begin at
    ``start`` in model_columns' order, or holding only ``fields`` in that order (the rest
    deferred): a written-out statement's row made a model without the ORM's per-query setup
    (RawQuerySet composed its converters anew for every query)."""
    names = fields if fields is not None else _loading(model, connection.vendor, None)[0]
    return model.from_db(connection.alias, names, row_converted(model, row, start, fields))


def models_fetched(model: type[Model], sql: str, params, fields: tuple[str, ...] | None = None) -> list[Model]:
    """``sql``'s rows (its select list ``model_columns(model)``, or ``fields`` in the model's
    order) as ``model`` instances."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [model_from_row(model, row, fields=fields) for row in cursor.fetchall()]


def row_by_key(model: type[Model], alias: str, key: str, columns: str | None = None, *, outer: bool = False) -> str:
    """``[LEFT] JOIN LATERAL (SELECT columns FROM model's table WHERE id = key LIMIT 1) alias ON
    true``: the one row ``key`` names, found through the primary key whatever the statistics say.

    A plain join to a row by its key lets the planner choose a merge join, which walks the
    primary key's index from its start up to the key; it does when the joining column's
    statistics are stale (its histogram from before its values grew past it: one payment's
    allocation read 20,000 installments that way). A LATERAL subquery with a LIMIT cannot be
    flattened into a join, so it is run per outer row, through the index."""
    selected = columns if columns is not None else model_columns(model)
    join = "LEFT JOIN LATERAL" if outer else "JOIN LATERAL"
    return f"{join} (SELECT {selected} FROM {model._meta.db_table} WHERE id = {key} LIMIT 1) {alias} ON true"  # noqa: S608  # nosec B608


def row_save(row: Model, fields: list[str]) -> None:
    """Save ``fields`` of ``row`` and only those, as ``row.save(update_fields=fields)`` does
    (an ``auto_now`` field among them set to now); on PostgreSQL by a written-out UPDATE, which
    the hot paths save rows with because the ORM took longer composing its UPDATE than the
    database took to run it (core/tests/test_db.py holds the two equal)."""
    rows_save([row], fields)


def rows_save(rows: list[Model], fields: list[str]) -> None:
    """``row_save(row, fields)`` for every one of ``rows`` (distinct rows of one model), on
    PostgreSQL in one UPDATE from arrays of their values: a batch saves hundreds of rows in
    one round trip. Raises DatabaseError when a row is gone, as ``Model.save`` does."""
    if not rows:
        return
    if not postgresql():
        for row in rows:
            row.save(update_fields=fields)
        return
    meta = type(rows[0])._meta
    columns = [meta.get_field(name) for name in fields]
    now = timezone.now()
    for field in columns:
        if getattr(field, "auto_now", False):
            for row in rows:
                setattr(row, field.attname, now)
    if len(rows) == 1:  # a payment's rows, mostly: PostgreSQL runs this faster than arrays of one
        (row,) = rows
        sql, params = _row_update(type(row), tuple(fields)), [*(getattr(row, f.attname) for f in columns), row.pk]
    else:
        sql = _rows_update(type(rows[0]), tuple(fields))
        params = [[row.pk for row in rows]]
        params += [
            [field.get_db_prep_save(getattr(row, field.attname), connection) for row in rows] for field in columns
        ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != len(rows):
            raise DatabaseError("Save with update_fields did not affect any rows.")  # as Model.save says


@functools.cache
def _row_update(model: type[Model], fields: tuple[str, ...]) -> str:
    """The UPDATE of ``fields`` of one row of ``model`` (its id last)."""
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(model._meta.get_field(name).column)} = %s" for name in fields)
    # The table's and the columns' own names, from the model.
    return f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE id = %s"  # noqa: S608  # nosec B608


@functools.cache
def _rows_update(model: type[Model], fields: tuple[str, ...]) -> str:
    """The UPDATE of ``fields`` of ``model``'s rows from arrays (ids first), each cast to its column's type."""
    meta, quote = model._meta, connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    table = quote(meta.db_table)
    assignments = ", ".join(f"{quote(field.column)} = v.c{n}" for n, field in enumerate(columns))
    arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in [meta.pk, *columns])
    names = ", ".join(["id", *(f"c{n}" for n in range(len(columns)))])
    # The table's and the columns' own names and types, from the model.
    return f"UPDATE {table} SET {assignments} FROM UNNEST({arrays}) AS v({names}) WHERE {table}.id = v.id"  # noqa: S608  # nosec B608


class RowSaves:
    """Rows changed in memory, each with the fields that changed, saved together: one
    ``rows_save`` per model and set of fields, so a row is written with no column it did not
    change (another writer may have changed that one meanwhile)."""

    def __init__(self) -> None:
        self._rows: dict[int, tuple[Model, list[str]]] = {}

    def add(self, row: Model, fields: list[str]) -> None:
        """Mark ``fields`` of ``row`` (this very object) changed."""
        _, changed = self._rows.setdefault(id(row), (row, []))
        changed.extend(field for field in fields if field not in changed)

    def save(self) -> None:
        """Save every row added, then forget them."""
        groups: dict[tuple[type[Model], tuple[str, ...]], list[Model]] = {}
        for row, fields in self._rows.values():
            groups.setdefault((type(row), tuple(sorted(fields))), []).append(row)
        self._rows.clear()
        for (_, fields), rows in groups.items():
            rows_save(rows, list(fields))


# A statement that writes no row: a read (or a lock), or an inner block's savepoint, whose
# writes are statements of their own. What a service may run before it refuses.
_WRITES_NOTHING = re.compile(r"\s*(SELECT|SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\b", re.IGNORECASE)


@contextlib.contextmanager
def atomic_refusing_first():
    """``transaction.atomic()`` for a service that refuses, when it does, before it writes.

    Alone it opens a transaction. Inside the caller's it adds no savepoint: a refusal then
    leaves nothing to undo, and the caller's transaction goes on (an Idempotency-Key keeps the
    refusal as its answer). A savepoint would cost two round trips on every call for the rare
    refusal. Should anything raise after the block wrote, the caller's transaction is marked
    to roll back, so nothing half-done can commit: the caller's next statement fails, loudly."""
    if not connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    wrote = False

    def watch(execute, sql, params, many, context):
        nonlocal wrote
        wrote = wrote or not _WRITES_NOTHING.match(sql)
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(watch):
            yield
    except BaseException:
        if wrote:
            transaction.set_rollback(True)
        raise
