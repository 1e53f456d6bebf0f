"""One test session's database: the server (embedded or DSN), its connection, the fixtures.

Started lazily, on the first test that needs it, so a run with no sqlfix test
starts nothing. Tests run on a connection opened after the schema and
`setup_command`, so nothing they set on their own connections reaches a test;
after an escape or a lost connection the session opens a new one (and starts a
new embedded server if the old one died).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlfix.compiler.cache import DiskCache
from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.library import FixtureLibrary
from sqlfix.config import Settings
from sqlfix.database import catalog, catalog_watch, fixture_role, locks, run_lock
from sqlfix.database.backends import APP_NAME
from sqlfix.database.baseline import COPY_SCHEMA, Baseline, StaleViews, capture, restore
from sqlfix.database.boundary import (
    SESSION_RESET,
    Boundary,
    SqlfixConnection,
    last_server_error,
    notice_ended,
    scalar,
)
from sqlfix.database.committed import Fingerprint, Table, fingerprints
from sqlfix.database.layers import LayeredBoundary, LayerStack
from sqlfix.database.schema import (
    RESTORE_FAILED,
    apply_schema,
    check_safe,
    connect,
    no_answer,
    record_damage,
    schema_hash,
    with_connect_timeout,
)
from sqlfix.database.server import EmbeddedServer, connect_timeout_hint
from sqlfix.database.server_options import from_settings
from sqlfix.database.setup_command import run_setup_command
from sqlfix.database.vacuum import Vacuum
from sqlfix.database.workers import clone_for_worker, drop_worker_database
from sqlfix.errors import DatabaseError, RefusedDatabase, ServerError

_RECOVERING = ("the database system is", "server closed the connection unexpectedly",
               "terminating connection")
_STOPPING_SECONDS = 5.0  # a postmaster whose socket is gone writes its shutdown checkpoint
_RECONNECT_SECONDS = 15.0  # after a crashed backend the server recovers for a moment
# A connection lost to a server restarting after a crashed backend, as libpq and
# psycopg word it
_LOST_TO_RECOVERY = (*_RECOVERING, "consuming input failed", "the connection is lost",
                     "terminating connection because of crash of another server process")


T = TypeVar("T")


class ServerRecovering(DatabaseError):
    """The server kept restarting (a crashed backend) while sqlfix restored the baseline."""


def _recovering(exc: BaseException) -> bool:
    """Whether `exc` (or the error it wraps) is a connection lost to a recovering server."""
    while exc is not None:
        if isinstance(exc, DatabaseError | psycopg.OperationalError) and any(
                m in str(exc) for m in _LOST_TO_RECOVERY):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def _shutting_down(exc: BaseException | None) -> bool:
    """Whether `exc` (or the error it wraps) is a connection refused by a postmaster in
    its shutdown. The words are the server's in English (initdb runs with LC_ALL=C); a
    server set to another lc_messages is not recognised, and the failure is reported."""
    while exc is not None:
        if "the database system is shutting down" in str(exc):
            return True
        exc = exc.__cause__
    return False


def _datestyle_hint(problem: str) -> str:
    """`problem`, with where a DateStyle comes from when psycopg could not read one:
    psycopg reads timestamps in DateStyle ISO only (its "can't parse ... with DateStyle"),
    and libpq takes PGDATESTYLE from the environment unseen. Likewise a connect_timeout
    psycopg cannot read, from PGCONNECT_TIMEOUT."""
    if "bad value for connect_timeout" in problem:
        return connect_timeout_hint(problem)
    if "DateStyle" not in problem:
        return problem
    where = (f"PGDATESTYLE={os.environ['PGDATESTYLE']!r} in the environment sets it; unset "
             "it, or " if "PGDATESTYLE" in os.environ else
             "It comes from the DSN's options, the role's or database's settings "
             "(ALTER ROLE/DATABASE ... SET DateStyle), server_settings or postgresql.conf; ")
    return (f"{problem}\npsycopg reads dates and times in DateStyle ISO only. {where}"
            "make it ISO (the day order may stay: 'ISO, DMY')")


def _retry_while_recovering(
    attempt: Callable[[], T], transient: Callable[[Exception], bool],
    server_gone: Callable[[], bool], interval: float = 0.1,
    timed_out: Callable[[Exception], Exception] | None = None,
) -> T:
    """`attempt()`, again every `interval` seconds while it fails for a `transient` reason.

    The one waiting rule of the session: after a crashed backend the postmaster
    ends every connection and refuses new ones for a moment ("the database
    system is in recovery mode"). Stops at once when `server_gone()` (a dead
    server does not recover; `revive` restarts it), and after _RECONNECT_SECONDS
    re-raises the last error, or `timed_out(error)` when given.
    """
    deadline = time.monotonic() + _RECONNECT_SECONDS
    while True:
        try:
            return attempt()
        except (DatabaseError, psycopg.OperationalError) as exc:
            if not transient(exc) or server_gone():
                raise
            if time.monotonic() > deadline:
                if timed_out is None:
                    raise
                raise timed_out(exc) from exc
            time.sleep(interval)


def make_library(settings: Settings, fixture_cache: Path | None = None) -> FixtureLibrary:
    """The session's fixtures; compiled ones kept in `fixture_cache` too, when given."""
    directory = FixtureDir(settings.fixtures_dir, exclude=frozenset(settings.schema))
    directory.check_schema_files()  # a schema file linked in from outside is refused
    disk = DiskCache(fixture_cache) if fixture_cache is not None else None
    return FixtureLibrary(directory, settings.seed, settings.now, settings.faker_locale, disk)


