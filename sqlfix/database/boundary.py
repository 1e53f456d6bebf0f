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

import contextlib
import itertools
import os
import re
import select
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.adapt import AdaptersMap
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import TupleRow, tuple_row

from sqlfix.compiler.library import CompiledFixture, label_ids
from sqlfix.database.pipeline import Capture

SAVEPOINT = "sqlfix_test"
_MARKERS = itertools.count(1)
_ADVANCES_KEPT = 1024  # learnt advances a baseline keeps (one per load plan)
# A failed real COMMIT reports a deferred-constraint violation; RELEASE SAVEPOINT
# does not check them. Checking inside a throwaway savepoint leaves every
# constraint in the mode it had.
CHECK_DEFERRED = (
    "SAVEPOINT sqlfix_check",
    "SET CONSTRAINTS ALL IMMEDIATE",
    "ROLLBACK TO SAVEPOINT sqlfix_check",
    "RELEASE SAVEPOINT sqlfix_check",
)
# What DISCARD ALL does, in pieces: DISCARD ALL itself refuses to run in the implicit
# transaction of a multi-statement query, and these ride the rollback's round trip
# (~0.1 ms a test, see docs/boundary.md). SET SESSION AUTHORIZATION DEFAULT also ends
# SET ROLE; RESET ALL brings back the connection's startup options (the timeouts).
# DISCARD PLANS is left out: it changes no result, and replanning costs the next test.
SESSION_RESET = (
    b"SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; CLOSE ALL; UNLISTEN *; "
    b"SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)
# The transaction in progress, as begin() read it; NULL when none has an id yet.
XID_PROBE = b"SELECT pg_current_xact_id_if_assigned()::text"
LOST_HELP = (
    "The connection to the database was lost during the test: the server ended the "
    "test's backend (pg_terminate_backend(), a killed server process, a server crash "
    "or restart). The server rolled back the open transaction. Tests must not end "
    "their own session; if that was not your test, look at the server's log."
)
SERVER_DIED_HELP = (
    "The embedded PostgreSQL server died during the test (a killed or crashed postmaster): "
    "the test's transaction went with it. Tests must not stop the server; if that was "
    "not your test, look at the server's log."
)
# The second-connection hint's mark (see sqlfix.pytest_plugin.own_connections): the
# server's session count and clock where the test begins, read in a round trip that goes
# anyway. Inside the test's transaction a statistics read stays cached until its end
# (stats_fetch_consistency): pg_stat_clear_snapshot(), after the read (a target list is
# evaluated left to right), gives the test fresh statistics all the same. The statistics
# function on the database's oid, not the pg_stat_database view: planning the view cost
# ~0.4 ms a test, the function on a known oid ~0.03 ms (docs/performance.md).
_THIS_DATABASE = "(SELECT oid FROM pg_database WHERE datname = current_database())"


def mark_columns(conn: psycopg.Connection[Any]) -> str:
    """The mark's columns: the database's oid, its session count, the clock; then the
    snapshot dropped. The oid is looked up by name until `take_mark` kept it on `conn`."""
    oid = getattr(conn, "_sqlfix_database_oid", None)
    db = _THIS_DATABASE if oid is None else f"{int(oid)}::oid"
    return (f"{db}, pg_stat_get_db_sessions({db}), clock_timestamp()::text, "
            "pg_stat_clear_snapshot()")


def mark_query(conn: psycopg.Connection[Any]) -> str:
    """`mark_columns` as a statement of its own (to go first in a multi-statement query)."""
    return "SELECT " + mark_columns(conn)


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


def _lost_help(said: str | None) -> str:
    """LOST_HELP, with why the server ended the session when it said so (a timeout of
    server_settings, an administrator's pg_terminate_backend())."""
    return f"{LOST_HELP} The server said: {said}" if said else LOST_HELP


def last_server_error(conn: psycopg.Connection[Any]) -> str | None:
    """The first line of libpq's last error on `conn` ("FATAL:  terminating connection
    due to idle-in-transaction timeout"), without its severity; None if it kept none."""
    with contextlib.suppress(Exception):
        text = conn.pgconn.error_message.decode(errors="replace").strip()
        first = text.splitlines()[0] if text else ""
        return re.sub(r"^(FATAL|ERROR|PANIC):\s+", "", first) or None
    return None


def scalar(conn: psycopg.Connection[Any], query: bytes) -> Any:
    """One value, whatever row factory the test set on the connection."""
    row = conn.cursor(row_factory=tuple_row).execute(query).fetchone()
    return None if row is None else row[0]


BUSY_AT_END = (
    "A statement was still running on the test's connection when the test ended: a task "
    "or thread the test started (on sqlfix_aconn or sqlfix_conn) was neither awaited nor "
    "joined. sqlfix closed the connection to stop it, which rolled back the test's "
    "transaction; the next test gets a new one. Await (or cancel and await) the tasks, and "
    "join the threads, a test starts before it ends."
)


@dataclass(frozen=True)
class ClientState:
    """What a test can change on the psycopg connection object itself, which no SQL
    resets: its adapters (loaders, dumpers, registered types), cursor factories,
    prepared-statement settings and notice/notify callbacks. As the session's connection
    had them before its first test; `restore` gives every test them back."""

    row_factory: Any
    adapters: AdaptersMap
    cursor_factory: Any
    server_cursor_factory: Any
    prepare_threshold: int | None
    prepared_max: int | None
    notice_handlers: tuple[Callable[..., Any], ...]
    notify_handlers: tuple[Callable[..., Any], ...]
    copied: bool = True  # restore() gives a copy of `adapters` (else the very object)

    @classmethod
    def take(cls, conn: psycopg.Connection[Any], copy: bool = True) -> ClientState:
        adapters = AdaptersMap(conn.adapters) if copy else conn.adapters
        return cls(conn.row_factory, adapters, conn.cursor_factory,
                   conn.server_cursor_factory,
                   conn.prepare_threshold, conn.prepared_max,
                   tuple(conn._notice_handlers), tuple(conn._notify_handlers), copy)

    def restore(self, conn: psycopg.Connection[Any]) -> None:
        conn.row_factory = self.row_factory
        # A copy-on-write copy: what the test registers goes into its own map.
        conn._adapters = AdaptersMap(self.adapters) if self.copied else self.adapters
        conn.cursor_factory = self.cursor_factory
        conn.server_cursor_factory = self.server_cursor_factory
        conn.prepare_threshold = self.prepare_threshold
        conn.prepared_max = self.prepared_max
        conn._notice_handlers[:] = self.notice_handlers
        conn._notify_handlers[:] = self.notify_handlers


class SqlfixConnection(psycopg.Connection[TupleRow]):
    """A psycopg connection whose commit/rollback stay inside an active boundary."""

    _sqlfix_savepoint: str | None = None
    _sqlfix_owned = False  # a session's connection: a commit between tests is refused
    _sqlfix_closed_because: str | None = None  # why sqlfix closed it, for the boundary's report
    _sqlfix_database_oid: int | None = None  # for the hint's mark, see mark_columns
    _sqlfix_client: ClientState | None = None  # as before the first test; see reset_client

    def reset_client(self) -> None:
        """Give the connection object the state it had before the first test (ClientState):
        a test's row factory, adapters or notice handlers do not reach the next test, nor
        sqlfix's own queries."""
        if self._sqlfix_client is None:
            self.row_factory = tuple_row
            self._sqlfix_client = ClientState.take(self)
        else:
            self._sqlfix_client.restore(self)

    @contextlib.contextmanager
    def own_client(self) -> Iterator[None]:
        """sqlfix's own queries in the middle or at the end of a test (a load, the
        boundary's checks) on the state the connection had before the first test; the
        test's own state (a RawCursor factory, a loader for text) is given back after."""
        test = ClientState.take(self, copy=False)  # its very map: a test may hold it
        self.reset_client()
        try:
            yield
        finally:
            if not self.closed:
                test.restore(self)

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

    def __init__(
        self,
        conn: SqlfixConnection,
        reset_query: bytes = b"",
        advance_query: bytes = b"",
        *,
        reset_session: bool = True,
        load_timeouts: bytes = b"",
        advances: dict[Any, str] | None = None,
        advance_pairs: bytes = b"",
        server_gone: Callable[[], bool] | None = None,
    ) -> None:
        self.conn = conn
        # Whether the embedded server's postmaster has died (None: a server of the user's)
        self._server_gone = server_gone
        self.xid: str | None = None
        self.marker: str | None = None  # this transaction's SET LOCAL application_name
        self.role: str | None = None  # current_setting('role') at begin(), before any load
        # (pg_stat_database.sessions, server clock as text) where the test began, or None
        self.mark: tuple[int, str] | None = None
        self._first_load = False  # begin() ran, no load yet: protect may ride along with it
        self._begin_extra = b""  # more statements for begin()'s round trip (see layers)
        self.escape: str | None = None  # why it broke, once found
        self.lost = False  # the connection died (not closed by the test): see LOST_HELP
        self.lost_at_end = False  # ... and only end() found out
        self.escaped_at_end = False  # the transaction was not ours, found only by end()
        self._reset_query = reset_query  # puts sequences back; see baseline.reset_sequences
        self._advance_query = advance_query  # see baseline.advance_query
        self._advances = advances  # see first_advance
        self._advance_pairs = advance_pairs
        self._reset_session = reset_session
        # SET LOCAL of the fixture-load timeouts; the connection's own defaults are the test's
        self._load_timeouts = load_timeouts

    def advance_sequences(self, label_ids: Collection[int]) -> int:
        """After a load: move sequences past explicit ids, not past `label_ids` (id() values).

        So an application INSERT with DEFAULT does not collide with a fixture's row 1.
        Returns how many sequences moved; end() puts them back.
        """
        statement = self.advance_statement(label_ids)
        if not statement:
            return 0
        # without parameters: a `%` in a table's name is no placeholder then
        row = self.conn.cursor(row_factory=tuple_row).execute(statement.encode()).fetchone()
        return int(row[0]) if row else 0

    def advance_statement(self, label_ids: Collection[int]) -> str:
        """`advance_sequences` as one statement without parameters ("" when there is
        nothing to advance): it rides along with the load's round trip."""
        if not self._advance_query:
            return ""
        ids = sql.Literal(sorted(set(label_ids))).as_string(self.conn)
        # The query's one parameter is in its fixed first line, before any name.
        return self._advance_query.decode().replace("%s", ids, 1)

    def first_advance(self, fixtures: Sequence[CompiledFixture]) -> str:
        """`advance_statement` for the test's first load, of `fixtures` (its whole plan).

        At a test's first load the database holds the baseline's rows and sequence
        positions (the sequences are reset after every test) plus what the plan
        loads, so the advance moves the same sequences to the same values every
        time the plan is loaded: the first time, the statement learns them (into
        the baseline's `advances`); later tests send those setval()s, or nothing.
        The live statement scans each fed column and its planning alone cost ~1 ms a
        test. Without a sequence reset, positions carry over from test to test and
        every load runs the live statement. A new baseline (a rebuild) starts empty.
        """
        advances = self._advances
        if advances is None or not self._advance_pairs or not self._reset_query:
            return self.advance_statement(label_ids(fixtures))
        key = tuple((f.name, f.rendered.sql) for f in fixtures)
        known = advances.get(key)
        if known is not None:
            return known
        ids = label_ids(fixtures)
        if len(advances) >= _ADVANCES_KEPT:
            advances.clear()  # files edited over a long session: start again

        def learn(moved: list[tuple[Any, ...]]) -> None:
            advances[key] = sql.SQL("SELECT {}").format(sql.SQL(", ").join(
                sql.SQL("setval({}::regclass, {})").format(sql.Literal(name), sql.Literal(value))
                for name, value in moved)).as_string(None) if moved else ""

        literal = sql.Literal(sorted(ids)).as_string(self.conn)
        return Capture(self._advance_pairs.decode().replace("%s", literal, 1), learn)

    def begin(self) -> None:
        """Open the test's transaction; one round trip.

        Sent as raw text so psycopg does not send its own BEGIN first. The
        transaction sets a unique `application_name` with SET LOCAL: the server
        reports that setting whenever it changes, so its reverting (the
        transaction ended) is visible to `broken()` without a query. It also
        reads the role the loads start from (see `fixture_role.switch`), the
        second-connection hint's `mark`, and sets the load timeouts.
        """
        conn = self.conn
        conn.reset_client()  # a test may have changed the shared connection object
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.real_rollback()
        self.marker = f"sqlfix {os.getpid()}.{next(_MARKERS)}"
        query = (f"BEGIN; SET LOCAL application_name = '{self.marker}'; ".encode()
                 + (self._load_timeouts + b"; " if self._load_timeouts else b"")
                 + self._begin_extra
                 + b"SELECT pg_current_xact_id()::text, current_setting('role'), "
                 + mark_columns(conn).encode())
        result = conn.pgconn.exec_(query)
        if result.status != ExecStatus.TUPLES_OK:
            error = psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.real_rollback()
            raise error
        xid, role = result.get_value(0, 0), result.get_value(0, 1)
        self.xid = None if xid is None else xid.decode()
        self.role = None if role is None else role.decode()
        self.take_mark(*(result.get_value(0, i) for i in (2, 3, 4)))
        self._first_load = True

    def take_mark(self, oid: object, sessions: object, at: object) -> None:
        """Keep the values of `mark_columns`, as libpq (bytes) or a cursor gave them."""
        if oid is not None:
            self.conn._sqlfix_database_oid = int(_text(oid))
        if sessions is None or at is None:
            self.mark = None
            return
        self.mark = (int(_text(sessions)), _text(at))

    def take_first_load(self) -> bool:
        """True once after begin(): the test's savepoint may ride along with this load."""
        first, self._first_load = self._first_load, False
        return first

    def before_load(self) -> None:
        """A load in the middle of a test runs under the load timeouts too."""
        if self._load_timeouts and self.conn._sqlfix_savepoint is not None:
            self.conn.execute(self._load_timeouts)

    def protect_statements(self) -> tuple[str, ...]:
        """What `protect()` sends: the test's timeouts back, then the test's savepoint."""
        back = (("SET LOCAL lock_timeout = DEFAULT", "SET LOCAL statement_timeout = DEFAULT")
                if self._load_timeouts else ())
        return (*back, f"SAVEPOINT {SAVEPOINT}")

    def protect(self) -> None:
        """Mark what is loaded so far as the state the test's rollback() returns to."""
        self.conn.execute("; ".join(self.protect_statements()).encode())
        self.protected()

    @property
    def is_protected(self) -> bool:
        """The test's savepoint is in place: commit() and rollback() work on it."""
        return self.conn._sqlfix_savepoint is not None

    def protected(self) -> None:
        """The statements of `protect_statements()` ran (along with a load)."""
        self._first_load = False
        self.conn._sqlfix_savepoint = SAVEPOINT

    def broken(self) -> str | None:
        """Why the boundary no longer holds, or None when it does. Checked once."""
        if self.escape is None:
            with self.conn.own_client():  # the test's cursor factory or loaders aside
                self.escape = self._check()
        return self.escape

    def _check(self) -> str | None:
        try:
            return self._check_open()
        except psycopg.Error as exc:
            # Any SQLSTATE can end a session: AdminShutdown is an OperationalError, but
            # idle_in_transaction_session_timeout's (25P03) and transaction_timeout's
            # (25P04) are InternalErrors. What tells is the connection left broken.
            if not (self.conn.closed or self.conn.broken):
                raise
            said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        self.lost = True
        return _lost_help(said)

    def _check_open(self) -> str | None:
        conn = self.conn
        if self._server_gone is not None and self._server_gone():
            # First: its backends end with it (the connection broken, the server's words
            # "unexpected postmaster exit"), and the whole server is what the test lost.
            # A backend outlives a killed postmaster for a moment and still answers, too.
            self.lost = True
            return SERVER_DIED_HELP
        if conn.broken:  # a statement of the test met the end: libpq kept the server's words
            self.lost = True
            return _lost_help(last_server_error(conn))
        if conn.closed:
            closed = "The connection was closed during the test. " + ESCAPE_HELP
            return conn._sqlfix_closed_because or closed
        if stop_statement_in_flight(conn, BUSY_AT_END):
            return BUSY_AT_END
        status = conn.info.transaction_status
        if status == TransactionStatus.INERROR and conn._sqlfix_savepoint:
            try:  # succeeds only inside our own transaction, and clears the error
                conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}".encode())
            except psycopg.Error:
                return self._escaped()
            status = conn.info.transaction_status
        if status != TransactionStatus.INTRANS:
            return self._escaped()
        if self._marker_intact() and not _pending_input(conn):
            return None  # our SET LOCAL still holds: the transaction never ended
        if self.xid == scalar(conn, b"SELECT pg_current_xact_id_if_assigned()::text"):
            return None  # the test changed application_name itself; the transaction is ours
        return self._escaped()

    def _marker_intact(self) -> bool:
        reported = self.conn.pgconn.parameter_status(b"application_name")
        return self.marker is not None and reported == self.marker.encode()

    def _escaped(self) -> str:
        self.conn.real_rollback()
        row = self.conn.cursor(row_factory=tuple_row).execute(
            b"SELECT pg_xact_status(%(x)s::xid8), (SELECT gid FROM pg_prepared_xacts "
            b"WHERE transaction = %(x)s::xid8::xid)", {"x": self.xid}).fetchone()
        self.conn.real_rollback()
        state, gid = row if row is not None else (None, None)
        fate = {"committed": "was COMMITTED", "aborted": "was rolled back"}.get(
            str(state), f"is {state}"
        )
        if gid is not None:  # "in progress", without a session: sqlfix's restore ends it
            fate = (f"was PREPARED for two-phase commit (PREPARE TRANSACTION "
                    f"{sql.Literal(gid).as_string(None)})")
        return f"The test's transaction {fate} before the test ended. " + ESCAPE_HELP

    def end(self, keep: Sequence[str] | None = None) -> None:
        """Roll back everything the test did, then put sequences back; safe to repeat.

        `keep` (the next test's load order) matters to a layered boundary only.

        The rollback comes first: TRUNCATE ... RESTART IDENTITY or ALTER SEQUENCE in
        the test are transactional, and a setval() before the rollback would be lost
        with them. Rollback and reset go in one round trip.
        """
        conn = self.conn
        conn._sqlfix_savepoint = None
        if conn.closed:
            return  # the server rolled back; the session resets sequences on reconnect
        conn.reset_client()  # the test's adapters must not read sqlfix's probe, nor VACUUM's
        # The checks trust the marker; a test that set application_name back to it after
        # a raw COMMIT passes them. The transaction id, read in the same round trip, does not.
        probe = (self.escape is None and self.xid is not None
                 and conn.info.transaction_status == TransactionStatus.INTRANS)
        parts = [XID_PROBE if probe else b"", b"ROLLBACK",
                 SESSION_RESET if self._reset_session else b"", self._reset_query]
        self._reset_query = b""
        try:
            cursor = conn.cursor(row_factory=tuple_row)
            cursor.execute(b"; ".join(p for p in parts if p))
            if probe and (cursor.fetchone() or (None,))[0] != self.xid:
                self.escape = self._escaped()
                self.escaped_at_end = True
            if self._reset_session:
                forget_prepared(conn)
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.real_rollback()
        except psycopg.Error:
            if conn.broken and self.escape is None:
                # The checks read the marker without a query, so a connection the server
                # ended during the test (and nobody used since) shows here first.
                self.lost = self.lost_at_end = True
                self.escape = LOST_HELP
            # A session sqlfix cannot reset (or a dead one) is not handed to the next
            # test: the session opens a fresh connection instead.
            conn.close()
        if (self.escape is None or self.lost_at_end) and self._server_gone is not None \
                and self._server_gone():
            # The postmaster died after the checks: its backend went too, or still
            # answered the ROLLBACK for a moment
            self.lost = self.lost_at_end = True
            self.escape = SERVER_DIED_HELP
            conn.close()


