"""The committed mode, `@uses(..., commit=True)`: for code on its own connections.

The fixtures are loaded and committed on the session's connection; the code
under test may use any connections, pools, threads or processes against the
test database; afterwards the tables that changed (see
`sqlfix.database.committed`) are truncated and refilled from the baseline, and
sequences reset. Imported by the first committed test only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from sqlfix.database.boundary import Boundary, SqlfixConnection
from sqlfix.database.committed import ChangeTracker
from sqlfix.database.session import DatabaseSession
from sqlfix.errors import SqlfixError
from sqlfix.marker import requested_names
from sqlfix.pytest_plugin.handle import Sqlfix
from sqlfix.pytest_plugin.own_connections import checkpoint

TRACKER_KEY = pytest.StashKey[ChangeTracker]()
LOCK_TIMEOUT = "10s"  # how long the restore waits for connections the test left in a transaction
_HOLDERS = b"""
SELECT pid, coalesce(application_name, ''), state, left(query, 80) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' AND state <> 'idle'
"""


class CommittedSqlfix(Sqlfix):
    """The handle in the committed mode: `load()` commits what it loads."""

    committed = True

    def load(self, *names: str) -> tuple[str, ...]:
        __tracebackhide__ = True
        try:
            loaded = super().load(*names)
        except BaseException:
            if not self.conn.closed:
                self.conn.real_rollback()
            raise
        self.conn.commit()  # a real commit: the connection is lent out for this test
        return loaded


def committed_test(item: pytest.Item, session: DatabaseSession) -> Iterator[Sqlfix]:
    """The `sqlfix` fixture's body in the committed mode."""
    session.end_layers()  # savepoint layers kept for a test that was then skipped
    conn = session.connection()
    conn.real_rollback()
    tracker = item.config.stash.get(TRACKER_KEY, None)
    if tracker is None:  # fingerprints of the baseline, taken once, before anything changed
        assert session.baseline is not None
        tracker = item.config.stash[TRACKER_KEY] = ChangeTracker(conn, session.baseline)
    conn._sqlfix_owned = False  # commit() is real for this test
    handle = CommittedSqlfix(session, Boundary(conn))
    try:
        problem = None
        try:
            handle.load(*requested_names(item))
        except (SqlfixError, TypeError) as exc:
            problem = str(exc)
        if problem is not None:
            pytest.fail(f"sqlfix could not load the fixtures of this test:\n{problem}",
                        pytrace=False)
        yield handle
    finally:
        _take_back(conn)
        _restore(session, tracker)
        checkpoint(item.config, session)  # its connections are no hint for later failures


def _take_back(conn: SqlfixConnection) -> None:
    """The session's connection as sqlfix lends it: no open transaction, no autocommit."""
    if conn.closed:
        return  # the session opens a new one
    if conn.info.transaction_status != TransactionStatus.IDLE:
        conn.real_rollback()
    if conn.autocommit:
        conn.autocommit = False
    conn._sqlfix_owned = True


def _restore(session: DatabaseSession, tracker: ChangeTracker) -> None:
    conn = session.connection()
    try:
        tables = tracker.to_restore(conn)
        _set_lock_timeout(conn, LOCK_TIMEOUT)
        try:
            session.restore(tables)
        finally:
            if not conn.closed:
                conn.real_rollback()
                _set_lock_timeout(conn, None)
        # The restore runs on a fresh connection (the old one, and whatever the test left
        # on its session, is closed): fingerprint on the session's current one.
        tracker.restored(session.connection(), tables)
    except psycopg.errors.LockNotAvailable:
        pytest.exit(
            "sqlfix: after a committed test (@uses(..., commit=True)), the baseline could not be "
            f"restored: connections of the code under test still hold locks after {LOCK_TIMEOUT}"
            f" ({_holders(session.connection())}). Close pools, join threads and wait for "
            "processes before the test ends (a fixture's tear-down is fine).", returncode=3)
    except (SqlfixError, psycopg.Error) as exc:
        pytest.exit(f"sqlfix: after a committed test (@uses(..., commit=True)), the baseline "
                    f"could not be restored ({exc}); later tests would see its rows.",
                    returncode=3)


def _set_lock_timeout(conn: SqlfixConnection, value: str | None) -> None:
    # Session-level and committed, so that the restore's own transaction inherits it.
    query = b"RESET lock_timeout" if value is None else f"SET lock_timeout = '{value}'".encode()
    conn.execute(query)
    psycopg.Connection.commit(conn)


def _holders(conn: SqlfixConnection) -> str:
    try:
        conn.real_rollback()
        rows: list[Any] = conn.cursor(row_factory=tuple_row).execute(_HOLDERS).fetchall()
        conn.real_rollback()
    except psycopg.Error:
        return "could not list them"
    return "; ".join(f"pid {pid} {app!r} {state}: {query}" for pid, app, state, query in rows)
