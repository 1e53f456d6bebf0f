"""Other backends on the test database: list them, end them, wait until they are gone.

After a committed test (`@uses(..., commit=True)`) a connection the code under
test left open is a hazard for every later test: inside a transaction it holds
row and table locks and rows no other session can see (the restore's
fingerprints miss them, and the next test's INSERT of the same key waits for
it); idle, its session can still write later, and it keeps whatever it SET or
LISTENed to. sqlfix ends such backends with `pg_terminate_backend`, which a
role may do to backends of roles it is a member of (superusers and members of
`pg_signal_backend` to any non-superuser's).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

# sqlfix's own connections say so in pg_stat_activity (the libpq `application_name`).
APP_NAME = "sqlfix"

_OTHERS = b"""
SELECT pid, coalesce(application_name, ''), coalesce(state, ''), xact_start, backend_start,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 200)
FROM pg_stat_activity
WHERE datname = current_database()
  AND (backend_type = 'client backend' OR backend_type IS NULL)  -- NULL: another role's
  AND pid <> pg_backend_pid() AND pid <> ALL (%s)
ORDER BY backend_start, pid
"""
_ALIVE = b"SELECT pid FROM pg_stat_activity WHERE pid = ANY (%s)"


@dataclass(frozen=True)
class Backend:
    """One row of `pg_stat_activity`: a client connection to the test database."""

    pid: int
    application_name: str
    state: str  # 'idle', 'active', 'idle in transaction', ...; '' when not ours to see
    xact_start: datetime | None  # None when not in a transaction (or not ours to see)
    backend_start: datetime | None
    query: str  # the current or last statement, whitespace folded, at most 200 characters

    @property
    def hidden(self) -> bool:
        """Another role's backend, and sqlfix's user may not read its state (pg_read_all_stats)."""
        return self.state == ""

    @property
    def in_use(self) -> bool:
        """In a transaction or running a statement: it may hold locks and unseen rows."""
        return not self.hidden and self.state != "idle"

    def describe(self) -> str:
        if self.hidden:
            return (f"pid {self.pid}, another role's connection (sqlfix's user may not see its "
                    "state: grant it pg_read_all_stats)")
        since = ("" if self.xact_start is None
                 else f", transaction since {self.xact_start:%Y-%m-%d %H:%M:%S %Z}")
        app = self.application_name or "(no application_name)"
        query = f", query: {self.query!r}" if self.query else ""
        return f"pid {self.pid} {app!r}, {self.state}{since}{query}"


def others(conn: psycopg.Connection[Any], exclude: Collection[int] = ()) -> list[Backend]:
    """Client backends on `conn`'s database but `conn`'s own and `exclude` (pids).

    Runs in a transaction of its own on `conn` (which must be idle), rolled back.
    """
    try:
        rows = conn.cursor(row_factory=tuple_row).execute(_OTHERS, [list(exclude)]).fetchall()
    finally:
        conn.rollback()
    return [Backend(*row) for row in rows]


def terminate(
    conn: psycopg.Connection[Any], backends: Sequence[Backend], wait_ms: int
) -> tuple[list[Backend], list[tuple[Backend, str]]]:
    """End `backends`, waiting up to `wait_ms` in all for them to exit.

    Returns (still alive after the wait, [(refused, the server's reason)]).
    `conn` must be idle; it is left idle.
    """
    refused: list[tuple[Backend, str]] = []
    asked: list[Backend] = []
    for backend in backends:
        try:
            conn.execute(b"SELECT pg_terminate_backend(%s)", [backend.pid])
            asked.append(backend)
        except psycopg.errors.InsufficientPrivilege as exc:
            refused.append((backend, str(exc).strip()))
        finally:
            conn.rollback()
    deadline = time.monotonic() + wait_ms / 1000
    alive = [b.pid for b in asked]
    while alive:
        try:
            rows = conn.cursor(row_factory=tuple_row).execute(_ALIVE, [alive]).fetchall()
        finally:
            conn.rollback()  # a new transaction sees a new pg_stat_activity
        alive = [r[0] for r in rows]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return [b for b in asked if b.pid in alive], refused
