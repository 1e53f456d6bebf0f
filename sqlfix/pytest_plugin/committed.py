"""The committed mode, `@uses(..., commit=True)`: for code on its own connections.

The fixtures are loaded and committed on the session's connection; the code
under test may use any connections, pools, threads or processes against the
test database; afterwards the tables that changed (see
`sqlfix.database.committed`) are truncated and refilled from the baseline, and
sequences reset. Before that, connections the test left open are ended (see
`_end_leaks`) and the prepared transactions it left rolled back (`_end_prepared`).
Imported by the first committed test only.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from sqlfix.config import Settings
from sqlfix.database.backends import Backend, others, terminate
from sqlfix.database.boundary import (
    Boundary,
    SqlfixConnection,
    scalar,
    stop_statement_in_flight,
)
from sqlfix.database.committed import ChangeTracker
from sqlfix.database.session import DatabaseSession, damage_note
from sqlfix.errors import LeakedConnectionWarning, SchemaRebuiltWarning, SqlfixError
from sqlfix.marker import requested_names
from sqlfix.pytest_plugin.handle import Sqlfix
from sqlfix.pytest_plugin.own_connections import LAST_COMMITTED_KEY
from sqlfix.pytest_plugin.plugin import COMMITTED_CONN_KEY, HANDLE_KEY
from sqlfix.pytest_plugin.stop import stop_run

TRACKER_KEY = pytest.StashKey[ChangeTracker]()
TERMINATE_WAIT_MS = 5_000  # how long sqlfix waits for ended backends to exit, in all
_CLOSING_SECONDS = 0.3  # how long an idle backend may take to exit after its client closed
_ROUNDS = 3  # a thread still running may connect again while sqlfix ends the others
_HOLDERS = b"""
SELECT pid, coalesce(application_name, ''), state, left(query, 80) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' AND state <> 'idle'
"""
BUSY_AT_END = (
    "sqlfix: a statement was still running on sqlfix's connection (sqlfix_conn, sqlfix_aconn) "
    "when this committed test (@uses(..., commit=True)) ended: a task or thread the test "
    "started was neither awaited nor joined. sqlfix cancelled it and closed the connection, "
    "so what it had not committed is gone, and restores the baseline after the test. Await "
    "(or cancel and await) the tasks, and join the threads, a test starts before it ends."
)
_WHAT_TO_DO = ("Close pools (engine.dispose(), pool.close()), join threads and wait for "
               "processes before the test ends (a fixture's tear-down is fine).")


class CommittedSqlfix(Sqlfix):
    """The handle in the committed mode: `load()` commits what it loads."""

    committed = True

    def load(self, *names: str | os.PathLike[str]) -> tuple[str, ...]:
        __tracebackhide__ = True
        self.refuse_busy()  # before the rollback below could break the running statement
        # The test's own uncommitted work: a failed load must not take it along.
        pending = self._boundary.conn.info.transaction_status == TransactionStatus.INTRANS
        if pending:
            self._boundary.conn.execute(b"SAVEPOINT sqlfix_committed_load")
        try:
            if self._session._load_timeouts:  # SET LOCAL: until the commit below
                self._boundary.conn.execute(self._session._load_timeouts)
            loaded = super().load(*names)
        except BaseException:
            if not self._boundary.conn.closed:
                self._undo_load(pending)
            raise
        self._boundary.conn.commit()  # a real commit: the connection is lent out for this test
        return loaded

    def _undo_load(self, pending: bool) -> None:
        """Back to before the load (its SET LOCAL timeouts too), keeping the test's work."""
        if pending:
            try:
                self._boundary.conn.execute(b"ROLLBACK TO SAVEPOINT sqlfix_committed_load; "
                                  b"RELEASE SAVEPOINT sqlfix_committed_load")
                return
            except psycopg.Error:
                pass  # the connection is gone or the savepoint with it: roll back all
        self._boundary.conn.real_rollback()