def load_timeouts(settings: Settings) -> bytes:
    """SET LOCAL of the load timeouts, or b"" when they are the tests' own."""
    pairs = [("lock_timeout", settings.load_lock_timeout, settings.lock_timeout),
             ("statement_timeout", settings.load_statement_timeout, settings.statement_timeout)]
    if all(load == test for _, load, test in pairs):
        return b""
    return b"; ".join(sql.SQL("SET LOCAL {} = {}").format(
        sql.Identifier(name), sql.Literal(str(load))).as_bytes(None) for name, load, _ in pairs)


@contextlib.contextmanager
def untimed(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """sqlfix's own statements on the test connection (the verifier's snapshots and
    catalog checks) without the tests' statement_timeout; put back after.

    The connection must be idle (between tests). Raises psycopg.Error if it is gone.
    """
    conn.execute(b"SET statement_timeout = 0")
    psycopg.Connection.commit(conn)  # a session setting: kept only once committed
    try:
        yield
    finally:
        if not (conn.closed or conn.broken):
            with contextlib.suppress(psycopg.Error):
                psycopg.Connection.rollback(conn)
                conn.execute(b"RESET statement_timeout")  # the connection's own (the test's)
                psycopg.Connection.commit(conn)


class DatabaseSession:
    def __init__(
        self, settings: Settings, fixture_cache: Path | None = None, worker: str | None = None,
        rebuild: bool = False, run: str | None = None,
    ) -> None:
        self.settings = settings
        self.worker = worker  # pytest-xdist's worker id ("gw0"): a DSN's database is cloned
        self.run = run  # pytest-xdist's testrunuid: its first worker builds the clones' template
        self._clone: str | None = None  # the worker's own database, dropped at stop()
        self.rebuild = rebuild  # ignore the schema saved by an earlier run
        self._built = False  # schema and setup_command are in the test database
        self.library = make_library(settings, fixture_cache)
        self.server: EmbeddedServer | None = None
        self.dsn: str | None = None
        self._conn: SqlfixConnection | None = None
        self.baseline: Baseline | None = None
        self.fixture_role: fixture_role.FixtureRole | None = None
        self._load_timeouts = load_timeouts(settings)
        self.opened = 0  # test connections opened so far (the second-connection hint's count)
        self.started_at: datetime | None = None  # server clock; for locks.holders
        self.schema_print: catalog.Schema | None = None
        self.copies_print: dict[Table, Fingerprint] | None = None
        self.settings_print: catalog.Settings | None = None
        self.watch: catalog_watch.Watch | None = None  # whether any catalog changed
        self._closed_pids: list[int] = []  # backends of closed test connections, maybe exiting
        self._roles_before: list[str] = []  # roles before the schema ran (the rebuild drops others)
        self.layers: LayerStack | None = (
            LayerStack(settings.layers_max_tests, reset_session=settings.reset_session)
            if settings.layers else None)
        self.vacuum = Vacuum(settings.vacuum_threshold)  # callers count the rows they load
        self._run_lock: psycopg.Connection[Any] | None = None  # see database/run_lock.py
        self.start_notes: list[str] = []  # what start() did that the user should know
        self.recovered: str | None = None  # what the last begin() recovered from, if anything
        # Deaths of the embedded server that revive() recovered from (the last one's words),
        # and how many of them were reported: connection() revives without a word
        self.deaths = 0
        self.last_death = ""
        self.deaths_told = 0

    @property
    def own_pids(self) -> list[int]:
        """Backends sqlfix keeps open beside the test connection (the run lock's): not a
        test's leftovers, never to be ended."""
        lock = self._run_lock
        return [lock.info.backend_pid] if lock is not None and not lock.closed else []

    def start(self) -> None:
        if self.dsn is not None:
            return
        try:
            dsn, conn = self._open()
            try:
                if self.settings.dsn is not None and self.worker is None:
                    self._run_lock = run_lock.take(dsn)  # one run at a time on a DSN's database
                    recovered = run_lock.recover(self._run_lock)  # a killed run's sequences
                    if recovered:
                        self.start_notes.append(recovered)
                self._prepare(conn, dsn)
            finally:
                conn.close()  # what the schema set on its session (search_path...) stays there
        except psycopg.errors.InsufficientPrivilege as exc:
            self.stop()
            first = str(exc).strip().splitlines()[0]
            if first.startswith("permission denied for database"):
                # CREATE SCHEMA _sqlfix, the first thing sqlfix makes in a DSN's database
                raise DatabaseError(
                    f"{first}: sqlfix keeps its state in the schemas _sqlfix and "
                    f"{COPY_SCHEMA} of the test database, and the DSN's user may not create "
                    "schemas there. Grant it (GRANT CREATE ON DATABASE <the database> TO <the "
                    "DSN's user>), or make the user the database's owner") from exc
            schema = next((s for s in (COPY_SCHEMA, "_sqlfix") if s in str(exc)), None)
            if schema is None:
                raise
            # sqlfix's own schemas, made by another role (an earlier run as another user)
            raise DatabaseError(
                f"{first}: sqlfix keeps its state in the schemas "
                f"_sqlfix and {COPY_SCHEMA} of the test database, and the DSN's user may not "
                f"use {schema}. Grant it (GRANT USAGE, CREATE ON SCHEMA {schema} TO <the "
                "DSN's user>, and the same on the tables in it), or drop the schema so that "
                "sqlfix makes it again as this user") from exc
        except psycopg.errors.ConnectionTimeout as exc:  # the run lock's, a worker's clone's
            self.stop()
            raise DatabaseError(
                f"cannot connect to the test database: {no_answer(self.settings.dsn or '')}"
            ) from exc
        except (psycopg.Error, NotImplementedError) as exc:
            # NotImplementedError: psycopg reads no timestamp under a DateStyle other than
            # ISO (server_settings DateStyle = 'SQL, DMY'), nor would the tests' code.
            self.stop()
            raise DatabaseError(
                self.with_server_settings(_datestyle_hint(str(exc).strip()))) from exc
        except DatabaseError as exc:  # the schema or setup_command failed: a setting may be why
            self.stop()
            noted = self.with_server_settings(str(exc))
            if noted == str(exc):
                raise
            # The same class: a RefusedDatabase keeps its exit code (4, not 3).
            raise (RefusedDatabase if isinstance(exc, RefusedDatabase) else DatabaseError)(
                noted) from exc
        except BaseException:
            self.stop()
            raise
        self.dsn = dsn

    def with_server_settings(self, problem: str) -> str:
        """`problem`, and the embedded server's server_settings with their source: a
        setting of the user's (read-only transactions, a 1 ms idle timeout) can be why."""
        settings = self.settings.server_settings
        if not settings or self.settings.dsn is not None:
            return problem
        # as postgresql.conf writes them, not a Python dict
        shown = "; ".join(f"{k} = '{str(v).replace(chr(39), chr(39) * 2)}'"
                          for k, v in settings.items())
        return (f"{problem}\nThe server ran with server_settings {shown} (from "
                f"{self.settings.source('server_settings')}): if one of them is why, fix or "
                "remove it there")

    def _prepare(self, conn: SqlfixConnection, dsn: str) -> None:
        """Schema, then migrations (unless built already), then the baseline: once per
        session, before any test."""
        if self._clone is None:  # a worker's clone: its template's name was checked
            check_safe(conn, self.settings.allow_any_database)
        self._durable(conn)
        if self.started_at is None:  # a rebuild keeps it: connections of the run stay ours
            self.started_at = scalar(conn, b"SELECT now()")
        if not self._built:
            self._build(conn, dsn)
        elif not self._roles_before:
            # Built before this session (a saved schema cluster, a worker's clone): the
            # roles the schema made are already here. On the embedded server a rebuild
            # runs the schema again, so it keeps only initdb's roles (oids below
            # FirstNormalObjectId, 16384) and drops the schema's with the rest; a
            # kept `CREATE ROLE` would fail the second time with "already exists".
            query = (b"SELECT rolname FROM pg_roles WHERE oid < 16384" if self.server is not None
                     else b"SELECT rolname FROM pg_roles")
            self._roles_before = [r[0] for r in conn.execute(query)]
            conn.rollback()
        self.fixture_role = fixture_role.prepare(conn)  # after the tables exist
        fixture_role.attach(conn, self.fixture_role)
        self.baseline = capture(conn)
        if self._run_lock is not None:  # how a killed run's sequences come back (run_lock.py)
            wanted = self.settings.reset_sequences  # reset_sequences = false: left as they are
            run_lock.record_open(self._run_lock, self.baseline.positions if wanted else b"")
        self.copies_print = self._copies(conn)
        self.schema_print = catalog.take_schema(conn, self.server is not None)
        self.settings_print = catalog.take_settings(conn)
        schema_dir = self.server.schema_dir if self.server is not None else None
        self.watch = catalog_watch.Watch.take(
            conn, shared=self.server is not None,
            cache=schema_dir.with_name(schema_dir.name + ".watch.json") if schema_dir else None)

    @staticmethod
    def _durable(conn: SqlfixConnection) -> None:
        # The embedded server runs with synchronous_commit off (speed); the schema and the
        # baseline's copies must survive a crashed backend's recovery all the same.
        conn.execute(b"SET synchronous_commit = on")
        psycopg.Connection.commit(conn)  # a session setting: kept only once committed

    def _open(self) -> tuple[str, SqlfixConnection]:
        """The test database and its connection: embedded, the DSN, or a worker's clone."""
        if not self.settings.dsn:
            return self._open_embedded()
        if self.worker is None:
            return self.settings.dsn, connect(self.settings.dsn)
        run_lock.refuse_if_running(self.settings.dsn)  # a plain run tests in the template
        self._clone = clone_for_worker(self.settings.dsn, self.worker, self._build_template,
                                       self.run, self.settings.allow_any_database)
        self._built = True
        return self._clone, connect(self._clone)

    def _open_embedded(self) -> tuple[str, SqlfixConnection]:
        """The embedded server, from the cluster saved for this schema when there is one."""
        if self.server is not None:  # kept by a rebuild: its test database is new and empty
            self._built = False
            return self.server.dsn, connect(self.server.dsn)
        key = self._schema_key()
        try:
            server = self.server = EmbeddedServer.start(
                options=from_settings(self.settings), schema_key=key, rebuild=self.rebuild)
        except ServerError as exc:
            port = self.settings.server_port
            if port is not None and "already in use" in str(exc):  # PostgreSQL's bind error
                raise ServerError(
                    f"{exc}\nserver_port = {port} (from {self.settings.source('server_port')})"
                    ": another program listens on that port (a `python -m sqlfix server`, "
                    "another test run); choose a free port, or remove server_port") from exc
            if not self.settings.server_settings:
                raise
            # A value of the user's own the server refused names neither the key nor
            # where it was set: say both.
            raise ServerError(self.with_server_settings(str(exc))) from exc
        conn = connect(server.dsn)
        if server.schema_cached or key is None:
            self._built = server.schema_cached  # else start() builds (and reports) as usual
            return server.dsn, conn
        try:
            check_safe(conn, self.settings.allow_any_database)
            self._build(conn, server.dsn)
        finally:
            conn.close()
        server.save_schema()
        self._built = True
        return server.dsn, connect(server.dsn)

    def _schema_key(self) -> str | None:
        """What the schema is built from: files, command and the server_settings the
        schema ran under (search_path decides where its tables go); the server adds its
        version and locale."""
        settings = self.settings
        if not settings.schema and not settings.setup_command:
            return None
        try:
            files = schema_hash(settings.schema)
        except OSError:
            return None  # apply_schema says which file is missing
        ran_under = sorted(settings.server_settings.items())
        return f"schema-v1;{files};{settings.setup_command!r};{ran_under!r}"

    def _build_template(self, dsn: str) -> None:
        """Schema and migrations on the DSN's database, which the workers then clone."""
        conn = connect(dsn)
        try:
            check_safe(conn, self.settings.allow_any_database)
            self._build(conn, dsn)
        finally:
            conn.close()

    def _build(self, conn: SqlfixConnection, dsn: str) -> None:
        """Schema, then migrations: once per session, before any test."""
        self._durable(conn)
        # roles before the schema ran: a rebuild drops the others
        self._roles_before = [r[0] for r in conn.execute(b"SELECT rolname FROM pg_roles")]
        conn.rollback()
        apply_schema(conn, self.settings.schema)
        # What the schema SET on this session (pg_dump's SET client_encoding = 'SQL_ASCII',
        # a closing SET ROLE of pg_dump --role, search_path) must not reach sqlfix's own
        # work on it below (the fixture role, the baseline): back to the startup options.
        conn.execute(b"SET SESSION AUTHORIZATION DEFAULT")
        conn.execute(b"RESET ALL")
        psycopg.Connection.commit(conn)  # session settings: kept only once committed
        self._durable(conn)
        if self.settings.setup_command:
            run_setup_command(self.settings.setup_command, dsn, self.settings.root,
                              self.server.watch_group if self.server is not None else None,
                              self.settings.source("setup_command"))

    def connection(self) -> SqlfixConnection:
        """The session's connection; a new one (sequences reset) if the old one is gone."""
        self.revive()
        if self._conn is None or self._conn.closed:
            try:
                self._conn = self._connect()
            except DatabaseError:
                # A postmaster killed a moment ago refuses connections before it is seen
                # to have exited (reaped): wait for that, on this failure path only
                if self.server is None or not self.server.exits_within(_STOPPING_SECONDS):
                    raise
                self.revive()
                self._conn = self._connect()
            fixture_role.attach(self._conn, self.fixture_role)
            reset = self._sequence_reset(self.settings.reset_sequences)
            if reset:  # the test that lost the connection could not reset them
                with untimed(self._conn):
                    self._conn.execute(b"ROLLBACK; " + reset)
        return self._conn

    def connection_if_open(self) -> SqlfixConnection | None:
        """The session's connection if it is open, without reconnecting."""
        return self._conn if self._conn is not None and not self._conn.closed else None

    def _connect(self) -> SqlfixConnection:
        """A new test connection; waits out a server recovering from a crashed backend."""
        dsn, s = self.dsn, self.settings
        assert dsn is not None
        conn = _retry_while_recovering(
            lambda: connect(dsn, s.lock_timeout, s.statement_timeout),
            lambda exc: isinstance(exc, DatabaseError), self._server_gone)
        self.opened += 1
        return conn

    def _server_stopping(self, exc: BaseException) -> bool:
        """Whether the embedded server is on its way out: a smart shutdown (SIGTERM,
        `pg_ctl stop -m smart`) waits for the last connection, and the restore closed it
        just before finding the socket gone. Waits a moment for the postmaster to exit.

        Only for a connection that failed on the client's side (no SQLSTATE: the
        socket refused or gone) or that the server refused because it is shutting
        down (class 57P: 57P01 admin_shutdown, 57P03 "the database system is shutting
        down"); any other server error (a lock not free, a cancel) says the server is
        up, and waiting for its exit would only delay the report."""
        if self.server is None:
            return False
        if self._server_gone():
            # It exited while the connection was being refused: whatever the words of
            # the refusal ("server closed the connection unexpectedly" is also a
            # recovering server's), it is gone, not recovering.
            return True
        # Refused with "the database system is shutting down": the postmaster had not
        # closed its socket yet (a race with its exit), not a server in recovery.
        if _recovering(exc) and not _shutting_down(exc):
            return False
        cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
        if not isinstance(cause, psycopg.OperationalError):
            return False
        if cause.sqlstate is not None and not cause.sqlstate.startswith("57P"):
            return False
        return self.server.exits_within(_STOPPING_SECONDS)

    def _server_gone(self) -> bool:
        return self.server is not None and self.server.gone()

    def _sequence_reset(self, wanted: bool) -> bytes:
        return self.baseline.reset_query if wanted and self.baseline is not None else b""

    def boundary(self, reset_sequences: bool | None = None) -> Boundary:
        """A new boundary on the session connection; sequences reset as configured."""
        wanted = self.settings.reset_sequences if reset_sequences is None else reset_sequences
        advance = self.baseline.advance_query if self.baseline is not None else b""
        return Boundary(self.connection(), self._sequence_reset(wanted), advance,
                        reset_session=self.settings.reset_session,
                        load_timeouts=self._load_timeouts, **self._boundary_options())

    def begin(self, reset_sequences: bool | None = None, layered: bool = False) -> Boundary:
        """A boundary, begun; if the connection or the server died since, recover first
        and say how in `recovered` (None when there was nothing to recover from).

        `layered` (with `layers` on): on the session's layer stack, see `layers`.
        """
        on_stack = layered and self.layers is not None
        self.recovered = None
        if self._server_gone():  # its backends may outlive it a moment, and still answer
            self.recovered = f"sqlfix found the server dead when the test began; {self.restore()}"
        if not on_stack:
            self.end_layers()  # a plain boundary: the stack's transaction ends first
        if self._run_lock is not None and not run_lock.held(self._run_lock):
            self._take_run_lock_again()
        self.vacuum.tests += 1
        self.vacuum.run_if_due(self._conn)  # between tests, when no stack is open
        make = self.layered_boundary if on_stack else self.boundary
        boundary = make(reset_sequences)
        try:
            boundary.begin()
        except psycopg.Error as exc:  # ended by the server, any SQLSTATE (see Boundary._check)
            if not (boundary.conn.closed or boundary.conn.broken):
                raise
            # psycopg's "the connection is lost" when it knew already; libpq kept the why
            said = last_server_error(boundary.conn) or (
                str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.recovered = (f"sqlfix's connection was lost between tests ({said}); "
                              f"{self.restore()}")
            boundary = make(reset_sequences)
            boundary.begin()
        died = self.untold_death()  # the test before ended before the server was seen dead
        if died is not None and (self.recovered is None or died not in self.recovered):
            found = f"sqlfix found the server dead when the test began; {died}"
            self.recovered = f"{found}\n{self.recovered}" if self.recovered else found
        return boundary

    def layered_boundary(self, reset_sequences: bool | None = None) -> LayeredBoundary:
        """A boundary on the layer stack (`layers = true`)."""
        assert self.layers is not None
        wanted = self.settings.reset_sequences if reset_sequences is None else reset_sequences
        if self._conn is not None and not self._conn.closed:
            notice_ended(self._conn)  # the stack's backend may have ended since the last test
            if self._conn.closed:  # the server's doing (a timeout, a terminate): begin() says so
                said = last_server_error(self._conn) or "the server closed it"
                self.recovered = (f"sqlfix's connection was lost between tests ({said}); "
                                  "sqlfix connected again and begins a new layer stack")
        conn = self.connection()
        self.layers.positions = (
            self.baseline.positions if wanted and self.baseline is not None else b"")
        advance = self.baseline.advance_query if self.baseline is not None else b""
        return LayeredBoundary(self.layers, conn, self._sequence_reset(wanted),
                               advance_query=advance, reset_session=self.settings.reset_session,
                               load_timeouts=self._load_timeouts, **self._boundary_options())

    def _boundary_options(self) -> dict[str, Any]:
        """The learnt advances of the current baseline (see Boundary.first_advance), and
        how a boundary tells that the embedded server died."""
        gone = {"server_gone": self._server_gone} if self.server is not None else {}
        if self.baseline is None:
            return gone
        return {"advances": self.baseline.advances, "advance_pairs": self.baseline.advance_pairs,
                **gone}

    def end_layers(self) -> None:
        """End the layer stack's transaction, if one is open; sequences and session reset."""
        stack = self.layers
        if stack is None or stack.conn is None:
            return
        if stack.conn is not self._conn:
            stack.forget()
            return
        session = SESSION_RESET if self.settings.reset_session else b""
        stack.close(self._sequence_reset(self.settings.reset_sequences), session)

    def restore(
        self, tables: Collection[tuple[str, str]] | None = None,
        end_lock_holders: bool | None = None,
    ) -> str:
        """`_restore`, again as a whole while the server recovers from a crashed backend.

        After a backend is killed the postmaster ends every connection and restarts; a
        restore that connected in between loses its connection midway. Raises
        ServerRecovering when it still fails after _RECONNECT_SECONDS; otherwise as
        `_restore`.
        """
        return _retry_while_recovering(
            lambda: self._restore_after_stop(tables, end_lock_holders), _recovering,
            self._server_gone, interval=0.2, timed_out=lambda exc: ServerRecovering(
                "the PostgreSQL server was restarting after a backend process crashed or "
                f"was killed, and sqlfix's restore lost its connection for "
                f"{_RECONNECT_SECONDS:.0f}s ({str(exc).strip()})"))

    def _restore_after_stop(
        self, tables: Collection[tuple[str, str]] | None, end_lock_holders: bool | None,
    ) -> str:
        """`_restore`; once more if the embedded server was on its way out (see
        `_server_stopping`): that one starts it again (`revive`)."""
        try:
            return self._restore(tables, end_lock_holders)
        except (DatabaseError, psycopg.OperationalError) as exc:
            if not self._server_stopping(exc):
                raise
        return self._restore(tables, end_lock_holders)

    def _restore(
        self, tables: Collection[tuple[str, str]] | None = None,
        end_lock_holders: bool | None = None,
    ) -> str:
        """Back to the baseline on a new connection, as the session's own user; says how.

        First database and role settings a test committed (`ALTER ROLE ... SET`,
        `ALTER DATABASE ... SET`) are put back; then, if the schema's objects changed
        (committed DDL), the embedded database is rebuilt (dropped, created, schema and
        `setup_command` run again) and a database given by DSN stops the session
        (DatabaseError naming the changes); otherwise only `tables` (closed under
        foreign keys) when given, else every table, are truncated and reloaded.
        Connections this run opened that hold locks on user tables are ended first
        (see `sqlfix.database.locks`) if `end_lock_holders`; by default unless `tables`
        is given (the committed mode waits for them and names them itself). The old
        test connection is closed, with whatever a test left on it (SET ROLE,
        search_path, temporary tables, locks). If the embedded server died, a new
        one is started instead: a fresh copy of the cluster is the baseline.
        Raises DatabaseError, ServerError or psycopg.Error when that fails.
        """
        self._drop_connection()
        died = self.revive()
        if died is not None:
            return died
        assert self.baseline is not None and self.dsn is not None
        conn, notes = self._maintenance()
        try:
            # its temporary tables go when its backend exits, a moment after the close
            catalog_watch.wait_gone(conn, self._closed_pids)
            self._closed_pids = []
            # First: the truncate waits for every lock, and the schema's fingerprint for
            # ACCESS EXCLUSIVE ones (pg_get_expr() opens the table)
            if end_lock_holders is None:
                end_lock_holders = tables is None
            ended = (self._end_lock_holders(conn, None, "restore the baseline")
                     if end_lock_holders else [])
            notes += self._undo_settings(conn)
            # sqlfix's copies are in the catalogs too: their own words first
            changes = self._copies_changed(conn) or self.drift(conn)[0]
            if changes and self.server is None:  # the next run must not start from it either
                record_damage(conn, "; ".join(changes))
                conn.commit()
            if changes:
                conn.close()
                return self._rebuild(changes, [*notes, *ended])
            notes += ended
            try:
                done = restore(conn, self.baseline, tables)
            except StaleViews as exc:  # rolled back: the database is rebuilt instead
                if self.server is None:
                    record_damage(conn, "; ".join(exc.lines))
                    conn.commit()
                conn.close()
                return self._rebuild(exc.lines, [*notes, exc.advice], exc.why)
            except psycopg.errors.LockNotAvailable as exc:
                if not end_lock_holders:
                    raise  # the caller (committed mode) names them in its own words
                conn.rollback()
                found = locks.holders(conn, self._since())
                older = ", ".join(p.describe() for p in locks.prepared(conn, self._since()))
                held = locks.summary(found) or (
                    f"a prepared transaction from before this run: {older}; ROLLBACK PREPARED "
                    "it" if older else "a connection that is gone now")
                raise DatabaseError(
                    f"the restore waited longer than lock_timeout for a lock ({exc}); held by "
                    f"{held}. End that connection (or the program it belongs to) and run "
                    "again") from exc
            # TRUNCATE gave the tables new files (pg_class rows): the same objects
            assert self.watch is not None
            self.watch = self.watch.mark(conn)
        finally:
            conn.close()
        return "\n".join([done, *notes])

    def mark_damaged(self, why: str) -> bool:
        """After a failed restore of a database given by DSN: record it, so that the next
        run refuses the database instead of taking a test's rows as its baseline.

        True when recorded (or not needed: the embedded database is made anew by each
        run); False when the server could not be reached.
        """
        if self.server is not None or self.settings.dsn is None or self.worker is not None:
            return True  # (a pytest-xdist worker's clone is dropped at the end of the run)
        options = "-c default_transaction_read_only=off -c statement_timeout=0"
        try:
            with self._own_connect(self.settings.dsn, options) as conn:  # commits at the end
                # a committed DDL's own mark (restore) stays: it says more
                record_damage(conn, RESTORE_FAILED + why, keep_earlier=True)
        except psycopg.Error:
            return False
        return True

    def _copies(self, conn: psycopg.Connection[Any]) -> dict[Table, Fingerprint]:
        """Fingerprints of sqlfix's copies of the schema's rows; psycopg.Error if one is gone."""
        assert self.baseline is not None
        copies = [(COPY_SCHEMA, f"{schema}.{table}") for schema, table in self.baseline.saved]
        try:
            return fingerprints(conn, copies)
        finally:
            conn.rollback()

    def _copies_changed(self, conn: psycopg.Connection[Any]) -> list[str]:
        """[] while sqlfix's copies of the schema's rows are as `capture` left them.

        A "clean the database" helper that truncates every table it finds, or a test
        writing into `_sqlfix_baseline`, would otherwise make the restore reload the
        wrong rows (and say it restored the baseline).
        """
        try:
            now: dict[Table, Fingerprint] | None = self._copies(conn)
        except psycopg.Error:
            now = None
        if now == self.copies_print:
            return []
        return [f"sqlfix's copies of the schema's rows (schema {COPY_SCHEMA}) were changed"]

    def _since(self) -> datetime:
        assert self.started_at is not None
        return self.started_at

    def _maintenance(self) -> tuple[psycopg.Connection[object], list[str]]:
        """A connection that may write whatever settings a test committed: for restores.

        With it, what was undone to be able to connect at all (ALLOW_CONNECTIONS).
        """
        assert self.dsn is not None
        s = self.settings
        # The tests' statement_timeout is for the tests' statements: a restore of big
        # tables may take longer, and its lock waits are bounded by lock_timeout
        options = (f"-c default_transaction_read_only=off -c synchronous_commit=on "
                   f"-c lock_timeout={s.lock_timeout} -c statement_timeout=0")
        try:
            conn = self._own_connect(self.dsn, options)
        except psycopg.errors.ConnectionTimeout as first:  # no server answers: no other database
            raise DatabaseError("cannot connect to the test database to restore it: "
                                f"{no_answer(self.dsn)}") from first
        except psycopg.OperationalError as first:
            # ALTER DATABASE ... ALLOW_CONNECTIONS false: put it back from another database
            try:
                with self._admin_connect(options) as admin:
                    notes = self._undo_settings(admin)
            except psycopg.Error:
                raise DatabaseError(f"cannot connect to the test database to restore it: "
                                    f"{first}") from first
            if not notes:
                raise DatabaseError(f"cannot connect to the test database to restore it: "
                                    f"{first}") from first
            conn = self._own_connect(self.dsn, options)
        else:
            notes = []
        conn.execute(b"SET ROLE NONE")  # an ALTER ROLE ... SET role = ... a test committed
        conn.commit()
        return conn, notes

    def _admin_connect(self, options: str = "", autocommit: bool = False
                       ) -> psycopg.Connection[Any]:
        """A maintenance connection to another database of the server: `postgres`, or
        `template1` when a test dropped `postgres` (or may not connect to it)."""
        assert self.dsn is not None
        try:
            return self._own_connect(make_conninfo(self.dsn, dbname="postgres"), options,
                                     autocommit)
        except psycopg.errors.ConnectionTimeout:
            raise  # no answer from the server: nor would template1 answer
        except psycopg.OperationalError:
            return self._own_connect(make_conninfo(self.dsn, dbname="template1"), options,
                                     autocommit)

    def _own_connect(
        self, dsn: str, options: str = "", autocommit: bool = False
    ) -> psycopg.Connection[Any]:
        """A maintenance connection, named and counted as sqlfix's own (see `opened`)."""
        conn = _retry_while_recovering(
            lambda: psycopg.connect(with_connect_timeout(dsn), options=options,
                                    autocommit=autocommit, application_name=APP_NAME,
                                    client_encoding="UTF8"),  # see schema.connect
            # refused while recovering, or closed just after it was accepted: nothing else
            lambda exc: isinstance(exc, psycopg.OperationalError)
            and any(m in str(exc) for m in _RECOVERING),
            self._server_gone)
        if self._dbname() == conninfo_to_dict(dsn).get("dbname"):
            self.opened += 1  # on the test database: not a connection of the test
        return conn

    def _undo_settings(self, conn: psycopg.Connection[object]) -> list[str]:
        assert self.settings_print is not None and self.dsn is not None
        dbname = self._dbname()
        undone = catalog.undo_settings(conn, self.settings_print, dbname)
        if not undone:
            return []
        return ["sqlfix put back database and role settings a test committed (they reach "
                "every new session):", *(f"  {line}" for line in undone)]

    def _dbname(self) -> str:
        assert self.dsn is not None
        return str(psycopg.conninfo.conninfo_to_dict(self.dsn).get("dbname") or "")

    def drift(self, conn: psycopg.Connection[object]) -> tuple[list[str], bool]:
        """What changed in the schema's objects since the baseline ([] when nothing did),
        and whether database or role settings did.

        Cheap (one small query) while no transaction committed since the last look;
        see `catalog_watch` for the steps after that.
        """
        assert self.schema_print is not None and self.settings_print is not None
        assert self.watch is not None
        self.watch, differ, committed = self.watch.check(conn)
        if not committed:
            return [], False
        moved = catalog.take_settings(conn, self._dbname()) != self.settings_print
        if not differ:
            return [], moved
        now = catalog.take_schema(conn, self.server is not None)
        return self.schema_print.changes(now) or catalog_watch.describe(differ), moved

    def _end_lock_holders(
        self, conn: psycopg.Connection[object], modes: tuple[str, ...] | None, what: str
    ) -> list[str]:
        """End connections of this run holding locks on user tables, and roll back the
        prepared transactions it left (whatever they hold); lines for the message.

        Raises DatabaseError naming the holders this run did not open.
        """
        left = self.end_prepared(conn)
        found = locks.holders(conn, self._since(), modes)
        if not found:
            return left
        others = [h for h in found if not h.ours]
        if others:
            raise DatabaseError(
                f"sqlfix must {what} but other connections hold locks on tables of the test "
                f"database: {locks.summary(others)}. They were opened before this test run, so "
                "sqlfix does not end them: close them (or pg_terminate_backend(pid)) and run "
                "again")
        ended = locks.terminate(conn, found)
        return left + [
            f"sqlfix ended a connection this run opened and left open, which held locks "
            f"sqlfix needed to {what}: {h.describe()}. Close the connections a test "
            "opens (a `with` block, or a fixture that closes them)" for h in ended]

    def end_prepared(self, conn: psycopg.Connection[object]) -> list[str]:
        """ROLLBACK PREPARED the prepared transactions this run left on the test database
        (those from before it are left alone); a line for the message about each.

        `conn` is left idle, not in autocommit. Raises psycopg.Error.
        """
        return [f"sqlfix rolled back a prepared transaction this run left behind: "
                f"{p.describe()}. It kept its changes uncommitted and its locks held after "
                "its session ended, until COMMIT PREPARED or ROLLBACK PREPARED; finish the "
                "two-phase commits a test starts (tpc_commit() or tpc_rollback())"
                for p in locks.rollback_prepared(conn, locks.prepared(conn, self._since()))]

    def end_lock_holders(self, conn: psycopg.Connection[object], what: str) -> list[str]:
        """For the verifier: end holders of ACCESS EXCLUSIVE locks, which block its reads."""
        return self._end_lock_holders(conn, locks.BLOCKS_READS, what)

    def _rebuild(self, changes: list[str], notes: list[str], why: str = "") -> str:
        """The schema changed (or `why`): drop and create the embedded database, prepare it
        again."""
        what = "\n".join(f"  {line}" for line in changes)
        dbname = self._dbname()
        if self.server is None:
            raise DatabaseError(
                f"a test changed the schema of the test database {dbname!r} and the change "
                f"was committed (a raw COMMIT, or another connection):\n{what}\nsqlfix "
                "rebuilds only the database of its embedded PostgreSQL; it does not drop a "
                f"database given by DSN, and refuses it until then. Recreate {dbname!r} "
                "(dropdb/createdb: sqlfix applies the schema to an empty database) and run "
                "again; keep DDL in the schema files or migrations")
        self._recreate_database()
        return "\n".join([
            "sqlfix rebuilt the test database: " + (why or "the test committed changes to the "
                                                    "schema or the system catalogs (DDL, GRANT, "
                                                    "COMMENT, large objects...):"),
            what, f"sqlfix dropped and created database {dbname!r} and ran the schema files "
            "(and setup_command) again", *notes])

    def _recreate_database(self) -> None:
        """Drop and create the embedded server's test database (and the roles made since
        the session began), then prepare it again: schema, setup_command, baseline."""
        assert self.dsn is not None
        dbname = self._dbname()
        with self._admin_connect(autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
            for (role,) in admin.execute(b"SELECT rolname FROM pg_roles WHERE rolname <> ALL (%s)"
                                         b" ORDER BY 1", [self._roles_before]).fetchall():
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        self.dsn = None
        self.start()

    def revive(self) -> str | None:
        """Start the session, or start it again if its embedded server died; says why.

        The server is started again in its own directory, so its socket, port and DSN
        (what `sqlfix_dsn` gave the application) stay the same; PostgreSQL recovers the
        data directory as after any crash, and the test database is then built anew.
        If that fails, a new server in a new directory.
        """
        server = self.server
        died = server.exited() if server is not None and server.gone() else None  # dying: waited
        if died is not None:
            assert self.server is not None
            self.deaths, self.last_death = self.deaths + 1, died
            self._drop_connection()
            try:
                self.server.restart()
                self.dsn = self.server.dsn
                self._recreate_database()
            except (DatabaseError, ServerError, psycopg.Error):
                self.stop()
                self.start()
                return (f"{died}\nsqlfix started a new embedded PostgreSQL (a new DSN) and "
                        "applied the schema again")
            return (f"{died}\nsqlfix started the embedded PostgreSQL again (same DSN) and "
                    "built the test database again")
        self.start()
        return None

    def untold_death(self) -> str | None:
        """The last death of the embedded server that no report has named yet (revived by
        a reconnect, or in a restore whose words were not shown), and mark it told."""
        if self.deaths == self.deaths_told:
            return None
        self.deaths_told = self.deaths
        return self.last_death

    def _drop_connection(self) -> None:
        if self.layers is not None:
            self.layers.forget()  # its transaction dies with the connection
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                self._closed_pids.append(self._conn.info.backend_pid)
            self._conn.close()
        self._conn = None

    def _take_run_lock_again(self) -> None:
        """The run lock's connection was ended (a test's pg_terminate_backend(), a DBA):
        take the lock again before the next test, or stop if another run took it."""
        assert self._run_lock is not None and self.settings.dsn is not None
        with contextlib.suppress(psycopg.Error):
            self._run_lock.close()
        try:
            self._run_lock = run_lock.take(self.settings.dsn)
        except DatabaseError as exc:
            self._run_lock = None
            raise DatabaseError(
                f"sqlfix's run lock on this database was lost (the connection holding it "
                f"was ended: pg_terminate_backend(), a DBA), and {exc}") from None

    def stop(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.end_layers()  # sequences back, on a DSN's database too
        self._drop_connection()
        if self._clone is not None:
            with contextlib.suppress(psycopg.Error, DatabaseError):
                drop_worker_database(self._clone)
            self._clone = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._run_lock is not None:
            # Sequences back and the record gone, under the lock: never another run's record
            with contextlib.suppress(psycopg.Error, DatabaseError):
                if not run_lock.held(self._run_lock):
                    self._take_run_lock_again()
                run_lock.record_ended(self._run_lock,  # reset as configured
                                      self._sequence_reset(self.settings.reset_sequences))
        if self._run_lock is not None:
            with contextlib.suppress(psycopg.Error):
                run_lock.release(self._run_lock)  # the next run on this database may start
            self._run_lock = None
        self.dsn = None


def damage_note(session: DatabaseSession, exc: BaseException) -> str:
    """For the exit after a failed restore: how the next run will know (a DSN database)."""
    if session.server is not None or not session.settings.dsn or session.worker is not None:
        return ""  # the embedded database is made anew by each run, a worker's clone dropped
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if session.mark_damaged(first):
        return ("\nsqlfix marked the test database as damaged: the next run refuses it "
                "until it is recreated (dropdb/createdb).")
    return ("\nsqlfix could not mark the test database as damaged (the server cannot be "
            "reached): it may still hold the test's changes, so recreate it (dropdb/createdb) "
            "before the next run.")
