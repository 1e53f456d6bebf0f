"""Which PostgreSQL major a data statement needs: for the load error of an older server.

An older server's grammar lacks the newer syntax, and all it says is "syntax error at or
near ...", which reads like a typo in the fixture. The statement is read by pglast
(libpg_query, the newest grammar), and every node of it is looked at, so a MERGE inside a
WITH, or as a WITH's query, is found as well as a bare one. Versions from the PostgreSQL
release notes: MERGE 15; IS JSON 16; MERGE's RETURNING and WHEN NOT MATCHED BY SOURCE,
and JSON_TABLE, 17.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast, parse_sql
from pglast.enums.primnodes import MergeMatchKind
from pglast.parser import ParseError

__all__ = ["needed_version"]


def needed_version(text: str) -> tuple[int, str] | None:
    """(server_version_num, what needs it) for the newest syntax in `text`, or None.

    `text`: one statement; None too when pglast cannot parse it (then it is no newer
    syntax, but a plain error the server's message describes).
    """
    try:
        parsed = parse_sql(text)
    except ParseError:
        return None
    found = [need for raw in parsed if raw.stmt is not None
             for node in _walk(raw.stmt) if (need := _needs(node))]
    return max(found, default=None)


def _needs(node: ast.Node) -> tuple[int, str] | None:
    if isinstance(node, ast.MergeStmt):
        if getattr(node, "returningClause", None) or getattr(node, "returningList", None):
            return 170000, "MERGE ... RETURNING"
        kinds = {clause.matchKind for clause in node.mergeWhenClauses or ()}
        if MergeMatchKind.MERGE_WHEN_NOT_MATCHED_BY_SOURCE in kinds:
            return 170000, "MERGE ... WHEN NOT MATCHED BY SOURCE"
        return 150000, "MERGE"
    if isinstance(node, ast.JsonTable):
        return 170000, "JSON_TABLE"
    if isinstance(node, ast.JsonIsPredicate):
        return 160000, "IS JSON"
    return None


def _walk(node: ast.Node) -> Iterator[ast.Node]:
    """`node` and every node below it."""
    yield node
    for name in node:  # a node iterates over its attributes' names
        value = getattr(node, name, None)
        for child in value if isinstance(value, tuple | list) else (value,):
            if isinstance(child, ast.Node):
                yield from _walk(child)
