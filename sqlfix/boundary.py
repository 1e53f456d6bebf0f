"""The per-test rollback boundary, and the connection class that keeps it.

A test runs inside one transaction that is always rolled back. After the
fixtures are loaded, a savepoint marks the start of the test's own work; the
connection turns `commit()` into "release and re-take that savepoint" and
`rollback()` into "roll back to it", so code under test that manages its own
transactions stays inside the boundary and keeps seeing the fixture rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

SAVEPOINT = "sqlfix_test"

ESCAPE_HELP = (
    "Its changes may have escaped the rollback: the transaction sqlfix opened for the test "
    "was ended from inside the test, so what ran before that (fixtures included) was "
    "committed or discarded outside sqlfix's control. This happens when code runs "
    "COMMIT/ROLLBACK/END as SQL text, calls a procedure that commits, or closes the "
    "connection. conn.commit(), conn.rollback() and conn.transaction() are safe: on the "
    "connection sqlfix gives the test they work on a savepoint. Use those instead."
)


class SqlfixConnection(psycopg.Connection[TupleRow]):
    """A psycopg connection whose commit/rollback stay inside an active boundary."""

    _sqlfix_savepoint: str | None = None

    def _in_boundary(self) -> bool:
        return (
            self._sqlfix_savepoint is not None
            and self.info.transaction_status != TransactionStatus.IDLE
        )

    def commit(self) -> None:
        if not self._in_boundary():
            super().commit()
            return
        if getattr(self, "_num_transactions", 0):
            raise psycopg.ProgrammingError(
                "Explicit commit() forbidden within a Transaction context. "
                "(Transaction will be automatically committed on successful exit from context.)"
            )
        self.execute(f"RELEASE SAVEPOINT {SAVEPOINT}; SAVEPOINT {SAVEPOINT}".encode())

    def rollback(self) -> None:
        if not self._in_boundary():
            super().rollback()
            return
        if getattr(self, "_num_transactions", 0):
            raise psycopg.ProgrammingError(
                "Explicit rollback() forbidden within a Transaction context. "
                "(Either raise Rollback() or allow the database to rollback.)"
            )
        self.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}".encode())

    def real_rollback(self) -> None:
        """End the transaction for good, whatever the boundary says."""
        psycopg.Connection.rollback(self)


def _scalar(conn: psycopg.Connection[Any], query: bytes) -> Any:
    row = conn.execute(query).fetchone()
    return None if row is None else row[0]


class Boundary:
    """One test's transaction on the session connection."""

    def __init__(
        self, conn: SqlfixConnection, after: Callable[[SqlfixConnection], None] | None = None
    ) -> None:
        self.conn = conn
        self.xid: str | None = None
        self._after = after  # runs at the end of every test, e.g. to reset sequences

    def begin(self) -> None:
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            self.conn.real_rollback()
        self.xid = _scalar(self.conn, b"SELECT pg_current_xact_id()::text")

    def protect(self) -> None:
        """Mark what is loaded so far as the baseline the test's rollback() returns to."""
        if self.conn._sqlfix_savepoint is None:
            self.conn.execute(f"SAVEPOINT {SAVEPOINT}".encode())
        else:
            self.conn.execute(f"RELEASE SAVEPOINT {SAVEPOINT}; SAVEPOINT {SAVEPOINT}".encode())
        self.conn._sqlfix_savepoint = SAVEPOINT

    def broken(self) -> str | None:
        """Why the boundary no longer holds, or None when it does."""
        conn = self.conn
        if conn.closed:
            return "The connection was closed during the test. " + ESCAPE_HELP
        status = conn.info.transaction_status
        if status == TransactionStatus.INERROR and self.conn._sqlfix_savepoint:
            try:  # succeeds only inside our own transaction, and clears the error
                conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}".encode())
            except psycopg.Error:
                return self._escaped()
            status = conn.info.transaction_status
        if status == TransactionStatus.INTRANS and self.xid == _scalar(
            conn, b"SELECT pg_current_xact_id_if_assigned()::text"
        ):
            return None
        return self._escaped()

    def _escaped(self) -> str:
        self.conn.real_rollback()
        state = _scalar(self.conn, f"SELECT pg_xact_status('{self.xid}'::xid8)".encode())
        self.conn.real_rollback()
        fate = {"committed": "was COMMITTED", "aborted": "was rolled back"}.get(
            str(state), f"is {state}"
        )
        return f"The test's transaction {fate} before the test ended. " + ESCAPE_HELP

    def end(self) -> None:
        """Roll back everything the test did; safe to call more than once."""
        conn = self.conn
        conn._sqlfix_savepoint = None
        if conn.closed:
            return
        if self._after is not None:
            if conn.info.transaction_status != TransactionStatus.INTRANS:
                conn.real_rollback()  # an aborted transaction can run nothing
            self._after(conn)  # non-transactional work (setval) survives the rollback
            self._after = None
        conn.real_rollback()
