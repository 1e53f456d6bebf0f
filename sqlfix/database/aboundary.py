"""The rollback boundary for asyncio code: a psycopg AsyncConnection on the test's transaction.

The async connection is not a second database connection. It is a second
psycopg front end, `AsyncSqlfixConnection`, on the same libpq connection as
the session's `SqlfixConnection`: one backend, one transaction. So sqlfix
begins the transaction, loads the fixtures, checks for escapes, rolls back
and resets sequences with the sync code it already has (between the test's
awaits, when nothing async is in flight), and the test's coroutines see the
same rows. `commit()` and `rollback()` move the same savepoint as the sync
connection's.

Why this and not an `AsyncConnection.connect()` per test: psycopg looks up
the running loop on every wait and keeps no loop of its own, except an
`asyncio.Lock` that binds to a loop on first contention. A fresh front end
per test (a few microseconds) therefore works whatever loop each test runs
on (pytest-asyncio's per-test loops, anyio's runner), needs no async fixture
(so no pytest-asyncio/anyio specific decorator), and costs no connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg.rows import TupleRow

from sqlfix.database.boundary import CHECK_DEFERRED, OUTSIDE_HELP, SAVEPOINT, SqlfixConnection

DETACHED = (
    "this sqlfix_aconn belongs to a test that has ended: a task or callback kept it after "
    "its test. Each test gets its own sqlfix_aconn; await the tasks a test starts before "
    "it ends."
)
CLOSED = (
    "the connection is closed: the test closed it, the server ended it, or sqlfix closed "
    "it at the test's end because a statement was still running on it. Await the tasks a "
    "test starts before it ends."
)
RV = TypeVar("RV")


async def run_sql_async(conn: psycopg.AsyncConnection[Any], statements: Sequence[str]) -> None:
    """Statements in one round trip, or one by one in pipeline mode (no multi-statement)."""
    if getattr(conn, "_pipeline", None) is not None:
        for statement in statements:
            await conn.execute(statement.encode())
    else:
        await conn.execute("; ".join(statements).encode())


class AsyncSqlfixConnection(psycopg.AsyncConnection[TupleRow]):
    """An AsyncConnection whose commit/rollback stay inside the sync connection's boundary."""

    _sqlfix_sync: SqlfixConnection | None = None
    _sqlfix_detached = False  # its test ended: it must not reach a later test's transaction

    def _refuse_detached(self) -> None:
        if self.pgconn.status == ConnStatus.BAD:
            raise psycopg.OperationalError(CLOSED)
        if self._sqlfix_detached:
            raise psycopg.OperationalError(DETACHED)

    async def wait(self, gen: PQGen[RV], *args: Any, **kwargs: Any) -> RV:
        # Every operation (execute, cursors, copy, pipelines, transaction(), commit)
        # talks to libpq through here. A task the test left behind on a loop that
        # outlives the test (loop_scope="session") must neither write into the next
        # test's transaction on the shared libpq connection nor resume psycopg's C
        # generators, which keep the raw PGconn pointer across waits, after sqlfix
        # closed (freed) that connection: both are checked before each step.
        try:
            self._refuse_detached()
        except psycopg.OperationalError:
            gen.close()
            raise
        return await super().wait(self._guarded(gen), *args, **kwargs)

    def _guarded(self, gen: PQGen[RV]) -> Generator[Any, Any, RV]:
        try:
            state = next(gen)
            while True:
                ready = yield state
                try:
                    self._refuse_detached()
                except psycopg.OperationalError:
                    # Closing runs no libpq call in psycopg's generators: safe even
                    # when the connection is already freed.
                    with contextlib.suppress(Exception):
                        gen.close()
                    raise
                state = gen.send(ready)
        except StopIteration as ex:
            return ex.value  # type: ignore[no-any-return]

    def _boundary_savepoint(self) -> str | None:
        sync = self._sqlfix_sync
        if sync is None or self.info.transaction_status == TransactionStatus.IDLE:
            return None
        return sync._sqlfix_savepoint

    def _refuse_outside(self) -> None:
        sync = self._sqlfix_sync
        if sync is None or (sync._sqlfix_owned and sync._sqlfix_savepoint is None):
            raise psycopg.ProgrammingError(OUTSIDE_HELP)

    def _no_transaction_block(self, what: str) -> None:
        if getattr(self, "_num_transactions", 0):
            raise psycopg.ProgrammingError(
                f"Explicit {what}() forbidden within a Transaction context. "
                "(Transaction will be automatically committed on successful exit from context.)"
            )

    async def commit(self) -> None:
        if self._boundary_savepoint() is None:
            self._refuse_outside()
            await super().commit()
            return
        self._no_transaction_block("commit")
        if self.info.transaction_status == TransactionStatus.INERROR:
            await self.rollback()  # COMMIT of a failed transaction rolls back, silently
            return
        try:
            await run_sql_async(self, [*CHECK_DEFERRED, f"SAVEPOINT {SAVEPOINT}"])
        except psycopg.Error:
            await self.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}".encode())  # a failed commit
            raise

    async def close(self) -> None:
        """Close the test's connection (the shared libpq one): the sync side records that
        the test closed it, so sqlfix says "closed during the test", not "lost"."""
        sync = getattr(self, "_sqlfix_sync", None)
        if sync is not None:
            sync._closed = True
        await super().close()

    async def rollback(self) -> None:
        if self._boundary_savepoint() is None:
            await super().rollback()
            return
        self._no_transaction_block("rollback")
        await self.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}".encode())


class AsyncFrontEnd:
    """One test's async front end on `sync`'s libpq connection; `detach()` when it ends."""

    def __init__(self, sync: SqlfixConnection) -> None:
        self.sync = sync
        pgconn = sync.pgconn
        # psycopg points libpq's notice/notify callbacks at the newest front end: put
        # the sync connection's back when the test ends.
        self._handlers = (pgconn.notice_handler, pgconn.notify_handler)
        aconn = AsyncSqlfixConnection(pgconn)
        aconn._sqlfix_sync = sync
        # Server-side prepared statements are named per front end (_pg3_0, ...): two
        # front ends preparing on one backend would collide. Only the sync one prepares.
        aconn.prepare_threshold = None
        # Marks the connection as lent (as a pool does): no "deleted while still open"
        # warning when the front end goes away; the session closes the connection.
        aconn._pool = None
        self.conn = aconn

    def detach(self) -> None:
        """Give libpq's callbacks back to the sync connection; later commits are refused."""
        self.conn._sqlfix_sync = None
        self.conn._sqlfix_detached = True
        pgconn = self.sync.pgconn
        if not self.sync.closed:
            pgconn.notice_handler, pgconn.notify_handler = self._handlers
