"""Code on its own connections: `sqlfix_dsn`, and the hint when a second connection is a likely
cause of a failure in the rollback mode.

A connection the test opens besides sqlfix's sees none of the fixtures (they are
not committed) and its writes are not rolled back. When a rollback-mode test
fails, sqlfix looks at the server: other client connections to the test
database that are open and were opened after the test's transaction began
(`pg_stat_activity`), and connections opened and closed since the previous check
(`pg_stat_database.sessions`, published by each backend when it exits). If there
are any, the failure report says so and points at the committed mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sqlfix.database.session import DatabaseSession

SESSIONS_KEY = pytest.StashKey[int]()  # pg_stat_database.sessions at the previous check
_OTHERS = b"""
SELECT count(*) FILTER (WHERE a.backend_start >= me.xact_start),
       (SELECT sessions FROM pg_stat_database WHERE datname = current_database())
FROM pg_stat_activity a
LEFT JOIN (SELECT xact_start FROM pg_stat_activity WHERE pid = %(me)s) me ON true
WHERE a.datname = current_database() AND a.backend_type = 'client backend'
  AND a.pid NOT IN (%(me)s, pg_backend_pid())
"""
_SESSIONS = b"SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
HINT = (
    "{what}. In the rollback mode a second connection sees none of the fixtures (they are "
    "not committed) and what it writes is not rolled back: this is the likely cause if the "
    "code under test used its own connection (a pool, an engine built from DATABASE_URL, a "
    "thread or a subprocess). Give it the test's connection (sqlfix_conn, sqlfix_aconn, "
    "sqlfix_sqla_engine, sqlfix_async_engine), or use the committed mode: "
    "@uses(..., commit=True) with the sqlfix_dsn fixture (docs/own-connections.md)."
)

COMMITTED_ENGINE = (
    "{name} is built on sqlfix's own connection for the rollback mode; this test is in the "
    "committed mode (@uses(..., commit=True)), where the code under test makes its own "
    "connections: build the engine from the sqlfix_dsn fixture, e.g. "
    "create_engine(sqlfix_dsn.replace('postgresql://', 'postgresql+psycopg://', 1)), and "
    "dispose of it before the test ends."
)


def refuse_in_committed_mode(sqlfix: object, name: str) -> None:
    if getattr(sqlfix, "committed", False):
        pytest.fail("sqlfix: " + COMMITTED_ENGINE.format(name=name), pytrace=False)


@pytest.fixture(scope="session")
def sqlfix_dsn(_sqlfix_session: DatabaseSession) -> str:
    """The test database as a `postgresql://` URL, for the application's pools and DATABASE_URL.

    In the rollback mode connections made from it see none of the test's fixtures;
    use it with `@uses(..., commit=True)`.
    """
    from sqlfix.database.committed import as_url

    assert _sqlfix_session.dsn is not None
    return as_url(_sqlfix_session.dsn)


def _query(session: DatabaseSession, query: bytes, params: dict[str, Any] | None = None) -> Any:
    """One row from a short-lived connection of its own (the test's may be in any state)."""
    import psycopg

    assert session.dsn is not None
    with psycopg.connect(session.dsn, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(query, params).fetchone()


def checkpoint(config: pytest.Config, session: DatabaseSession) -> None:
    """Note how many sessions the test database has had; on the session's idle connection."""
    import psycopg

    from sqlfix.database.boundary import scalar

    conn = session.connection()
    try:
        sessions = scalar(conn, _SESSIONS)
        conn.real_rollback()  # the next read sees fresh statistics
    except psycopg.Error:
        return
    if sessions is not None:
        config.stash[SESSIONS_KEY] = int(sessions)


def second_connection_hint(config: pytest.Config, session: DatabaseSession, backend: int) -> str:
    """The hint for a failed rollback-mode test, or "" when no other connection was seen.

    `backend` is the pid of sqlfix's connection for the test.
    """
    import psycopg

    try:
        opened, sessions = _query(session, _OTHERS, {"me": backend})
    except psycopg.Error:
        return ""
    before = config.stash.get(SESSIONS_KEY, None)
    closed = 0
    if before is not None and sessions is not None:
        closed = max(0, int(sessions) - before - int(opened))  # minus the open ones, counted
    if sessions is not None:
        config.stash[SESSIONS_KEY] = int(sessions) + 1  # and the next check's own connection
    parts = []
    if opened:
        parts.append(f"{opened} other connection(s) to the test database opened during this "
                     "test are still open")
    if closed:
        parts.append(f"{closed} other connection(s) to the test database were opened and closed "
                     "since sqlfix last looked (this test, or an earlier one that passed)")
    if not parts:
        return ""
    return HINT.format(what="sqlfix: " + "; ".join(parts))
