"""The per-test rollback boundary, and the connection class that keeps it.

A test runs inside one transaction that is always rolled back. After the
fixtures are loaded, a savepoint marks the start of the test's own work. On
the connection sqlfix hands out, `commit()` checks deferred constraints and
takes a new savepoint (the committed work stays in the test's transaction),
and `rollback()` returns to the newest one, so code under test that manages
its own transactions stays inside the boundary and keeps seeing the fixture
rows. Savepoints made by others after it (SQLAlchemy's, psycopg's) survive a
commit, because the old savepoint is never released.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import TupleRow, tuple_row

SAVEPOINT = "sqlfix_test"
LOAD_SAVEPOINT = "sqlfix_load"  # taken by the loader, or by begin() on its behalf
_MARKERS = itertools.count(1)
# A failed real COMMIT reports a deferred-constraint violation; RELEASE SAVEPOINT
# does not check them. Checking inside a throwaway savepoint leaves every
# constraint in the mode it had.
CHECK_DEFERRED = (
    "SAVEPOINT sqlfix_check",
    "SET CONSTRAINTS ALL IMMEDIATE",
    "ROLLBACK TO SAVEPOINT sqlfix_check",
    "RELEASE SAVEPOINT sqlfix_check",
)
# After a failed check: leave its savepoint, the transaction usable again.
UNDO_CHECK = "ROLLBACK TO SAVEPOINT sqlfix_check; RELEASE SAVEPOINT sqlfix_check"

ESCAPE_HELP = (
    "Its changes may have escaped the rollback: the transaction sqlfix opened for the test "
    "was ended from inside the test (or one of its fixtures), so what ran before that, "
    "fixtures included, was committed or discarded outside sqlfix's control. This happens "
    "when code runs COMMIT/ROLLBACK/END as SQL text or closes the connection. "
    "conn.commit(), conn.rollback() and conn.transaction() are safe: on the connection "
    "sqlfix gives the test they work on savepoints. Use those instead."
)
OUTSIDE_HELP = (
    "commit() on sqlfix's session connection outside a test's rollback boundary: this "
    "would commit for real. A test reached the connection without requesting it; request "
    "the sqlfix_conn (or sqlfix, sqlfix_sqla_session, sqlfix_sqla_engine) fixture or mark "
    "the test with @uses(...), and undo any global binding (an engine or sessionmaker "
    "patched onto your application) when the test that made it ends."
)


def run_sql(conn: psycopg.Connection[Any], statements: Sequence[str]) -> None:
    """Statements in one round trip, or one by one in pipeline mode (no multi-statement)."""
    if getattr(conn, "_pipeline", None) is not None:
        for statement in statements:
            conn.execute(statement.encode())
    else:
        conn.execute("; ".join(statements).encode())


def scalar(conn: psycopg.Connection[Any], query: bytes) -> Any:
    """One value, whatever row factory the test set on the connection."""
    row = conn.cursor(row_factory=tuple_row).execute(query).fetchone()
    return None if row is None else row[0]


class SqlfixConnection(psycopg.Connection[TupleRow]):
    """A psycopg connection whose commit/rollback stay inside an active boundary."""

    _sqlfix_savepoint: str | None = None
    _sqlfix_owned = False  # a session's connection: a commit between tests is refused

    def _in_boundary(self) -> bool:
        return (
            self._sqlfix_savepoint is not None
            and self.info.transaction_status != TransactionStatus.IDLE
        )

    def _no_transaction_block(self, what: str) -> None:
        if getattr(self, "_num_transactions", 0):
            raise psycopg.ProgrammingError(
                f"Explicit {what}() forbidden within a Transaction context. "
                "(Transaction will be automatically committed on successful exit from context.)"
            )

    def commit(self) -> None:
        if not self._in_boundary():
            if self._sqlfix_owned and self._sqlfix_savepoint is None:
                raise psycopg.ProgrammingError(OUTSIDE_HELP)
            super().commit()
            return
        self._no_transaction_block("commit")
        if self.info.transaction_status == TransactionStatus.INERROR:
            self.rollback()  # COMMIT of a failed transaction rolls back, silently
            return
        try:
            run_sql(self, [*CHECK_DEFERRED, f"SAVEPOINT {SAVEPOINT}"])
        except psycopg.Error:
            self.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}".encode())  # a failed commit
            raise

    def rollback(self) -> None:
        if not self._in_boundary():
            super().rollback()
            return
        self._no_transaction_block("rollback")
        self.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}".encode())

    def real_rollback(self) -> None:
        """End the transaction for good, whatever the boundary says."""
        psycopg.Connection.rollback(self)


class Boundary:
    """One test's transaction on the session connection."""

    def __init__(self, conn: SqlfixConnection, reset_query: bytes = b"") -> None:
        self.conn = conn
        self.xid: str | None = None
        self.marker: str | None = None  # this transaction's SET LOCAL application_name
        self._load_savepoint = False  # begin() took the loader's savepoint, not yet used
        self.escape: str | None = None  # why it broke, once found
        self._reset_query = reset_query  # puts sequences back; see baseline.reset_sequences

    def begin(self) -> None:
        """Open the test's transaction; one round trip.

        Sent as raw text so psycopg does not send its own BEGIN first. The
        transaction also takes the loader's savepoint (see `take_load_savepoint`)
        and a unique `application_name` as SET LOCAL: the server reports that
        setting whenever it changes, so its reverting (the transaction ended) is
        visible to `broken()` without a query.
        """
        conn = self.conn
        conn.row_factory = tuple_row  # a test may have changed it on the shared connection
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.real_rollback()
        self.marker = f"sqlfix {os.getpid()}.{next(_MARKERS)}"
        query = (f"BEGIN; SET LOCAL application_name = '{self.marker}'; "
                 f"SAVEPOINT {LOAD_SAVEPOINT}; SELECT pg_current_xact_id()::text")
        result = conn.pgconn.exec_(query.encode())
        if result.status != ExecStatus.TUPLES_OK:
            error = psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.real_rollback()
            raise error
        value = result.get_value(0, 0)
        self.xid = None if value is None else value.decode()
        self._load_savepoint = True

    def take_load_savepoint(self) -> bool:
        """True once after begin(): the loader's savepoint is already there."""
        taken, self._load_savepoint = self._load_savepoint, False
        return taken

    def protect(self) -> None:
        """Mark what is loaded so far as the state the test's rollback() returns to."""
        self.conn.execute(f"SAVEPOINT {SAVEPOINT}".encode())
        self.protected()

    @property
    def is_protected(self) -> bool:
        """The test's savepoint is in place: commit() and rollback() work on it."""
        return self.conn._sqlfix_savepoint is not None

    def protected(self) -> None:
        """The savepoint of `protect()` was taken along with other statements."""
        self._load_savepoint = False
        self.conn._sqlfix_savepoint = SAVEPOINT

    def broken(self) -> str | None:
        """Why the boundary no longer holds, or None when it does. Checked once."""
        if self.escape is None:
            self.escape = self._check()
        return self.escape

    def _check(self) -> str | None:
        conn = self.conn
        if conn.closed:
            return "The connection was closed during the test. " + ESCAPE_HELP
        status = conn.info.transaction_status
        if status == TransactionStatus.INERROR and conn._sqlfix_savepoint:
            try:  # succeeds only inside our own transaction, and clears the error
                conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}".encode())
            except psycopg.Error:
                return self._escaped()
            status = conn.info.transaction_status
        if status != TransactionStatus.INTRANS:
            return self._escaped()
        if self._marker_intact():
            return None  # our SET LOCAL still holds: the transaction never ended
        if self.xid == scalar(conn, b"SELECT pg_current_xact_id_if_assigned()::text"):
            return None  # the test changed application_name itself; the transaction is ours
        return self._escaped()

    def _marker_intact(self) -> bool:
        reported = self.conn.pgconn.parameter_status(b"application_name")
        return self.marker is not None and reported == self.marker.encode()

    def _escaped(self) -> str:
        self.conn.real_rollback()
        state = scalar(self.conn, f"SELECT pg_xact_status('{self.xid}'::xid8)".encode())
        self.conn.real_rollback()
        fate = {"committed": "was COMMITTED", "aborted": "was rolled back"}.get(
            str(state), f"is {state}"
        )
        return f"The test's transaction {fate} before the test ended. " + ESCAPE_HELP

    def end(self) -> None:
        """Roll back everything the test did, then put sequences back; safe to repeat.

        The rollback comes first: TRUNCATE ... RESTART IDENTITY or ALTER SEQUENCE in
        the test are transactional, and a setval() before the rollback would be lost
        with them. Rollback and reset go in one round trip.
        """
        conn = self.conn
        conn._sqlfix_savepoint = None
        if conn.closed:
            return  # the server rolled back; the session resets sequences on reconnect
        if not self._reset_query:
            conn.real_rollback()
            return
        try:
            conn.cursor(row_factory=tuple_row).execute(b"ROLLBACK; " + self._reset_query)
        finally:
            self._reset_query = b""
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.real_rollback()
