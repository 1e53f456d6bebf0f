"""The committed mode's bookkeeping: which tables differ from the baseline, and the test DSN.

A committed test writes for real, through any number of connections. Afterwards
only the tables that changed are truncated and refilled. "Changed" is decided by
a fingerprint per table, `(count(*), max(xmin))`, read in one query: an INSERT
or UPDATE leaves a row whose xmin (the writing transaction's id) is newer than
any before it, a DELETE or TRUNCATE lowers the count, and a rolled-back write
leaves no visible row. It is exact as long as no transaction is still writing
when a fingerprint is read (sqlfix reads them between tests) and transaction ids
do not wrap around between two tests.

Not chosen: the statistics counters (`pg_stat_user_tables.n_tup_*`) miss
TRUNCATE and, from PostgreSQL 15, other backends publish them only when idle,
at most once a second (a pool's connection may report after the next test began);
triggers would add work to every write of every test and change the user's schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import tuple_row

from sqlfix.database.baseline import _FOREIGN_KEYS, Baseline, own_rows

Table = tuple[str, str]
Fingerprint = tuple[int, int]


def fingerprints(
    conn: psycopg.Connection[Any], tables: Iterable[Table],
    partitioned: frozenset[Table] = frozenset(),
) -> dict[Table, Fingerprint]:
    """`(row count, newest xmin)` of each table's own rows (an INHERITS parent's without
    its children's; a partitioned table's whole), in one round trip (a scan of each table)."""
    tables = list(tables)
    if not tables:
        return {}
    parts = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}::int, count(*), coalesce(max(xmin::text::bigint), 0) FROM {}").format(
            sql.Literal(i), own_rows(t, partitioned))
        for i, t in enumerate(tables))
    rows = conn.cursor(row_factory=tuple_row).execute(parts).fetchall()
    return {tables[i]: (int(count), int(xmin)) for i, count, xmin in rows}


def referencing_closure(
    changed: Iterable[Table], edges: Iterable[tuple[Table, Table]]
) -> set[Table]:
    """`changed` and every table that references one of them, directly or not.

    TRUNCATE ... CASCADE empties those too, so they must be refilled as well.
    """
    result = set(changed)
    edges = list(edges)
    grew = True
    while grew:
        more = {child for child, parent in edges if parent in result and child not in result}
        result |= more
        grew = bool(more)
    return result


class ChangeTracker:
    """Fingerprints of the database at its baseline; says which tables moved since."""

    def __init__(self, conn: psycopg.Connection[Any], baseline: Baseline) -> None:
        self.tables = baseline.tables
        self.partitioned = baseline.partitioned
        cur = conn.cursor(row_factory=tuple_row)
        self.edges = [((r[0], r[1]), (r[2], r[3])) for r in cur.execute(_FOREIGN_KEYS)]
        self.prints = fingerprints(conn, self.tables, self.partitioned)
        conn.rollback()

    def to_restore(self, conn: psycopg.Connection[Any]) -> set[Table]:
        """The tables to truncate and refill: those that changed, with their referencing ones."""
        now = fingerprints(conn, self.tables, self.partitioned)
        conn.rollback()
        changed = [t for t in self.tables if now.get(t) != self.prints.get(t)]
        return referencing_closure(changed, self.edges) if changed else set()

    def restored(self, conn: psycopg.Connection[Any], tables: Iterable[Table]) -> None:
        """Take the fingerprints of freshly restored tables (their rows have new xmins)."""
        self.prints.update(fingerprints(conn, tables, self.partitioned))
        conn.rollback()


class DatabaseUrl(str):
    """A `postgresql://` URL (a str, for any library) whose repr() hides its password as
    `***`: pytest shows a failing test's arguments, fixture values among them, and CI
    logs keep what it shows."""

    __slots__ = ()

    def __repr__(self) -> str:
        try:
            params = conninfo_to_dict(str(self))
        except psycopg.Error:  # not one of as_url's: shown without any part of it
            return "'postgresql://(not shown)'"
        return repr(self.masked) if _SECRETS & set(params) else super().__repr__()

    @property
    def masked(self) -> str:
        """The URL with `***` for its password (and sslpassword)."""
        params = conninfo_to_dict(str(self))
        hidden = dict.fromkeys(_SECRETS & set(params), _MASK)
        # a placeholder as_url leaves as it is (it would write `***` as %2A%2A%2A)
        return as_url(make_conninfo("", **{**params, **hidden})).replace(_MASK, "***")


_MASK = "sqlfixPasswordMask7f3a"
_SECRETS = {"password", "sslpassword"}


def as_url(dsn: str) -> str:
    """A libpq conninfo (`host=... dbname=...`) or URL as a `postgresql://` URL.

    libpq, psycopg, SQLAlchemy (after `postgresql+psycopg`), Django's and Rails'
    DATABASE_URL conventions all read this form; a socket directory goes in `?host=`.
    """
    if dsn.startswith(("postgresql://", "postgres://")):
        return dsn
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = params.pop("host", "")
    # A socket folder, or several hosts (`h1,h2` with ports `5432,5433`), go in the query:
    # a netloc holds one host:port, and libpq reads the lists there
    in_query = host.startswith("/") or "," in host or "," in params.get("port", "")
    netloc = "" if in_query or not host else quote(host, safe="")
    if in_query:
        params["host"] = host
    elif "port" in params and netloc:
        netloc += f":{params.pop('port')}"
    dbname = quote(params.pop("dbname", ""), safe="")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}{netloc}/{dbname}{query}"
