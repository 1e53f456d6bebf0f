"""One test session's database: the server (embedded or DSN), its connection, the fixtures.

Started lazily, on the first test that needs it, so a run with no sqlfix test
starts nothing. Tests run on a connection opened after the schema and
`setup_command`, so nothing they set on their own connections reaches a test;
after an escape or a lost connection the session opens a new one (and starts a
new embedded server if the old one died).
"""

from __future__ import annotations

import time
from collections.abc import Collection

import psycopg
from psycopg import sql

from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.library import FixtureLibrary
from sqlfix.config import Settings
from sqlfix.database import fixture_role
from sqlfix.database.baseline import Baseline, capture, restore
from sqlfix.database.boundary import Boundary, SqlfixConnection
from sqlfix.database.schema import apply_schema, check_safe, connect
from sqlfix.database.server import EmbeddedServer
from sqlfix.database.server_options import from_settings
from sqlfix.database.setup_command import run_setup_command
from sqlfix.errors import DatabaseError

_RECONNECT_SECONDS = 15.0  # after a crashed backend the server recovers for a moment


def make_library(settings: Settings) -> FixtureLibrary:
    directory = FixtureDir(settings.fixtures_dir, exclude=frozenset(settings.schema))
    directory.check_schema_files()  # a schema file linked in from outside is refused
    return FixtureLibrary(directory, settings.seed, settings.now, settings.faker_locale)


def load_timeouts(settings: Settings) -> bytes:
    """SET LOCAL of the load timeouts, or b"" when they are the tests' own."""
    pairs = [("lock_timeout", settings.load_lock_timeout, settings.lock_timeout),
             ("statement_timeout", settings.load_statement_timeout, settings.statement_timeout)]
    if all(load == test for _, load, test in pairs):
        return b""
    return b"; ".join(sql.SQL("SET LOCAL {} = {}").format(
        sql.Identifier(name), sql.Literal(str(load))).as_bytes(None) for name, load, _ in pairs)


class DatabaseSession:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.library = make_library(settings)
        self.server: EmbeddedServer | None = None
        self.dsn: str | None = None
        self._conn: SqlfixConnection | None = None
        self.baseline: Baseline | None = None
        self.fixture_role: fixture_role.FixtureRole | None = None
        self._load_timeouts = load_timeouts(settings)

    def start(self) -> None:
        if self.dsn is not None:
            return
        if self.settings.dsn:
            dsn = self.settings.dsn
        else:
            self.server = EmbeddedServer.start(options=from_settings(self.settings))
            dsn = self.server.dsn
        conn = connect(dsn)
        try:
            self._prepare(conn, dsn)
        except BaseException:
            conn.close()
            self.stop()
            raise
        conn.close()  # what the schema set on its session (search_path...) stays there
        self.dsn = dsn

    def _prepare(self, conn: SqlfixConnection, dsn: str) -> None:
        """Schema, then migrations, then the baseline: once per session, before any test."""
        check_safe(conn, self.settings.allow_any_database)
        apply_schema(conn, self.settings.schema)
        if self.settings.setup_command:
            run_setup_command(self.settings.setup_command, dsn, self.settings.root)
        self.fixture_role = fixture_role.prepare(conn)  # after the tables exist
        fixture_role.attach(conn, self.fixture_role)
        self.baseline = capture(conn)

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
        advance = self.baseline.advance_query if self.baseline is not None else b""
        return Boundary(self.connection(), self._sequence_reset(wanted), advance,
                        reset_session=self.settings.reset_session,
                        load_timeouts=self._load_timeouts)

    def begin(self, reset_sequences: bool | None = None) -> Boundary:
        """A boundary, begun; if the connection or the server died since, recover first."""
        boundary = self.boundary(reset_sequences)
        try:
            boundary.begin()
        except psycopg.OperationalError:
            if not (boundary.conn.closed or boundary.conn.broken):
                raise
            self.restore()
            boundary = self.boundary(reset_sequences)
            boundary.begin()
        return boundary

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
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def stop(self) -> None:
        self._drop_connection()
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.dsn = None
