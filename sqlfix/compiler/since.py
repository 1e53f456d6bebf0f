"""Which PostgreSQL major a data statement needs: for the load error of an older server.

An older server's grammar lacks the newer syntax, and all it says is "syntax error at or
near ...", which reads like a typo in the fixture. The statement is read by pglast
(libpg_query, the newest grammar), so a MERGE inside a WITH is found as well as a bare one.
Versions from the PostgreSQL release notes: MERGE 15; its RETURNING and WHEN NOT MATCHED
BY SOURCE 17.
"""

from __future__ import annotations

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
    needed: tuple[int, str] | None = None
    for raw in parsed:
        statement = raw.stmt
        if not isinstance(statement, ast.MergeStmt):
            continue
        if getattr(statement, "returningClause", None) or getattr(statement, "returningList", None):
            return 170000, "MERGE ... RETURNING"
        kinds = {clause.matchKind for clause in statement.mergeWhenClauses or ()}
        if MergeMatchKind.MERGE_WHEN_NOT_MATCHED_BY_SOURCE in kinds:
            return 170000, "MERGE ... WHEN NOT MATCHED BY SOURCE"
        needed = (150000, "MERGE")
    return needed
