"""Code on its own connections: `sqlfix_dsn`, and the hint when a second connection is a likely
cause of a failure in the rollback mode.

A connection the test uses besides sqlfix's sees none of the fixtures (they are
not committed) and its writes are not rolled back. When a rollback-mode test
fails (in set-up, call or tear-down), sqlfix looks at the other client
connections to the test database: those still open (`pg_stat_activity`, opened
during this run, not the backend sqlfix holds for the test, whatever its
`application_name`) that were opened or ran a statement since the test began,
and those opened and closed during the test (`pg_stat_database.sessions` since
the test's mark, less the connections sqlfix itself opened meanwhile and the
ones still open). If there are any, the failure report says so and points at
the committed mode. Nothing of this runs for a test that passes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from sqlfix import docs_url

if TYPE_CHECKING:
    from sqlfix.database.boundary import Boundary
    from sqlfix.database.session import DatabaseSession

_APP = "sqlfix"  # sqlfix.database.backends.APP_NAME, without importing the database side here


@dataclass(frozen=True)
class Mark:
    """Where the test began: the server's session count and clock, sqlfix's own count."""

    sessions: int
    at: str  # the server's clock_timestamp(), as text
    opened: int  # DatabaseSession.opened


MARK_KEY = pytest.StashKey[Mark]()
# Other client connections of this run that began, or ran a statement, since the test's
# mark (and whether they began since); the session count is read after them.
_OTHERS = b"""
SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
       a.backend_start >= %(since)s::timestamptz
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.backend_type = 'client backend'
  AND a.pid <> ALL (%(mine)s) AND a.pid <> pg_backend_pid()
  AND a.backend_start >= %(run)s
  AND (a.backend_start >= %(since)s::timestamptz
       OR greatest(a.query_start, a.state_change) >= %(since)s::timestamptz)