def committed_test(item: pytest.Item, session: DatabaseSession) -> Iterator[Sqlfix]:
    """The `sqlfix` fixture's body in the committed mode."""
    session.end_layers()  # savepoint layers kept for a test that was then skipped
    conn = session.connection()
    conn.real_rollback()
    started = scalar(conn, b"SELECT clock_timestamp()")  # what connected before is not its leak
    conn.real_rollback()
    tracker = item.config.stash.get(TRACKER_KEY, None)
    if tracker is None:  # fingerprints of the baseline, taken once, before anything changed
        assert session.baseline is not None
        tracker = item.config.stash[TRACKER_KEY] = ChangeTracker(conn, session.baseline)
    conn._sqlfix_owned = False  # commit() is real for this test
    # Sequences move past the fixtures' explicit ids here too; the restore puts them back.
    assert session.baseline is not None
    handle = CommittedSqlfix(session, Boundary(conn, advance_query=session.baseline.advance_query))
    item.stash[HANDLE_KEY] = handle  # the failure report's fixtures, --sqlfix-report's loads
    try:
        problem = None
        try:
            handle.load(*requested_names(item))
        except (SqlfixError, TypeError) as exc:
            problem = str(exc)
        if problem is not None:
            pytest.fail(f"sqlfix could not load the fixtures of this test:\n{problem}",
                        pytrace=False)
        item.stash[COMMITTED_CONN_KEY] = conn  # for the check right after the test's body
        yield handle
    finally:
        if COMMITTED_CONN_KEY in item.stash:
            del item.stash[COMMITTED_CONN_KEY]
        # Fixtures' tear-downs ran since that check: look again.
        busy = stop_busy(conn)
        _take_back(conn, session.settings)
        died = _revive(item, session)
        leaked, warning = _end_leaks(item, session, started)
        item.config.stash[LAST_COMMITTED_KEY] = item.nodeid  # for a later test's hint
        prepared = _end_prepared(session)
        rebuilt = _restore(item, session, item.config.stash[TRACKER_KEY])
        if died is None:  # not yet reaped when _revive looked: a reconnect since revived it
            late = session.untold_death()
            died = _died_words(f"{late}\nsqlfix started it again") if late else None
    # After the restore: the next test starts clean either way, also when
    # -W error::...LeakedConnectionWarning makes the warning raise.
    if warning is not None:
        warnings.warn(warning, stacklevel=1)
    if rebuilt is not None:
        warnings.warn(SchemaRebuiltWarning(rebuilt), stacklevel=1)
    if leaked or busy or died or prepared:
        pytest.fail("\n".join(m for m in (died, busy, leaked, prepared) if m), pytrace=False)


def _end_prepared(session: DatabaseSession) -> str | None:
    """Roll back the prepared transactions the test left (PREPARE TRANSACTION, psycopg's
    tpc_prepare()) and say so, else None. Ending the test's connections does not end them:
    they keep their uncommitted rows and their locks (the restore would wait for them)."""
    try:
        lines = session.end_prepared(session.connection())
    except psycopg.Error:
        return None  # the restore below meets the same trouble and reports it
    if not lines:
        return None
    return (f"sqlfix: this committed test (@uses(..., commit=True)) left {len(lines)} "
            "prepared transaction(s) on the test database; sqlfix rolled them back before "
            "restoring the baseline, so the next test starts clean:\n" + "\n".join(lines))


def _revive(item: pytest.Item, session: DatabaseSession) -> str | None:
    """Why the embedded server died during the test (it is started again, the database
    built anew and fingerprinted), else None. Checked before anything reconnects: a
    reconnect starts it again without a word."""
    died = session.revive()
    if died is None:
        return None
    session.untold_death()  # told here
    assert session.baseline is not None
    item.config.stash[TRACKER_KEY] = ChangeTracker(session.connection(), session.baseline)
    return _died_words(died)


def _died_words(died: str) -> str:
    return ("sqlfix: the embedded PostgreSQL exited during this committed test "
            "(@uses(..., commit=True)): what the code under test had not committed is gone, "
            f"and the test's result cannot be trusted.\n{died}")


def stop_busy(conn: SqlfixConnection) -> str | None:
    """BUSY_AT_END if a statement was still running on the committed test's connection
    (stopped now: cancelled, the connection closed), else None."""
    if conn.closed:
        return None
    return BUSY_AT_END if stop_statement_in_flight(conn, BUSY_AT_END) else None


