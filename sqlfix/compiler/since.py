"""Which PostgreSQL major a data statement needs: for the load error of an older server.

An older server's grammar lacks the newer syntax, and all it says is "syntax error at or
near ...", which reads like a typo in the fixture. The statement is read by pglast
(libpg_query, the newest grammar), and every node of it is looked at, so a MERGE inside a
WITH, or as a WITH's query, is found as well as a bare one; numeric literals are read
from pglast's scanner (the tree keeps their value, not how they were written). Versions
from the PostgreSQL release notes: SEARCH and CYCLE of a recursive WITH 14; MERGE 15;
IS JSON, the SQL/JSON constructors (JSON_OBJECT, JSON_ARRAY and their aggregates),
`1_000` and `0x`/`0o`/`0b` integer literals 16; MERGE's RETURNING and WHEN NOT MATCHED BY
SOURCE, JSON_TABLE, JSON_QUERY/JSON_VALUE/JSON_EXISTS, JSON(), JSON_SCALAR and
JSON_SERIALIZE 17; RETURNING WITH (OLD/NEW AS ...) 18.
"""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast, parse_sql
from pglast.enums.primnodes import MergeMatchKind
from pglast.parser import ParseError, scan

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
    literal = _literal_needs(text)
    if literal is not None:
        found.append(literal)
    return max(found, default=None)


# Node types whose mere presence needs a major: (server_version_num, what to call it).
_SINCE: dict[type[ast.Node], tuple[int, str]] = {
    ast.CTESearchClause: (140000, "SEARCH in a recursive WITH"),
    ast.CTECycleClause: (140000, "CYCLE in a recursive WITH"),
    ast.JsonTable: (170000, "JSON_TABLE"),
    ast.JsonIsPredicate: (160000, "IS JSON"),
    ast.JsonObjectConstructor: (160000, "JSON_OBJECT"),
    ast.JsonArrayConstructor: (160000, "JSON_ARRAY"),
    ast.JsonArrayQueryConstructor: (160000, "JSON_ARRAY"),
    ast.JsonObjectAgg: (160000, "JSON_OBJECTAGG"),
    ast.JsonArrayAgg: (160000, "JSON_ARRAYAGG"),
    ast.JsonFuncExpr: (170000, "JSON_QUERY, JSON_VALUE or JSON_EXISTS"),
    ast.JsonParseExpr: (170000, "JSON()"),
    ast.JsonScalarExpr: (170000, "JSON_SCALAR"),
    ast.JsonSerializeExpr: (170000, "JSON_SERIALIZE"),
}


def _literal_needs(text: str) -> tuple[int, str] | None:
    """16 for `1_000` or a `0x1F`/`0o17`/`0b101` literal: older scanners split them."""
    try:
        tokens = scan(text)
    except ParseError:
        return None
    for token in tokens:
        if token.name in ("ICONST", "FCONST"):
            written = text[token.start:token.end + 1]
            if "_" in written or written[:2].lower() in ("0x", "0o", "0b"):
                return 160000, f"the numeric literal {written}"
    return None


def _needs(node: ast.Node) -> tuple[int, str] | None:
    if isinstance(node, ast.MergeStmt):
        if getattr(node, "returningClause", None) or getattr(node, "returningList", None):
            return 170000, "MERGE ... RETURNING"
        kinds = {clause.matchKind for clause in node.mergeWhenClauses or ()}
        if MergeMatchKind.MERGE_WHEN_NOT_MATCHED_BY_SOURCE in kinds:
            return 170000, "MERGE ... WHEN NOT MATCHED BY SOURCE"
        return 150000, "MERGE"
    if isinstance(node, ast.ReturningClause) and node.options:
        return 180000, "RETURNING WITH (OLD/NEW AS ...)"
    return _SINCE.get(type(node))


def _walk(node: object) -> Iterator[ast.Node]:
    """Every node in `node`: a node, or a tuple of them at any depth (VALUES' rows are a
    tuple of tuples of expressions)."""
    if isinstance(node, tuple | list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, ast.Node):
        yield node
        for name in node:  # a node iterates over its attributes' names
            yield from _walk(getattr(node, name, None))