ORDER BY a.backend_start, a.pid
"""
_SESSIONS = b"SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
_CLOSING_SECONDS = 0.25  # a backend whose client just closed it is still listed a moment
_SHOWN = 3  # connections named in the hint; the rest are counted
# The server's words when max_connections is reached (reserved slots included).
_FULL = ("too many clients already", "remaining connection slots are reserved")
NO_SLOT = ("the test database has no free connection slot left for sqlfix to look at the "
           "other connections: the test or the code under test holds many of them")
HINT = (
    "{what}. In the rollback mode a second connection sees none of the fixtures (they are "
    "not committed) and what it writes is not rolled back: this is the likely cause if the "
    "code under test used its own connection (a pool, an engine built from DATABASE_URL, a "
    "thread or a subprocess). Give it the test's connection (sqlfix_conn, sqlfix_aconn, "
    "sqlfix_sqla_engine, sqlfix_async_engine), or use the committed mode: "
    "@uses(..., commit=True) with the sqlfix_dsn fixture ("
    + docs_url("own-connections") + ")."
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


def note_mark(item: pytest.Item, session: DatabaseSession, boundary: Boundary) -> None:
    """Keep where a rollback-mode test began, for the hint: no round trip of its own.

    The boundary read it along with its begin (or, on a continued layer stack, with
    the load): call after each. sqlfix's own count is taken now, after any reconnect.
    """
    if boundary.mark is not None:
        sessions, at = boundary.mark
        item.stash[MARK_KEY] = Mark(sessions, at, session.opened)


@dataclass(frozen=True)
class _Other:
    """A client connection to the test database that sqlfix does not hold."""

    pid: int
    application_name: str
    state: str
    opened_in_test: bool  # else opened earlier in the run, and ran a statement during the test

    def describe(self) -> str:
        return f"pid {self.pid} {self.application_name or '(no application_name)'!r}"


def _others(conn: Any, params: dict[str, Any]) -> list[_Other]:
    """The other connections, less those on their way out.

    An idle one is counted only if it is still there after a short wait: a
    `with psycopg.connect(...)` block the failing assertion just left (or
    sqlfix's own restore connection) is still listed while its backend exits.
    """
    found = [_Other(*row) for row in conn.execute(_OTHERS, params).fetchall()]
    deadline = time.monotonic() + _CLOSING_SECONDS
    while any(o.state == "idle" for o in found) and time.monotonic() < deadline:
        time.sleep(0.02)
        still = {row[0] for row in conn.execute(_OTHERS, params).fetchall()}
        found = [o for o in found if o.pid in still]
    return found


def _listed(others: list[_Other]) -> str:
    names = ", ".join(o.describe() for o in others[:_SHOWN])
    more = len(others) - _SHOWN
    return names + (f" and {more} more" if more > 0 else "")


def second_connection_hint(item: pytest.Item, session: DatabaseSession) -> str:
    """The hint for a failed rollback-mode test, or "" when no other connection was seen.

    Run only for a failed report; one short-lived connection (a few ms, plus at most
    `_CLOSING_SECONDS` when a connection is closing). sqlfix's own connection is told
    by its backend pid, not its name (a test may SET application_name, or name its
    own connections "sqlfix").
    """
    import psycopg

    from sqlfix.database.schema import with_connect_timeout

    start = item.stash.get(MARK_KEY, None)
    if start is None or session.dsn is None or session.started_at is None:
        return ""
    held = session.connection_if_open()
    mine = [held.info.backend_pid] if held is not None else []
    params = {"mine": mine, "since": start.at, "run": session.started_at}
    try:
        with psycopg.connect(with_connect_timeout(session.dsn, 5), autocommit=True,
                             application_name=_APP) as conn:
            # The look's own connection is sqlfix's: a second look for the same test
            # (a failed call, then a failed tear-down) must not count it as the test's.
            session.opened += 1
            others = _others(conn, params)
            row = conn.execute(_SESSIONS).fetchone()
    except psycopg.Error as exc:
        if any(full in str(exc) for full in _FULL):  # the test's connections took every slot
            return HINT.format(what=f"sqlfix: {NO_SLOT} ({str(exc).strip()})")
        return ""
    new = [o for o in others if o.opened_in_test]
    closed = 0
    if row is not None and row[0] is not None:  # less sqlfix's own (this look's too), the open
        closed = max(0, int(row[0]) - start.sessions - (session.opened - start.opened)
                     - len(new))
    parts = _parts(new, [o for o in others if not o.opened_in_test], closed)
    return HINT.format(what="sqlfix: " + "; ".join(parts)) if parts else ""


def _parts(new: list[_Other], earlier: list[_Other], closed: int) -> list[str]:
    parts = []
    if new:
        parts.append(f"{len(new)} other connection(s) to the test database opened during this "
                     f"test are still open ({_listed(new)})")
    if earlier:
        parts.append(f"{len(earlier)} other connection(s) to the test database opened earlier "
                     "(by an earlier test, a module- or session-scoped fixture, a pool, a "
                     "fixture set up before sqlfix's) are open and ran statements during this "
                     f"test ({_listed(earlier)})")
    if closed:
        parts.append(f"{closed} other connection(s) to the test database were opened and closed "
                     "during this test")
    return parts


_HINTED_KEY = pytest.StashKey[bool]()
# The last committed test of the run (set at its tear-down): its threads or processes
# can go on writing after it ended, where sqlfix no longer looks.
LAST_COMMITTED_KEY = pytest.StashKey[str]()
LATE_WRITER = (
    " A committed test ran earlier in this run (the last one: {nodeid}): a thread or "
    "process it started and did not wait for can still write after that test ended, "
    "where sqlfix no longer looks, and its rows land in later tests. Join threads and "
    "wait for processes before a committed test ends."
)


def add_hint(item: pytest.Item, report: pytest.TestReport, session: DatabaseSession | None) -> None:
    """For a failed report of a rollback-mode test (set-up, call or tear-down): the hint
    section, once per test, when other connections were seen."""
    if session is None or item.stash.get(_HINTED_KEY, False):
        return
    hint = second_connection_hint(item, session)
    last = item.config.stash.get(LAST_COMMITTED_KEY, None)
    if hint and last is not None and last != item.nodeid:
        hint += LATE_WRITER.format(nodeid=last)
    if hint:
        item.stash[_HINTED_KEY] = True
        report.sections.append(("sqlfix: other connections", hint))