def _take_back(conn: SqlfixConnection, settings: Settings) -> None:
    """The session's connection as sqlfix lends it: no open transaction, no autocommit,
    nothing the test SET on it (a role, search_path, timeouts), and sqlfix's bounds on waits."""
    if conn.closed:
        return  # the session opens a new one
    try:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.real_rollback()
        if conn.autocommit:
            conn.autocommit = False
        # Session-level and committed: the listing and fingerprints below run under them.
        conn.execute(b"SET SESSION AUTHORIZATION DEFAULT; RESET ALL; " + _bounds(settings))
        psycopg.Connection.commit(conn)
    except psycopg.Error:
        conn.close()  # the session opens a fresh one (with the startup timeouts)
    conn._sqlfix_owned = True


def _bounds(settings: Settings) -> bytes:
    """sqlfix's own work after a committed test waits no longer than a fixture load may."""
    return (f"SET lock_timeout = {settings.load_lock_timeout}; "
            f"SET statement_timeout = {settings.load_statement_timeout}").encode()


def _lingering(conn: SqlfixConnection, own: list[int]) -> list[Backend]:
    """The other backends on the test database, less those on their way out.

    A backend stays in pg_stat_activity for a moment after its client closed the
    connection (it is still exiting): an idle one is counted only if it is still
    there after a short wait, or a `with psycopg.connect(...)` closed just before
    the test ended would be reported as left open.
    """
    found = others(conn, own)  # `own`: sqlfix's other connections (the run lock)
    deadline = time.monotonic() + _CLOSING_SECONDS
    while any(not b.in_use for b in found) and time.monotonic() < deadline:
        time.sleep(0.02)
        still = {b.pid for b in others(conn, own)}
        found = [b for b in found if b.pid in still]
    return found


def _end_leaks(
    item: pytest.Item, session: DatabaseSession, started: object
) -> tuple[str | None, LeakedConnectionWarning | None]:
    """End the connections the test left open on the test database; say what they were.

    Connections in a transaction or running a statement hold locks and rows the
    restore cannot see: the test fails (the message returned). Idle ones (a pool
    not closed) could write later: a LeakedConnectionWarning. Both are ended,
    so the next test starts from the baseline. When sqlfix may not end a busy
    one, the run stops: the baseline cannot be restored.
    """
    conn = session.connection()
    ended: dict[int, Backend] = {}
    refused: list[tuple[Backend, str]] = []
    alive: list[Backend] = []
    try:
        for _ in range(_ROUNDS):
            found = [b for b in _lingering(conn, session.own_pids) if b.pid not in ended]
            if not found:
                break
            still, no = terminate(conn, found, TERMINATE_WAIT_MS)
            ended.update((b.pid, b) for b in found)
            refused += no
            alive += still
    except psycopg.Error:
        return None, None  # the restore below meets the same trouble and reports it
    if not ended:
        return None, None
    left = list(ended.values())
    # Connected before this test began: an earlier test's (or a wider fixture's, or another
    # program's). Ended all the same, but not this test's failure.
    earlier = [b for b in left if _before(b, started)]
    busy = [b for b in left if b.in_use and b not in earlier]
    stuck_busy = [b for b in busy if b in alive or any(b == r for r, _ in refused)]
    listing = "\n".join(f"  {b.describe()}" for b in left)
    if stuck_busy:
        reasons = "; ".join(sorted({why for _, why in refused})) or (
            f"still there {TERMINATE_WAIT_MS} ms after pg_terminate_backend")
        stop_run(
            item.config, item.session,
            f"sqlfix: after a committed test (@uses(..., commit=True)), connections of the code "
            f"under test are still in a transaction and sqlfix could not end them ({reasons}):"
            f"\n{listing}\nThe baseline cannot be restored while they hold their locks and "
            f"rows. {_WHAT_TO_DO} For sqlfix to end such connections, the code under test "
            "must log in as sqlfix's user (or a role it is a member of); another role's need "
            "pg_signal_backend granted to sqlfix's user, a superuser's a superuser.")
    not_ended = ""
    if refused or alive:
        why_not = [f"pid {b.pid}: {why}" for b, why in refused]
        why_not += [f"pid {b.pid}: still there after {TERMINATE_WAIT_MS} ms" for b in alive]
        not_ended = (" Except for these, not in a transaction as far as sqlfix can see, "
                     "which it could not end: "
                     + "; ".join(why_not) + ".")
    before = ""
    if earlier:
        before = (f" {len(earlier)} of them connected before this test began (an earlier "
                  "test's, a fixture of a wider scope, or another program): pids "
                  + ", ".join(str(b.pid) for b in earlier) + ".")
    if busy:
        return (f"sqlfix: this committed test (@uses(..., commit=True)) left {len(left)} "
                f"connection(s) to the test database open, {len(busy)} of them in a transaction "
                f"or running a statement:\n{listing}\nsqlfix ended them "
                "(pg_terminate_backend), so what they had not committed is gone, and restored "
                f"the baseline: the next test starts clean.{before}{not_ended} "
                f"{_WHAT_TO_DO}"), None
    # only this test's idle ones make it a warning; an earlier one may be in a transaction
    idle = "" if any(b.in_use for b in left) else ", idle"
    return None, LeakedConnectionWarning(
        f"sqlfix: this committed test (@uses(..., commit=True)) left {len(left)} "
        f"connection(s) to the test database open{idle}:\n{listing}\nsqlfix ended them "
        "(pg_terminate_backend), so that nothing writes after the baseline is restored.{}{} "
        "{} A pool kept across tests must survive that (SQLAlchemy pool_pre_ping=True, "
        "psycopg_pool check=ConnectionPool.check_connection).".format(
            before, not_ended, _WHAT_TO_DO))


