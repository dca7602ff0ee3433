"""What PostgreSQL could choose for a written-out statement: its joins' methods when nested
loops are all but forbidden, so a statement that leaves the planner no other way to join
(core.db.row_by_key) is told from one whose plan rests on the statistics."""

import json

from django.db import connection, transaction


def join_methods_without_nested_loops(sql: str, params) -> set[str]:
    """The join nodes of ``sql``'s plan with ``enable_nestloop`` off (a nested loop then costs
    far more than any other join, so it is chosen only where nothing else can join): a
    statement whose rows are found by key whatever the statistics has no other than
    "Nested Loop"."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_nestloop = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        (plan,) = cursor.fetchone()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found = set()

    def walk(node):
        if node["Node Type"] in ("Nested Loop", "Merge Join", "Hash Join"):
            found.add(node["Node Type"])
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    return found
