"""One test session's database: the server (embedded or DSN), its connection, the fixtures.

Started lazily, on the first test that needs it, so a run with no sqlfix test
starts nothing.
"""

from __future__ import annotations

import time

from .boundary import SqlfixConnection
from .config import Settings
from .database import apply_schema, check_safe, connect
from .discovery import FixtureDir
from .library import FixtureLibrary
from .server import EmbeddedServer


def make_library(settings: Settings) -> FixtureLibrary:
    directory = FixtureDir(settings.fixtures_dir, exclude=frozenset(settings.schema))
    return FixtureLibrary(directory, settings.seed, settings.now, settings.faker_locale)


class DatabaseSession:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.library = make_library(settings)
        self.server: EmbeddedServer | None = None
        self.dsn: str | None = None
        self._conn: SqlfixConnection | None = None
        self.startup_seconds = 0.0

    def start(self) -> None:
        if self.dsn is not None:
            return
        began = time.perf_counter()
        if self.settings.dsn:
            dsn = self.settings.dsn
        else:
            self.server = EmbeddedServer.start()
            dsn = self.server.dsn
        conn = connect(dsn)
        try:
            check_safe(conn, self.settings.allow_any_database)
            apply_schema(conn, self.settings.schema)
        except BaseException:
            conn.close()
            self.stop()
            raise
        self.dsn, self._conn = dsn, conn
        self.startup_seconds = time.perf_counter() - began

    def connection(self) -> SqlfixConnection:
        """The session's connection; a new one if a test closed it."""
        self.start()
        assert self.dsn is not None
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn)
        return self._conn

    def stop(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.dsn = None

    @property
    def where(self) -> str:
        if self.settings.dsn:
            return f"DSN from {self.settings.source('dsn')}"
        return "embedded PostgreSQL (started on first use)"