def _before(backend: Backend, started: object) -> bool:
    return (backend.backend_start is not None and isinstance(started, datetime)
            and backend.backend_start < started)


def _restore(item: pytest.Item, session: DatabaseSession, tracker: ChangeTracker) -> str | None:
    """Back to the baseline; the restore's words when it had to rebuild the database."""
    conn = session.connection()
    baseline = session.baseline
    try:
        try:
            tables: set[tuple[str, str]] | None = tracker.to_restore(conn)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled):
            raise  # named below, with who holds the locks
        except psycopg.Error:
            if conn.closed or conn.broken:
                raise
            # A table of the baseline the fingerprints cannot read (dropped, renamed,
            # moved, its privileges revoked): committed DDL. The whole restore checks
            # the schema and rebuilds it, as after an escape.
            conn.rollback()
            tables = None
        done = session.restore(tables)  # on a fresh connection, under the configured timeouts
        if tables is None or session.baseline is not baseline:
            # Every table restored, or a new database: fingerprints of the new baseline.
            assert session.baseline is not None
            item.config.stash[TRACKER_KEY] = ChangeTracker(session.connection(), session.baseline)
        else:
            # The restore runs on a fresh connection (the old one, and whatever the test
            # left on its session, is closed): fingerprint on the session's current one.
            tracker.restored(session.connection(), tables)
    except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled) as exc:
        stop_run(
            item.config, item.session,
            "sqlfix: after a committed test (@uses(..., commit=True)), the baseline could not be "
            f"restored: {str(exc).strip()} ({_holders(session)}). {_WHAT_TO_DO}"
            + damage_note(session, exc))
    except (SqlfixError, psycopg.Error) as exc:
        stop_run(item.config, item.session,
                 f"sqlfix: after a committed test (@uses(..., commit=True)), the baseline "
                 f"could not be restored ({exc}); later tests would see its rows."
                 + damage_note(session, exc))
    if session.baseline is baseline:
        return None
    advice = ("\nKeep DDL in the schema files or migrations (setup_command); a committed "
              "test that runs DDL costs a rebuild of the test database."
              if done.startswith("sqlfix rebuilt") and "(DDL," in done else "")
    return f"sqlfix: after this committed test (@uses(..., commit=True)): {done}.{advice}"


def _holders(session: DatabaseSession) -> str:
    try:
        conn = session.connection()
        conn.real_rollback()
        rows: list[Any] = conn.cursor(row_factory=tuple_row).execute(_HOLDERS).fetchall()
        conn.real_rollback()
    except psycopg.Error:
        return "could not list the connections holding locks"
    if not rows:
        return "no other connection is in use now"
    return "; ".join(f"pid {pid} {app!r} {state}: {query}" for pid, app, state, query in rows)
