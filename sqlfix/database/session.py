"""One test session's database: the server (embedded or DSN), its connection, the fixtures.

Started lazily, on the first test that needs it, so a run with no sqlfix test
starts nothing. Tests run on a connection opened after the schema and
`setup_command`, so nothing they set on their own connections reaches a test;
after an escape or a lost connection the session opens a new one (and starts a
new embedded server if the old one died).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection
from pathlib import Path

import psycopg
from psycopg import sql

from sqlfix.compiler.cache import DiskCache
from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.library import FixtureLibrary
from sqlfix.config import Settings
from sqlfix.database import fixture_role
from sqlfix.database.baseline import Baseline, capture, restore
from sqlfix.database.boundary import SESSION_RESET, Boundary, SqlfixConnection
from sqlfix.database.layers import LayeredBoundary, LayerStack
from sqlfix.database.schema import apply_schema, check_safe, connect, schema_hash
from sqlfix.database.server import EmbeddedServer
from sqlfix.database.server_options import from_settings
from sqlfix.database.setup_command import run_setup_command
from sqlfix.database.workers import clone_for_worker, drop_worker_database
from sqlfix.errors import DatabaseError

_RECONNECT_SECONDS = 15.0  # after a crashed backend the server recovers for a moment


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


class DatabaseSession:
    def __init__(
        self, settings: Settings, fixture_cache: Path | None = None, worker: str | None = None,
        rebuild: bool = False,
    ) -> None:
        self.settings = settings
        self.worker = worker  # pytest-xdist's worker id ("gw0"): a DSN's database is cloned
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
        self.layers: LayerStack | None = (
            LayerStack(settings.layers_max_tests, reset_session=settings.reset_session)
            if settings.layers else None)

    def start(self) -> None:
        if self.dsn is not None:
            return
        try:
            dsn, conn = self._open()
            try:
                check_safe(conn, self.settings.allow_any_database)
                if not self._built:
                    self._build(conn, dsn)
                self.fixture_role = fixture_role.prepare(conn)  # after the tables exist
                fixture_role.attach(conn, self.fixture_role)
                self.baseline = capture(conn)
            finally:
                conn.close()  # what the schema set on its session (search_path...) stays there
        except BaseException:
            self.stop()
            raise
        self.dsn = dsn

    def _open(self) -> tuple[str, SqlfixConnection]:
        """The test database and its connection: embedded, the DSN, or a worker's clone."""
        if not self.settings.dsn:
            return self._open_embedded()
        if self.worker is None:
            return self.settings.dsn, connect(self.settings.dsn)
        self._clone = clone_for_worker(self.settings.dsn, self.worker, self._build_template)
        self._built = True
        return self._clone, connect(self._clone)

    def _open_embedded(self) -> tuple[str, SqlfixConnection]:
        """The embedded server, from the cluster saved for this schema when there is one."""
        key = self._schema_key()
        server = self.server = EmbeddedServer.start(
            options=from_settings(self.settings), schema_key=key, rebuild=self.rebuild)
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
        """What the schema is built from: files and command (the server adds its version)."""
        settings = self.settings
        if not settings.schema and not settings.setup_command:
            return None
        try:
            files = schema_hash(settings.schema)
        except OSError:
            return None  # apply_schema says which file is missing
        return f"schema-v1;{files};{settings.setup_command!r}"

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
        apply_schema(conn, self.settings.schema)
        if self.settings.setup_command:
            run_setup_command(self.settings.setup_command, dsn, self.settings.root)

    def connection(self) -> SqlfixConnection:
        """The session's connection; a new one (sequences reset) if the old one is gone."""
        self.revive()
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
            fixture_role.attach(self._conn, self.fixture_role)
            reset = self._sequence_reset(self.settings.reset_sequences)
            if reset:  # the test that lost the connection could not reset them
                self._conn.execute(b"ROLLBACK; " + reset)
        return self._conn

    def connection_if_open(self) -> SqlfixConnection | None:
        """The session's connection if it is open, without reconnecting."""
        return self._conn if self._conn is not None and not self._conn.closed else None

    def _connect(self) -> SqlfixConnection:
        """A new test connection; waits out a server recovering from a crashed backend."""
        assert self.dsn is not None
        s = self.settings
        deadline = time.monotonic() + _RECONNECT_SECONDS
        while True:
            try:
                return connect(self.dsn, s.lock_timeout, s.statement_timeout)
            except DatabaseError:
                if time.monotonic() > deadline or self._server_gone():
                    raise
                time.sleep(0.1)

    def _server_gone(self) -> bool:
        return self.server is not None and self.server.exited() is not None

    def _sequence_reset(self, wanted: bool) -> bytes:
        return self.baseline.reset_query if wanted and self.baseline is not None else b""

    def boundary(self, reset_sequences: bool | None = None) -> Boundary:
        """A new boundary on the session connection; sequences reset as configured."""
        wanted = self.settings.reset_sequences if reset_sequences is None else reset_sequences
        return Boundary(self.connection(), self._sequence_reset(wanted),
                        reset_session=self.settings.reset_session,
                        load_timeouts=self._load_timeouts)

    def begin(self, reset_sequences: bool | None = None, layered: bool = False) -> Boundary:
        """A boundary, begun; if the connection or the server died since, recover first.

        `layered` (with `layers` on): on the session's layer stack, see `layers`.
        """
        make = self.layered_boundary if layered and self.layers is not None else self.boundary
        if make is self.boundary:
            self.end_layers()
        boundary = make(reset_sequences)
        try:
            boundary.begin()
        except psycopg.OperationalError:
            if not (boundary.conn.closed or boundary.conn.broken):
                raise
            self.restore()
            boundary = make(reset_sequences)
            boundary.begin()
        return boundary

    def layered_boundary(self, reset_sequences: bool | None = None) -> LayeredBoundary:
        """A boundary on the layer stack (`layers = true`)."""
        assert self.layers is not None
        wanted = self.settings.reset_sequences if reset_sequences is None else reset_sequences
        conn = self.connection()
        self.layers.positions = (
            self.baseline.positions if wanted and self.baseline is not None else b"")
        return LayeredBoundary(self.layers, conn, self._sequence_reset(wanted),
                               reset_session=self.settings.reset_session,
                               load_timeouts=self._load_timeouts)

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

    def restore(self, tables: Collection[tuple[str, str]] | None = None) -> str:
        """Back to the baseline on a new connection, as the session's own user; says how.

        Only `tables` (closed under foreign keys) when given, else every table. The old
        connection is closed, with whatever a test left on it (SET ROLE, search_path,
        temporary tables, locks). If the embedded server died, a new one is started
        instead: a fresh copy of the cluster is the baseline.
        Raises DatabaseError, ServerError or psycopg.Error when that fails.
        """
        self._drop_connection()
        died = self.revive()
        if died is not None:
            return died
        assert self.baseline is not None
        conn = self.connection()
        return restore(conn, self.baseline, tables)

    def revive(self) -> str | None:
        """Start the session, or start it again if its embedded server died; says why."""
        died = self.server.exited() if self.server is not None else None
        if died is not None:
            self.stop()
        self.start()
        if died is None:
            return None
        return f"{died}\nsqlfix started a new embedded PostgreSQL and applied the schema again"

    def _drop_connection(self) -> None:
        if self.layers is not None:
            self.layers.forget()  # its transaction dies with the connection
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

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
        self.dsn = None
