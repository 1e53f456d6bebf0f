"""Code on its own connections: `sqlfix_dsn`, and the hint when a second connection is a likely
cause of a failure in the rollback mode.

A connection the test opens besides sqlfix's sees none of the fixtures (they are
not committed) and its writes are not rolled back. When a rollback-mode test
fails, sqlfix counts the connections to the test database opened during this
test (since its `sqlfix` fixture was set up) that are not sqlfix's own: those
still open (`pg_stat_activity`, started after the test's mark, not named
"sqlfix", not the test's own backend) and those opened and closed
(`pg_stat_database.sessions` since the mark, less the connections sqlfix itself
opened meanwhile and the ones still open). If there are any, the failure report
says so and points at the committed mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sqlfix.database.boundary import Boundary
    from sqlfix.database.session import DatabaseSession

_APP = "sqlfix"  # sqlfix.database.backends.APP_NAME, without importing the database side here
# (matched up to the first space: a test's transaction marks itself "sqlfix <pid>.<n>" with
# SET LOCAL application_name, see sqlfix.database.boundary.Boundary.begin)


@dataclass(frozen=True)
class Mark:
    """Where the test began: the server's session count and clock, sqlfix's own count."""

    sessions: int
    at: str  # the server's clock_timestamp(), as text
    opened: int  # DatabaseSession.opened


MARK_KEY = pytest.StashKey[Mark]()
_OTHERS = b"""
SELECT count(*) FILTER (WHERE a.backend_start >= %(since)s::timestamptz
                          AND split_part(coalesce(a.application_name, ''), ' ', 1) <> %(app)s),
       (SELECT sessions FROM pg_stat_database WHERE datname = current_database())
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.backend_type = 'client backend'
  AND a.pid NOT IN (%(me)s, pg_backend_pid())
"""
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
    "connections: {advice}"
)
_URL = "sqlfix_dsn.replace('postgresql://', 'postgresql+psycopg://', 1)"
ADVICE = {
    "sqlfix_sqla_engine": "build the engine from the sqlfix_dsn fixture, e.g. "
    f"create_engine({_URL}), and engine.dispose() before the test ends.",
    "sqlfix_sqla_session": "make sessions of an engine built from the sqlfix_dsn fixture, e.g. "
    f"Session(create_engine({_URL})); close them and engine.dispose() before the test ends.",
    "sqlfix_async_engine": "build an AsyncEngine from the sqlfix_dsn fixture, e.g. "
    f"create_async_engine({_URL}) (psycopg's async driver), in an async fixture or the test, "
    "and await engine.dispose() before the test ends.",
    "sqlfix_async_session": "make AsyncSessions of an AsyncEngine built from the sqlfix_dsn "
    f"fixture, e.g. async_sessionmaker(create_async_engine({_URL}))(), in an async fixture or "
    "the test; await session.close() and await engine.dispose() before the test ends.",
}


def refuse_in_committed_mode(
    sqlfix: object, request: pytest.FixtureRequest, engine: str, session: str
) -> None:
    """In the committed mode, fail naming the fixture the test asked for: the session
    fixture when it requested that (it needs the engine), else the engine."""
    if getattr(sqlfix, "committed", False):
        name = session if session in request.fixturenames else engine
        pytest.fail("sqlfix: " + COMMITTED_ENGINE.format(name=name, advice=ADVICE[name]),
                    pytrace=False)


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
    with psycopg.connect(session.dsn, autocommit=True, connect_timeout=5,
                         application_name=_APP) as conn:
        return conn.execute(query, params).fetchone()


def note_mark(item: pytest.Item, session: DatabaseSession, boundary: Boundary) -> None:
    """Keep where a rollback-mode test began, for the hint: no round trip of its own.

    The boundary read it along with its begin (or, on a continued layer stack, with
    the load): call after each. sqlfix's own count is taken now, after any reconnect.
    """
    if boundary.mark is not None:
        sessions, at = boundary.mark
        item.stash[MARK_KEY] = Mark(sessions, at, session.opened)


def second_connection_hint(item: pytest.Item, session: DatabaseSession, backend: int) -> str:
    """The hint for a failed rollback-mode test, or "" when no other connection was seen.

    `backend` is the pid of sqlfix's connection for the test. Counts only connections
    opened since `mark()` for this test, less sqlfix's own.
    """
    import psycopg

    start = item.stash.get(MARK_KEY, None)
    if start is None:
        return ""
    try:
        still_open, sessions = _query(
            session, _OTHERS, {"me": backend, "since": start.at, "app": _APP})
    except psycopg.Error:
        return ""
    opened = 0
    if sessions is not None:  # less sqlfix's test connections and this query's own
        opened = int(sessions) - start.sessions - (session.opened - start.opened) - 1
    closed = max(0, opened - int(still_open))
    parts = []
    if still_open:
        parts.append(f"{still_open} other connection(s) to the test database opened during this "
                     "test are still open")
    if closed:
        parts.append(f"{closed} other connection(s) to the test database were opened and closed "
                     "during this test")
    if not parts:
        return ""
    return HINT.format(what="sqlfix: " + "; ".join(parts))
