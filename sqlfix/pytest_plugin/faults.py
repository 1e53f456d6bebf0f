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


def timeout_hint(sqlstate: str | None, settings: Settings, load: bool) -> str | None:
    """What a lock or statement timeout means and which key raises it; None for others."""
    prefix = "load_" if load else ""
    what = "the fixture load" if load else "the test"
    if sqlstate == LOCK_TIMEOUT:
        key = f"{prefix}lock_timeout"
        value = getattr(settings, key)
        return (f"{what} waited longer than {key} ({_ms(value)}, {settings.source(key)}) for a "
                "lock: another connection holds a lock on what it touches (a connection the "
                "test or a fixture opened and did not close, or another process: see "
                "pg_locks / pg_stat_activity). Close that connection, or raise "
                f"{key} in [tool.sqlfix] (or --sqlfix-{key.replace('_', '-')}).")
    if sqlstate == QUERY_CANCELED:
        key = f"{prefix}statement_timeout"
        value = getattr(settings, key)
        return (f"a statement of {what} ran longer than {key} ({_ms(value)}, "
                f"{settings.source(key)}) and was cancelled (or it waited on something "
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


def explain(exc: BaseException, settings: Settings) -> str | None:
    """A report section for a database error raised in a test's body, or None."""
    if not is_database_error(exc):
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    hint = timeout_hint(sqlstate, settings, load=False)
    if hint is not None:
        return hint
    if lost_connection(exc):
        return ("the test's database connection was lost (the server ended its backend, "
                "or the server itself went away). sqlfix reconnects before the next test "
                "(and starts a new embedded PostgreSQL if it died); see the error at "
                "tear-down for what sqlfix found.")
    return None
