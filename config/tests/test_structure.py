"""The ownership rules of STYLE §9, read from the source: one writer of installment and
late-fee state, the ledger the only writer of its tables, no ORM internals in app code.

import-linter holds the arrows between apps (``make lint``); these hold what an import
graph cannot see.
"""

import ast
from pathlib import Path

import pytest

from bnpl.models import Installment, LateFee
from ledger.models import JournalEntry, Posting

ROOT = Path(__file__).resolve().parents[2]
APPS = ("core", "accounts", "events", "ledger", "bnpl", "payments", "refunds", "settlements", "ops", "config")
WRITER = ROOT / "bnpl" / "services" / "installments.py"
# Columns of installment and fee state: only the writer assigns them (rows are born with
# them in origination and late_fees, by constructor or INSERT, which this does not look at).
STATE_COLUMNS = {"amount_due", "amount_paid", "amount_reserved", "paid_at", "overdue_since", "waived_at", "waived_by"}


def _sources() -> list[Path]:
    """The application's own modules: no tests, no migrations (history is never edited)."""
    return sorted(
        path
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "tests" not in path.parts and "migrations" not in path.parts
    )


def _strings(tree: ast.AST) -> list[str]:
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _root(node: ast.AST) -> str:
    """The name a chain of attributes and calls starts from (``Installment`` in
    ``Installment.objects.filter(...).update``)."""
    while isinstance(node, ast.Attribute | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _state_writes(tree: ast.AST) -> list[str]:
    """Assignments of installment or fee state found in ``tree``: a state column set on an
    object, a status set to one of their choices, an ``update()`` of their querysets."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(leaf, ast.Attribute) and leaf.attr in STATE_COLUMNS:
                        found.append(f"line {node.lineno}: .{leaf.attr} assigned")
            value = _dotted(node.value)
            if value.startswith(("Installment.Status.", "LateFee.Status.")):
                found.append(f"line {node.lineno}: status set to {value}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "update"
            and _root(node.func.value) in {"Installment", "LateFee"}
        ):
            found.append(f"line {node.lineno}: {_root(node.func.value)} rows updated")
    for text in _strings(tree):
        for table in (Installment._meta.db_table, LateFee._meta.db_table):
            if f"update {table}" in " ".join(text.lower().split()):
                found.append(f"UPDATE {table} in SQL")
    return found


def test_the_rules_see_what_they_look_for():
    """The scan finds each kind of write it forbids (else the tests below could not fail)."""
    sample = ast.parse(
        "installment.amount_paid += x\n"
        "fee.status = LateFee.Status.WAIVED\n"
        "Installment.objects.filter(pk=1).update(status='PAID')\n"
        "SQL = 'UPDATE   bnpl_latefee SET amount_paid = 0'\n"
    )
    assert len(_state_writes(sample)) == 4


def test_only_the_installments_module_changes_installment_and_fee_state():
    offenders = {
        str(path.relative_to(ROOT)): writes
        for path in _sources()
        if path != WRITER and (writes := _state_writes(ast.parse(path.read_text())))
    }
    assert offenders == {}


@pytest.mark.parametrize("table", [JournalEntry._meta.db_table, Posting._meta.db_table])
def test_only_the_ledger_names_the_ledger_tables_in_sql(table):
    """Entries and postings are written by ``ledger_post``, ``ledger_post_many`` and the
    ledger's own SQL (ledger/sql.py): no other module's SQL names their tables."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in _sources()
        if path.parts[len(ROOT.parts)] != "ledger"
        and any(table in text for text in _strings(ast.parse(path.read_text())))
    ]
    assert offenders == []


def test_no_orm_internals_in_application_code():
    """Private ORM state (``_state``, ``_result_cache``, ``_prefetch_done``,
    ``_prefetched_objects_cache``) is left to Django: its shape changes between releases.
    A model may read its own ``self._state.adding``, as Django's documentation does."""
    internals = {"_state", "_result_cache", "_prefetch_done", "_prefetched_objects_cache"}
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}"
        for path in _sources()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr in internals
        and not (node.attr == "_state" and isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert offenders == []


def test_the_database_is_asked_in_one_place():
    """Code that differs between PostgreSQL and SQLite asks ``core.db``, not the connection."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in _sources()
        if path != ROOT / "core" / "db.py" and "connection.vendor" in path.read_text()
    ]
    assert offenders == []
