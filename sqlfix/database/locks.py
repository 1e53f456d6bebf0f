"""Other connections that hold locks sqlfix must wait for: who they are, and ending them.

A test that opens a second connection, takes a lock (`LOCK TABLE`, an update, or
only a read in an open transaction) and never closes it leaves that lock held
after the test. The restore after an escape truncates tables (ACCESS EXCLUSIVE:
it waits for every lock) and the verifier reads them (it waits for an ACCESS
EXCLUSIVE one). Instead of waiting out `lock_timeout` and raising psycopg's
`LockNotAvailable`, sqlfix looks first: a holder that connected after the session
started (one the run itself opened, by a test or a fixture) is ended with
`pg_terminate_backend`; an older one (someone's psql, another program) is named
and left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from sqlfix.database.catalog import OWN_SCHEMAS

# Modes that conflict with what the verifier's reads take (ACCESS SHARE).
BLOCKS_READS = ("AccessExclusiveLock",)
_TERMINATE_WAIT = 5.0  # seconds for a terminated backend to release its locks

_HOLDERS = b"""
SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 120),
       a.backend_start >= %(since)s,
       string_agg(DISTINCT format('%%s on %%I.%%I', l.mode, n.nspname, c.relname), ', ')
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND n.nspname <> ALL (%(own)s) AND n.nspname NOT LIKE 'pg\\_%%'
  AND c.relkind NOT IN ('i', 'I')  -- a table's lock says it; its indexes' add nothing
  AND (%(modes)s::text[] IS NULL OR l.mode = ANY (%(modes)s::text[]))
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1
"""
_BACKENDS_LEFT = b"SELECT count(*) FROM pg_stat_activity WHERE pid = ANY (%s)"
# A prepared transaction (PREPARE TRANSACTION, psycopg's tpc_prepare()) outlives its
# session: no backend holds its locks (pid NULL in pg_locks), and nothing ends it but
# COMMIT PREPARED or ROLLBACK PREPARED.
_PREPARED = b"""
SELECT gid, owner, prepared >= %s FROM pg_prepared_xacts
WHERE database = current_database() ORDER BY prepared
"""


@dataclass(frozen=True)
class Prepared:
    """A prepared transaction on the test database."""

    gid: str
    owner: str
    ours: bool  # prepared after the session started: by this run

    def describe(self) -> str:
        return f"{self.gid!r} (owner {self.owner})"


def prepared(conn: psycopg.Connection[Any], since: datetime) -> list[Prepared]:
    """The test database's prepared transactions; `conn` is left idle."""
    try:
        rows = conn.cursor(row_factory=tuple_row).execute(_PREPARED, [since]).fetchall()
    finally:
        conn.rollback()
    return [Prepared(r[0], r[1], bool(r[2])) for r in rows]


def rollback_prepared(conn: psycopg.Connection[Any], found: list[Prepared]) -> list[Prepared]:
    """ROLLBACK PREPARED the ones of `found` this run made; returns them.

    Those from before the run (`ours` false) are left alone.
    """
    ended = [p for p in found if p.ours]
    if not ended:
        return []
    conn.rollback()
    conn.autocommit = True  # ROLLBACK PREPARED refuses to run in a transaction block
    try:
        for one in ended:
            conn.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(one.gid)))
    finally:
        conn.autocommit = False
    return ended


@dataclass(frozen=True)
class Holder:
    """A backend holding locks on user tables of the test database."""

    pid: int
    application_name: str
    state: str  # pg_stat_activity.state: 'idle in transaction', 'active', ...
    query: str  # its last statement, shortened
    ours: bool  # connected after the session started: opened by this run
    locks: str  # "AccessExclusiveLock on public.t, ..."

    def describe(self) -> str:
        return (f"pid {self.pid} (application_name {self.application_name!r}, {self.state}, "
                f"last query: {self.query!r}) holding {self.locks}")


def holders(
    conn: psycopg.Connection[Any], since: datetime, modes: tuple[str, ...] | None = None
) -> list[Holder]:
    """Other backends holding granted locks (of `modes`, or any) on user relations.

    Runs in a transaction of its own on `conn`, rolled back.
    """
    cur = conn.cursor(row_factory=tuple_row)
    try:
        rows = cur.execute(_HOLDERS, {"since": since, "own": list(OWN_SCHEMAS),
                                      "modes": list(modes) if modes else None}).fetchall()
    finally:
        conn.rollback()
    return [Holder(int(r[0]), r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]


def terminate(conn: psycopg.Connection[Any], found: list[Holder]) -> list[Holder]:
    """End the backends of `found` this run opened and wait until they are gone.

    Returns the ones ended; the others (`ours` false) are left alone.
    """
    ended = [h for h in found if h.ours]
    if not ended:
        return []
    pids = [h.pid for h in ended]
    try:
        for pid in pids:
            conn.execute(b"SELECT pg_terminate_backend(%s)", [pid])
        conn.rollback()
        deadline = time.monotonic() + _TERMINATE_WAIT
        while time.monotonic() < deadline:
            row = conn.execute(_BACKENDS_LEFT, [pids]).fetchone()
            conn.rollback()  # pg_stat_activity is read once per transaction
            if row is None or not row[0]:
                break
            time.sleep(0.01)
    finally:
        conn.rollback()
    return ended


def summary(found: list[Holder]) -> str:
    return "; ".join(h.describe() for h in found)