def notice_ended(conn: psycopg.Connection[Any]) -> None:
    """Read what a backend that ended while its connection sat idle (a layer stack's
    transaction between tests: idle_in_transaction_session_timeout, a terminate, a server
    restart) left on the socket, so that `conn.closed` tells; a select(), no query."""
    for _ in range(3):  # the server's FATAL, then the end of the stream
        if conn.closed or not select.select([conn.pgconn.socket], [], [], 0)[0]:
            return
        try:
            conn.pgconn.consume_input()
        except psycopg.Error:
            return  # libpq marked the connection bad: conn.closed says so


def stop_statement_in_flight(conn: SqlfixConnection, why: str) -> bool:
    """If a statement is still running on `conn` (a task or thread the test left behind):
    cancel it, close the connection (`why` is kept as the reason) and return True.

    Used at a test's end, in both modes: its results belong to a task on a loop that may
    be gone, and every command of sqlfix's would fail "another command is already in
    progress" (or wait for the statement). Closing stops it, and the server rolls back
    what it had not committed.
    """
    # A thread mid-statement holds conn.lock (psycopg takes it around every
    # operation), possibly before its query reaches the socket: ACTIVE alone
    # misses that, and sqlfix's own statements would then share the socket.
    in_use = not conn.lock.acquire(blocking=False)
    if not in_use:
        conn.lock.release()
    if not (in_use or conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE):
        return False
    conn._sqlfix_closed_because = why
    with contextlib.suppress(psycopg.Error):  # the backend stops now, not at its end
        conn.cancel_safe(timeout=5.0)
    # Free the libpq connection only once the thread has seen the cancel and let
    # go: its psycopg generator holds the raw pointer while it waits.
    got = conn.lock.acquire(timeout=10.0)
    try:
        conn.close()
    finally:
        if got:
            conn.lock.release()
    return True


def _text(value: object) -> str:
    return bytes(value).decode() if isinstance(value, bytes | memoryview) else str(value)


def _pending_input(conn: psycopg.Connection[Any]) -> bool:
    """The server sent something nobody asked for: a notification, or (a backend that
    was ended) its last error before closing. Then the check asks the server, which
    tells a dead connection from a live one; otherwise it costs no round trip."""
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):
        return True


def forget_prepared(conn: psycopg.Connection[Any]) -> None:
    """Tell psycopg its prepared statements are gone (DEALLOCATE ALL ran in a batch).

    psycopg notices a DEALLOCATE ALL it sees on its own, but not inside a
    multi-statement query; `_prepared` is private, hence the guard.
    """
    prepared = getattr(conn, "_prepared", None)
    if prepared is not None and hasattr(prepared, "clear"):
        prepared.clear()
