"""The isolation verifier: a fingerprint of every user table and sequence, compared per test.

Opt-in (`--sqlfix-verify`, `verify = true`). Before the first test the session
takes a fingerprint: per table (`FROM ONLY`, so an inherited table's rows count
once) the row count and a sum of 64-bit hashes of the rows' text, per sequence
its position, and the list of user tables and sequences itself. After each test
it takes another in one query and names what differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

_OWN = ("pg_catalog", "information_schema", "_sqlfix", "_sqlfix_baseline")
_RELATIONS = b"""
SELECT format('%%I.%%I', n.nspname, c.relname),
       CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'm' THEN 'materialized view' ELSE 'table' END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (c.relkind IN ('r', 'p', 'S') OR c.relkind = 'm' AND c.relispopulated)
  AND n.nspname <> ALL (%s)
  AND n.nspname NOT LIKE 'pg\\_%%' AND c.relpersistence <> 't'
ORDER BY 1
"""


@dataclass(frozen=True)
class Fingerprint:
    """What the verifier compares: "table s.t" -> (rows, checksum), "sequence s.q" -> position."""

    values: dict[str, tuple[Any, Any]]

    def differences(self, now: Fingerprint) -> list[str]:
        """One line per relation that changed, appeared or disappeared."""
        lines = []
        for name in sorted(set(self.values) | set(now.values)):
            old, new = self.values.get(name), now.values.get(name)
            if old == new:
                continue
            if old is None:
                lines.append(f"{name} appeared (created and committed by the test)")
            elif new is None:
                lines.append(f"{name} is gone (dropped and committed by the test)")
            elif name.startswith("sequence "):
                lines.append(f"{name}: position {old[0]} (is_called {bool(old[1])}) -> "
                             f"{new[0]} (is_called {bool(new[1])})")
            elif old[0] != new[0]:
                lines.append(f"{name}: {old[0]} -> {new[0]} rows")
            else:
                rows = "1 row" if new[0] == 1 else f"{new[0]} rows"
                lines.append(f"{name}: same {rows}, different contents (rows updated)")
        return lines


def take(conn: psycopg.Connection[Any], sequences: bool, inside: bool = False) -> Fingerprint:
    """Fingerprint every user table (and sequence, if `sequences`); two round trips.

    Runs in a transaction of its own on `conn` (idle, outside any test), rolled back;
    with `inside`, in the transaction `conn` has open (the layer stack's), left open.
    """
    cur = conn.cursor(row_factory=tuple_row)
    try:
        relations = cur.execute(_RELATIONS, [list(_OWN)]).fetchall()
        # a REFRESH by another connection is committed: a populated view is compared too
        parts = [sql.SQL("SELECT {}, count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)"
                         " FROM ONLY {} AS t").format(sql.Literal(f"{kind} {name}"), sql.SQL(name))
                 for name, kind in relations if kind != "sequence"]
        if sequences:
            parts += [sql.SQL("SELECT {}, last_value, is_called::int FROM {}").format(
                sql.Literal(f"sequence {name}"), sql.SQL(name))
                for name, kind in relations if kind == "sequence"]
        rows = cur.execute(sql.SQL(" UNION ALL ").join(parts)).fetchall() if parts else []
        return Fingerprint({r[0]: (r[1], r[2]) for r in rows})
    finally:
        if not inside:
            conn.rollback()
