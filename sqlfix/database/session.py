"""One test session's database: the server (embedded or DSN), its connection, the fixtures.

Started lazily, on the first test that needs it, so a run with no sqlfix test
starts nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psycopg

from sqlfix.compiler.cache import DiskCache
from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.library import FixtureLibrary
from sqlfix.config import Settings
from sqlfix.database import fixture_role
from sqlfix.database.baseline import Baseline, capture, restore
from sqlfix.database.boundary import Boundary, SqlfixConnection
from sqlfix.database.schema import apply_schema, check_safe, connect, schema_hash
from sqlfix.database.server import EmbeddedServer
from sqlfix.database.setup_command import run_setup_command
from sqlfix.database.workers import clone_for_worker, drop_worker_database
from sqlfix.errors import DatabaseError


def make_library(settings: Settings, fixture_cache: Path | None = None) -> FixtureLibrary:
    """The session's fixtures; compiled ones kept in `fixture_cache` too, when given."""
    directory = FixtureDir(settings.fixtures_dir, exclude=frozenset(settings.schema))
    directory.check_schema_files()  # a schema file linked in from outside is refused
    disk = DiskCache(fixture_cache) if fixture_cache is not None else None
    return FixtureLibrary(directory, settings.seed, settings.now, settings.faker_locale, disk)


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
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self.stop()
            raise
        self.dsn, self._conn = dsn, conn

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
        server = self.server = EmbeddedServer.start(schema_key=key, rebuild=self.rebuild)
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
        """The session's connection; a new one if a test closed it."""
        self.start()
        assert self.dsn is not None
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn)
            fixture_role.attach(self._conn, self.fixture_role)
            reset = self._sequence_reset(self.settings.reset_sequences)
            if reset:  # the test that closed the connection could not reset them
                self._conn.execute(b"ROLLBACK; " + reset)
        return self._conn

    def _sequence_reset(self, wanted: bool) -> bytes:
        return self.baseline.reset_query if wanted and self.baseline is not None else b""

    def boundary(self, reset_sequences: bool | None = None) -> Boundary:
        """A new boundary on the session connection; sequences reset as configured."""
        wanted = self.settings.reset_sequences if reset_sequences is None else reset_sequences
        return Boundary(self.connection(), self._sequence_reset(wanted))

    def restore(self) -> str:
        """Back to the baseline after a test's changes escaped; says what was done."""
        conn = self.connection()
        conn.real_rollback()
        assert self.baseline is not None
        return restore(conn, self.baseline)

    def stop(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None
        if self._clone is not None:
            with contextlib.suppress(psycopg.Error, DatabaseError):
                drop_worker_database(self._clone)
            self._clone = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.dsn = None
