"""One test run at a time on a database given by DSN.

Two runs on one database share its sequences (not transactional: one run's nextval()
moves the other's ids) and its rows a committed test writes, and one run's restore undoes
the other's work. pytest-xdist workers each get a clone (see workers.py); two separate
runs (two terminals, two CI jobs on one server) do not. So a session on a DSN's database
holds a session-level advisory lock on a connection of its own for its whole life, and a
second session that cannot take it stops with an error that says who holds it. The lock
goes when that connection ends, so a killed run leaves no lock behind.

The lock's connection also keeps a record of the open run (`_sqlfix.open_run`: the query
that puts the sequences back where the run found them). Sequences are not transactional:
a run killed in the middle of a test (SIGKILL, a CI timeout, the OOM killer) had its
transaction rolled back by the server, but the ids its tests drew stay drawn, and the
next run would take the moved sequences as its baseline. A record still there when the
next run takes the lock is such a run's: its query puts them back (`recover`).

The embedded server is a run's own, and a worker's clone its own: they take no lock.
"""

from __future__ import annotations

import contextlib
import json
import select
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import tuple_row

from sqlfix.database.baseline import reset_query_for
from sqlfix.database.schema import with_connect_timeout
from sqlfix.errors import RefusedDatabase

# The lock's two int4 keys: "sqlf" and "run!" in ASCII. The two-key form is a lock space of
# its own in pg_locks (objsubid 2): it cannot meet an application's bigint advisory locks.
KEYS = (0x73716C66, 0x72756E21)
APP_NAME = "sqlfix run lock"

_HOLDER = b"""
SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),
       a.backend_start::text
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 2
"""


def take(dsn: str) -> psycopg.Connection[Any]:
    """A connection to `dsn` that holds the run lock; close it to let the lock go.

    Raises DatabaseError if another session holds it (another test run on this database),
    or psycopg.Error if the server cannot be reached.
    """
    conn = psycopg.connect(make_conninfo(with_connect_timeout(dsn), application_name=APP_NAME),
                           autocommit=True)
    try:
        cur = conn.cursor(row_factory=tuple_row)
        if conn.info.server_version >= 140000:  # an idle connection by design: not ended
            cur.execute(b"SET idle_session_timeout = 0")
        got = cur.execute(b"SELECT pg_try_advisory_lock(%s, %s)", KEYS).fetchone()
        if got == (True,):
            return conn
        holder = cur.execute(_HOLDER, KEYS).fetchone()
        name = conn.info.dbname
    except BaseException:
        conn.close()
        raise
    conn.close()
    raise RefusedDatabase(_in_use(name, holder))


def refuse_if_running(dsn: str) -> None:
    """For a pytest-xdist worker about to prepare and clone the DSN's database: raises
    DatabaseError if a run holds the lock there (it tests in that very database). The
    workers of one run try it shared, so they never refuse each other."""
    with psycopg.connect(make_conninfo(with_connect_timeout(dsn), application_name=APP_NAME),
                         autocommit=True) as conn:
        cur = conn.cursor(row_factory=tuple_row)
        if cur.execute(b"SELECT pg_try_advisory_lock_shared(%s, %s)", KEYS).fetchone() == (
                True,):
            # Let go at once: closing alone frees it only once the backend has exited
            cur.execute(b"SELECT pg_advisory_unlock_shared(%s, %s)", KEYS)
            return
        holder = cur.execute(_HOLDER, KEYS).fetchone()
        name = conn.info.dbname
    raise RefusedDatabase(_in_use(name, holder))


def _in_use(name: str, holder: tuple[Any, ...] | None) -> str:
    who = ("another session" if holder is None else
           f"backend pid {holder[0]} ({holder[1]!r}, from {holder[2]}, connected {holder[3]})")
    return (
        f"another test run is using database {name!r}: {who} holds sqlfix's run lock. Two "
        "runs on one database share its sequences and each one's restore undoes the other's "
        "work, so sqlfix runs one at a time there. Wait for that run to end, give this run a "
        "database of its own (another dbname in the DSN), or run the tests in one run with "
        "pytest-xdist (-n), whose workers get a clone each")


def release(lock: psycopg.Connection[Any]) -> None:
    """Let the run lock go now, and close `lock`. Closing alone frees it only once the
    server's backend has exited, a moment later, and a run started at once (the next CI
    step, a script's second pytest) could still find it held and be refused."""
    with contextlib.suppress(psycopg.Error):
        if not lock.closed and not lock.broken:
            lock.execute(b"SELECT pg_advisory_unlock(%s, %s)", KEYS)
    lock.close()


