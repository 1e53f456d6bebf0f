"""Words for what goes wrong around a test: timeouts, lost connections, a dead server.

Imported by the plugin only once a test fails or a load goes wrong; nothing here
imports psycopg, so the names are matched by SQLSTATE and class name.
"""

from __future__ import annotations

from sqlfix.config import Settings

LOCK_TIMEOUT = "55P03"  # lock_not_available: lock_timeout expired
QUERY_CANCELED = "57014"  # statement_timeout expired (or a cancel)
_LOST_STATES = ("57P01", "57P02", "57P03")  # admin/crash shutdown, cannot connect now


def _ms(value: int) -> str:
    return "no limit" if value == 0 else f"{value} ms"


def timeout_hint(sqlstate: str | None, settings: Settings, load: bool,
                 message: str = "") -> str | None:
    """What a lock or statement timeout means and which key raises it; None for others.

    `message` is the server's (or the error's) text: the same SQLSTATEs also mean a
    NOWAIT lock that was not free and a cancel request, which no timeout caused.
    """
    prefix = "load_" if load else ""
    what = "the fixture load" if load else "the test"
    # sqlfix set the load values itself (SET LOCAL); a test may SET its own
    own = "" if load else ", unless the test or the code under test SET its own"
    if sqlstate == LOCK_TIMEOUT:
        # NOWAIT: it did not wait at all. Matched on NOWAIT's own words, so that a server
        # with translated messages (lc_messages) falls back to the timeout advice
        if "could not obtain lock" in message:
            return (f"{what} asked for a lock with NOWAIT and another connection held it "
                    "(no timeout was involved): see pg_locks / pg_stat_activity for the "
                    "holder, often a connection the test or a fixture opened and did not "
                    "close.")
        key = f"{prefix}lock_timeout"
        value = getattr(settings, key)
        return (f"{what} waited longer than {key} ({_ms(value)}, {settings.source(key)}{own}) "
                "for a lock: another connection holds a lock on what it touches (a "
                "connection the test or a fixture opened and did not close, or another "
                "process: see pg_locks / pg_stat_activity). Close that connection, or raise "
                f"{key} in [tool.sqlfix] (or --sqlfix-{key.replace('_', '-')}).")
    if sqlstate == QUERY_CANCELED:
        if "user request" in message:  # pg_cancel_backend(), conn.cancel(), a Ctrl-C
            return (f"a statement of {what} was cancelled by a cancel request "
                    "(pg_cancel_backend(), psycopg's cancel(), or an interrupt), not by a "
                    "timeout: look for the code that cancels it.")
        key = f"{prefix}statement_timeout"
        value = getattr(settings, key)
        return (f"a statement of {what} ran longer than {key} ({_ms(value)}, "
                f"{settings.source(key)}{own}) and was cancelled (or it waited on something "
                "that never came). Make it faster, or raise "
                f"{key} in [tool.sqlfix] (or --sqlfix-{key.replace('_', '-')}).")
    return None


def is_database_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("psycopg")


def lost_connection(exc: BaseException) -> bool:
    """A psycopg error that means the connection or the server is gone."""
    if not is_database_error(exc):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate in _LOST_STATES or type(exc).__name__ == "OperationalError"


def explain(exc: BaseException, settings: Settings, closed: bool = False) -> str | None:
    """A report section for a database error raised in a test's body, or None.

    `closed`: the test's connection was closed by the client (`close()` in the test or a
    fixture), not lost to the server.
    """
    if not is_database_error(exc):
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    hint = timeout_hint(sqlstate, settings, load=False, message=str(exc))
    if hint is not None:
        return hint
    if closed and lost_connection(exc):
        return ("the test's database connection was closed by the client: the test, a "
                "fixture or the code under test called close() on it (the server did not "
                "end it). Do not close the connection sqlfix gives the test; sqlfix opens a "
                "new one before the next test (see the error at tear-down).")
    if lost_connection(exc):
        return ("the test's database connection was lost (the server ended its backend, "
                "or the server itself went away). sqlfix reconnects before the next test "
                "(and starts a new embedded PostgreSQL if it died); see the error at "
                "tear-down for what sqlfix found.")
    return None
