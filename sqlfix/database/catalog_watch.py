"""Did any system catalog change since the baseline? Complete by construction, cheap when not.

`catalog.take_schema` names changes of the kinds it knows; this module decides
*whether* anything changed, for every table of `pg_catalog` the session may read
(found in `pg_class`, not listed by hand): comments, large objects, ACLs of
built-in objects, extensions, operators, collations, text search, foreign-data
wrappers, extended statistics, storage and CLUSTER ON settings alike.

- `Watch.check`, step 1 (one small query): has any transaction committed since
  the mark? Every catalog change but VACUUM/ANALYZE's in-place updates of
  statistics fields commits a transaction id; the ids not yet visible in the
  mark's snapshot are looked up with `pg_xact_status`. None: nothing changed.
- Step 2 (one scan of the catalogs): per catalog, row count and the sum of the
  rows' `xmin`. An INSERT or DELETE changes the count, an UPDATE the `xmin`
  (in-place updates keep it). Equal: nothing changed.
- Step 3, for the catalogs whose figures moved: a digest of their rows'
  contents, without the fields TRUNCATE, VACUUM and ANALYZE rewrite, compared
  with the baseline's. Equal (a TRUNCATE by a test, settings sqlfix put back):
  the new figures become the mark.

Skipped: `pg_statistic` and `pg_statistic_ext_data` (ANALYZE), the temporary
schemas' own rows (made once per backend slot, kept). The settings
`catalog.take_settings` puts back (`pg_db_role_setting` rows that reach the
test database and session user, `ALLOW_CONNECTIONS`...) are left to it. On a
server given by DSN the shared catalogs (`pg_database`, `pg_authid`...) are
skipped too: other databases and users change them; the session user's role
stands in for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from sqlfix import __version__

_SKIPPED = ("pg_statistic", "pg_statistic_ext_data")  # ANALYZE writes them
# Fields rewritten by TRUNCATE, VACUUM, ANALYZE, CLUSTER (relfilenode...), and the
# database properties catalog.take_settings compares and puts back.
_VOLATILE = {
    "pg_class": {"relfilenode", "relpages", "reltuples", "relallvisible", "relfrozenxid",
                 "relminmxid"},
    "pg_database": {"datfrozenxid", "datminmxid", "datallowconn", "datconnlimit",
                    "datistemplate"},
}
_ROWS = {  # rows left out of a catalog's figures and digest
    "pg_namespace": "nspname !~ '^pg_(toast_)?temp_'",  # a backend slot's temporary schemas
    # ALTER ROLE/DATABASE ... SET reaching the test database's sessions: catalog.undo_settings
    "pg_db_role_setting": "NOT (setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname "
                          "= current_database())) AND setrole IN (0, (SELECT oid FROM pg_roles "
                          "WHERE rolname = session_user)))",
}
# Rows written by the transactions that committed since the mark (a parameter: their xids).
_NEW_ROWS = " || ':' || count(*) FILTER (WHERE xmin = ANY (%(xids)s::text[]::xid[]))"
_SESSION_ROLE = "role"  # the pseudo-catalog of the session user's role (DSN)
_ROLE = ("(SELECT md5(concat_ws(' ', rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb,"
         " rolcanlogin, rolreplication, rolbypassrls, rolconnlimit)) FROM pg_roles "
         "WHERE rolname = session_user)")
_CATALOGS = b"""
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'
  AND c.relname <> ALL (%(skipped)s) AND (%(shared)s OR NOT c.relisshared)
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY 1
"""
_COLUMNS = b"""
SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relname = ANY (%s)
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, a.attnum
"""
# Transactions that committed since the mark's snapshot was taken, or were running then
# (its xmin on): their ids, as 32-bit xids. Over _MAX_XIDS to look at (a long transaction
# elsewhere holds the xmin back): NULL, and every catalog's digest decides.
_MAX_XIDS = 50_000
_COMMITTED = b"""
WITH r AS (
  SELECT pg_snapshot_xmin(%(mark)s::pg_snapshot)::text::bigint AS lo,
         pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS hi
)
SELECT pg_current_snapshot()::text, CASE WHEN r.hi - r.lo > %(most)s THEN NULL ELSE coalesce((
  SELECT array_agg(mod(x, 4294967296)::text) FROM generate_series(r.lo, r.hi - 1) AS x
  WHERE pg_xact_status(x::text::xid8) = 'committed'), '{}') END