def held(lock: psycopg.Connection[Any]) -> bool:
    """Whether `lock` still holds the run lock: its backend was not ended (a test's
    pg_terminate_backend(), a DBA). Costs a select() while nothing arrived on it."""
    if lock.closed or lock.broken:
        return False
    ready, _, _ = select.select([lock.pgconn.socket], [], [], 0)
    if not ready:
        return True  # an idle connection hears nothing unless its backend ends
    try:
        got = lock.cursor(row_factory=tuple_row).execute(
            b"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            b"AND pid = pg_backend_pid() AND objsubid = 2 "
            b"AND classid = %s::bigint::oid AND objid = %s::bigint::oid", KEYS).fetchone()
    except psycopg.Error:
        return False
    return got == (1,)


_RECORD = sql.Identifier("_sqlfix", "open_run")
# The positions are kept as data, (sequence, last_value, is_called) in JSON, never as SQL:
# whoever may write this table must not choose what a later run executes.
_MAKE_RECORD = sql.SQL(
    "CREATE SCHEMA IF NOT EXISTS _sqlfix; CREATE TABLE IF NOT EXISTS {} (positions text, "
    "started timestamptz NOT NULL DEFAULT now())").format(_RECORD)
# A stored name, as this server spells the sequence it names now (None: no such sequence)
_SEQUENCE = (b"SELECT c.oid::regclass::text FROM pg_class c "
             b"WHERE c.oid = to_regclass(%s) AND c.relkind = 'S'")


def record_open(lock: psycopg.Connection[Any], positions: bytes) -> bool:
    """Record on the lock's (autocommit) connection that a run began, with the sequences'
    positions as `positions` (Baseline.positions, a query; empty: not kept) reads them now;
    False when the user may not (no CREATE in `_sqlfix`: no record, no recovery)."""
    try:
        with lock.transaction():
            cur = lock.cursor(row_factory=tuple_row)
            rows = cur.execute(positions).fetchall() if positions else []
            cur.execute(_MAKE_RECORD)
            cur.execute(sql.SQL("DELETE FROM {}").format(_RECORD))
            cur.execute(sql.SQL("INSERT INTO {} (positions) VALUES (%s)").format(_RECORD),
                        [json.dumps([[str(n), int(v), bool(c)] for n, v, c in rows])])
    except psycopg.Error:
        return False
    return True


def record_ended(lock: psycopg.Connection[Any], reset: bytes) -> None:
    """The run ends: its sequences back (`reset`, in case its last test could not), and
    its record gone. Raises psycopg.Error."""
    with lock.transaction():
        if reset:
            lock.execute(reset)
        lock.execute(sql.SQL("DELETE FROM {}").format(_RECORD))


def _positions(cur: psycopg.Cursor[Any], kept: str | None) -> tuple[list[tuple[str, int, bool]],
                                                                     list[str]]:
    """The kept positions of the sequences that exist, named as the server spells them;
    and the names kept that name none (dropped, renamed, or not a name at all)."""
    try:
        entries = json.loads(kept or "[]")
    except ValueError:
        return [], ["(the record is damaged)"]
    found: list[tuple[str, int, bool]] = []
    missing: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            name, value, called = str(entry[0]), int(entry[1]), bool(entry[2])
        except (TypeError, ValueError, IndexError, KeyError):
            missing.append(repr(entry)[:60])
            continue
        try:
            with cur.connection.transaction():
                row = cur.execute(_SEQUENCE, [name]).fetchone()
        except psycopg.Error:
            row = None  # not even a name
        if row is None or row[0] is None:
            missing.append(name)
        else:
            found.append((str(row[0]), value, called))
    return found, missing


def recover(lock: psycopg.Connection[Any]) -> str | None:
    """Put back the sequences of a run that did not end (its record is still there);
    what was done, for the user, or None when there was nothing to do."""
    cur = lock.cursor(row_factory=tuple_row)
    try:
        if cur.execute(b"SELECT to_regclass('_sqlfix.open_run')").fetchone() == (None,):
            return None
        found = cur.execute(sql.SQL("SELECT positions, started::text FROM {}").format(
            _RECORD)).fetchone()
    except psycopg.Error:
        return None
    if found is None:
        return None
    kept, started = found
    rows, missing = _positions(cur, kept)
    before = (f"The test run before on database {lock.info.dbname!r} (started {started}) did "
              "not end: it was killed, or its machine or connection was lost")
    try:
        with lock.transaction():
            reset = reset_query_for(rows)
            moved = cur.execute(reset).fetchone() if reset else (0,)
            cur.execute(sql.SQL("DELETE FROM {}").format(_RECORD))
    except psycopg.Error as exc:
        return (f"{before}. Its tests may have moved sequences, and sqlfix could not put them "
                f"back ({str(exc).strip().splitlines()[0]}): if ids are off, recreate the "
                "database")
    count = int(moved[0]) if moved else 0
    gone = (f" (not found now, left alone: {', '.join(missing)})" if missing else "")
    if not count and not missing:
        return None
    return (f"{before}. Its tests' nextval() calls had moved {count} sequence(s); sqlfix put "
            f"them back where that run found them{gone}. Rows a committed test "
            "(commit=True) of that run wrote are not undone: if it was in one, recreate the "
            "database")