FROM r
"""
# Friendlier words for the catalogs a change is most often in (detection needs none).
_WORDS = {
    "pg_description": "comments: COMMENT ON", "pg_shdescription": "comments: COMMENT ON",
    "pg_largeobject_metadata": "large objects: lo_create, lo_import",
    "pg_largeobject": "large objects' data", "pg_extension": "extensions",
    "pg_namespace": "schemas, their owners and privileges", "pg_operator": "operators",
    "pg_collation": "collations", "pg_ts_config": "text search configurations",
    "pg_ts_dict": "text search dictionaries", "pg_foreign_data_wrapper": "foreign-data wrappers",
    "pg_foreign_server": "foreign servers", "pg_user_mapping": "user mappings",
    "pg_statistic_ext": "extended statistics: CREATE STATISTICS",
    "pg_index": "indexes; also ALTER TABLE ... CLUSTER ON",
    "pg_attribute": "columns; also ALTER TABLE ... SET STORAGE, SET STATISTICS",
    "pg_class": "tables, indexes, views, sequences", "pg_proc": "functions",
    "pg_type": "types", "pg_depend": "dependencies between objects", "pg_authid": "roles",
    "pg_auth_members": "role memberships: GRANT role", "pg_database": "databases",
    "pg_init_privs": "initial privileges", "pg_default_acl": "default privileges",
    "pg_tablespace": "tablespaces", "pg_opclass": "operator classes",
    "pg_opfamily": "operator families", "pg_conversion": "encoding conversions",
    "pg_language": "procedural languages",
}


@dataclass(frozen=True)
class Watch:
    """The catalogs at the baseline (a digest of each one's contents) and at the mark (the
    snapshot, and per catalog its row count)."""

    catalogs: tuple[str, ...]
    mark_query: bytes  # SELECT snapshot, ARRAY[count per catalog (, role)]
    check_query: bytes  # ARRAY[count:new rows per catalog (, role)]; parameter: the xids
    queries: dict[str, bytes]  # catalog -> its contents digest query
    role: bool  # the last figure is the session user's role (shared catalogs not read)
    digests: dict[str, str] = field(default_factory=dict)  # catalog -> digest, at the baseline
    snapshot: str = ""
    figures: tuple[str, ...] = ()

    @classmethod
    def take(cls, conn: psycopg.Connection[Any], shared: bool, cache: Path | None = None) -> Watch:
        """The baseline: every readable catalog, its digest and figures; `shared` watches the
        shared catalogs too (a server of sqlfix's own). Rolled back.

        `cache`: a JSON file that keeps the digests of the last catalogs seen, keyed by
        their fingerprint (per catalog its row count and the sum of its rows' xmin: any
        committed change of a catalog adds a transaction id never used before). The
        embedded server's saved schema cluster starts every session with the same
        catalogs; the fingerprint costs ~20 ms where the digests (every catalog row as
        text, hashed) cost ~130 ms. A damaged or foreign file is computed anew.
        """
        cur = conn.cursor(row_factory=tuple_row)
        try:
            names = [r[0] for r in cur.execute(
                _CATALOGS, {"skipped": list(_SKIPPED), "shared": shared})]
            columns: dict[str, list[str]] = {}
            for table, column in cur.execute(_COLUMNS, [names]):
                columns.setdefault(table, []).append(column)
        finally:
            conn.rollback()
        watch = cls(
            tuple(names),
            f"SELECT pg_current_snapshot()::text, ARRAY[{_figures(names, shared, '')}]".encode(),
            f"SELECT ARRAY[{_figures(names, shared, _NEW_ROWS)}]".encode(),
            {name: _digest_query(name, columns.get(name, [])) for name in names},
            not shared)
        key = watch._fingerprint(conn) if cache is not None else ""
        digests = _cached_digests(cache, key) if cache is not None else None
        if digests is None:
            digests = watch._digests(conn, names)
            if cache is not None:
                _keep_digests(cache, key, digests)
        watch = replace(watch, digests=digests)
        return watch.mark(conn)

    def _fingerprint(self, conn: psycopg.Connection[Any]) -> str:
        """A key for the catalogs' contents: their names and digest queries (the server's
        catalog columns, sqlfix's version), each one's rows and their xmins. Rolled back."""
        query = sql.SQL("SELECT ARRAY[{}]::text").format(sql.SQL(", ").join(
            sql.SQL("(SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) "
                    "FROM pg_catalog.{}{})").format(sql.Identifier(name), _where(name))
            for name in self.catalogs))
        try:
            row = conn.execute(query).fetchone()
        finally:
            conn.rollback()
        parts = [__version__, *self.catalogs, *(self.queries[n].decode() for n in self.catalogs),
                 str(row[0] if row else "")]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def mark(self, conn: psycopg.Connection[Any]) -> Watch:
        """The same baseline, with the catalogs' figures as they are now. Rolled back."""
        try:
            row = conn.execute(self.mark_query).fetchone()
        finally:
            conn.rollback()
        assert row is not None
        return replace(self, snapshot=str(row[0]), figures=tuple(str(v) for v in row[1]))

    def check(self, conn: psycopg.Connection[Any]) -> tuple[Watch, list[str], bool]:
        """(the watch to keep, the catalogs whose contents differ from the baseline's,
        whether any transaction committed since the mark).

        [] when nothing changed, or only what the baseline's digests leave out; the
        returned watch then marks the catalogs as they are now. Rolled back.
        """
        cur = conn.cursor(row_factory=tuple_row)
        try:
            row = cur.execute(_COMMITTED, {"mark": self.snapshot, "most": _MAX_XIDS}).fetchone()
            assert row is not None
            snapshot, xids = str(row[0]), row[1]
            if xids == []:  # nothing committed since the mark
                return replace(self, snapshot=snapshot), [], False
            scanned = None if xids is None else cur.execute(self.check_query, {"xids": xids})
            found = None if scanned is None else scanned.fetchone()
        finally:
            conn.rollback()
        if found is None:  # too many transactions to look at: every catalog's digest
            differ = self._differ(conn, self.catalogs)
            return (self if differ else self.mark(conn)), differ, True
        figures = [str(v) for v in found[0]]
        moved = [name for name, old, new in zip(self.catalogs, self.figures, figures, strict=False)
                 if new != f"{old}:0"]  # the role's figure, if any, is left out
        differ = self._differ(conn, moved)
        if self.role and self.figures[-1] != figures[-1]:
            differ.append(_SESSION_ROLE)  # catalog.take_schema names it
        if differ:
            return self, differ, True
        # The counts now, under the snapshot from before they were read: what committed
        # in between is looked at again next time.
        counts = [f.partition(":")[0] for f in figures[:len(self.catalogs)]]
        return (replace(self, snapshot=snapshot,
                        figures=tuple(counts + figures[len(self.catalogs):])), [], True)

    def _differ(self, conn: psycopg.Connection[Any], names: Collection[str]) -> list[str]:
        """The catalogs of `names` whose contents differ from the baseline's."""
        now = self._digests(conn, names)
        return [name for name in names if now[name] != self.digests[name]]

    def _digests(self, conn: psycopg.Connection[Any], names: Collection[str]) -> dict[str, str]:
        if not names:
            return {}
        query = b" UNION ALL ".join(self.queries[name] for name in names)
        cur = conn.cursor(row_factory=tuple_row)
        try:
            return {str(n): str(d) for n, d in cur.execute(query).fetchall()}
        finally:
            conn.rollback()


def _cached_digests(cache: Path, key: str) -> dict[str, str] | None:
    try:
        kept = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("key") != key:
        return None
    digests = kept.get("digests")
    if not isinstance(digests, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in digests.items()):
        return None
    return digests


def _keep_digests(cache: Path, key: str, digests: dict[str, str]) -> None:
    """Written whole and renamed into place: a concurrent reader sees the old or the new."""
    with contextlib.suppress(OSError):  # a cache: without it, the next start computes them
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{cache.name}-", dir=cache.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"key": key, "digests": digests}, out)
        os.replace(temporary, cache)


def describe(catalogs: list[str]) -> list[str]:
    """One line per catalog that changed, for the failure message."""
    lines = []
    for name in catalogs:
        if name == _SESSION_ROLE:
            continue  # take_schema names it
        words = _WORDS.get(name)
        lines.append(f"pg_catalog.{name} changed ({words})" if words
                     else f"pg_catalog.{name} changed")
    return lines


def _where(name: str) -> sql.Composable:
    rows = _ROWS.get(name)
    return sql.SQL(" WHERE " + rows) if rows else sql.SQL("")


def _figures(names: list[str], shared: bool, new_rows: str) -> str:
    """Per catalog `count(*)` (and `new_rows` after it), then the session user's role unless
    `shared`: the list in the mark's and the check's ARRAY[...]."""
    parts: list[sql.Composable] = [sql.SQL("(SELECT count(*)::text{} FROM pg_catalog.{}{})").format(
        sql.SQL(new_rows), sql.Identifier(name), _where(name)) for name in names]
    if not shared:  # the session user's role, as the shared catalogs are not read
        parts.append(sql.SQL(_ROLE))
    return sql.SQL(", ").join(parts).as_string(None)


def _digest_query(name: str, columns: list[str]) -> bytes:
    """`SELECT name, digest` over the catalog's rows (a sum of 64-bit hashes: no sort),
    its volatile fields left out."""
    kept = [c for c in columns if c not in _VOLATILE.get(name, ())]
    fields: list[sql.Composable] = [sql.Identifier(c) for c in kept]
    if name == "pg_db_role_setting":  # the order ALTER ... SET left the items in is no change
        fields = [sql.SQL("(SELECT array_agg(s ORDER BY s) FROM unnest(setconfig) AS s)")
                  if c == "setconfig" else sql.Identifier(c) for c in kept]
    row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(fields)) if fields else sql.SQL("''")
    return sql.SQL("SELECT {}, coalesce(sum(hashtextextended(r, 0)), 0)::text FROM "
                   "(SELECT {} AS r FROM pg_catalog.{}{}) AS t").format(
        sql.Literal(name), row, sql.Identifier(name), _where(name)).as_bytes(None)


def wait_gone(conn: psycopg.Connection[Any], pids: Collection[int], seconds: float = 5.0) -> None:
    """Wait until backends `pids` have exited: a closed connection's backend drops its
    temporary tables on the way out, after the client has gone. Rolled back."""
    deadline = time.monotonic() + seconds
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        try:
            alive = [r[0] for r in conn.execute(
                b"SELECT pid FROM pg_stat_activity WHERE pid = ANY (%s)", [alive])]
        finally:
            conn.rollback()
        if alive:
            time.sleep(0.01)
