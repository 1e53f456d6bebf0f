"""The isolation verifier's per-test check (--sqlfix-verify); imported by the first check.

After each test: connections the run opened that hold an ACCESS EXCLUSIVE lock on a
user table (they would block the verifier's reads, and every later test touching
that table) are ended and named; then the rows, sequences, schema objects and
database and role settings are compared with the reference taken before the first
test. A difference is restored (`DatabaseSession.restore`) and named.
"""

from __future__ import annotations

import psycopg
import pytest

from sqlfix.database.session import DatabaseSession, damage_note, untimed
from sqlfix.database.verify import Fingerprint, take
from sqlfix.errors import SqlfixError
from sqlfix.pytest_plugin.stop import stop_run

PREFIX = "sqlfix --sqlfix-verify: "
_SCHEMA_LINES = ("(created and committed by the test)", "(dropped and committed by the test)")


def fingerprint(session: DatabaseSession) -> Fingerprint:
    """The reference state (before the first test, and again after a restore)."""
    try:
        return _take(session)
    except psycopg.Error:  # the connection or the server died since the test (any SQLSTATE)
        conn = session.connection_if_open()
        if conn is not None and not conn.broken:
            raise
        session.restore()
        return _take(session)


def _take(session: DatabaseSession) -> Fingerprint:
    conn = session.connection()
    with untimed(conn):  # the tests' statement_timeout is for the tests' statements
        return take(conn, session.settings.reset_sequences)


def check(session: DatabaseSession, reference: Fingerprint, item: pytest.Item
          ) -> tuple[str | None, Fingerprint]:
    """After `item`: a failure message (None if all is as before) and the reference to keep.

    Never raises for what a test can do; stops the run (`stop_run`) only when the
    database cannot be put back.
    """
    try:
        conn = session.connection()
        with untimed(conn):
            ended = session.end_lock_holders(conn, "read the tables")
            now = take(conn, session.settings.reset_sequences)
            changes = reference.differences(now)
            schema, settings = session.drift(conn)
        if schema:  # the rebuild below names them
            changes = [line for line in changes if not line.endswith(_SCHEMA_LINES)]
            changes.append("the schema's objects changed: see below")
        if settings:
            changes.append("database or role settings (ALTER DATABASE/ROLE ... SET, "
                           "ALLOW_CONNECTIONS, CONNECTION LIMIT) changed: see below")
    except psycopg.errors.LockNotAvailable as exc:
        return (PREFIX + f"could not read the tables after this test: {exc}"
                f"{_holders(session)}", reference)
    except (SqlfixError, psycopg.Error) as exc:
        return PREFIX + f"could not check this test: {exc}", reference
    if not changes:
        if not ended:
            return None, reference
        # The first line stands alone: pytest's short summary shows only that one.
        them = "it" if len(ended) == 1 else "them"
        tpc = sum(line.startswith("sqlfix rolled back a prepared") for line in ended)
        left = ", ".join(part for part in (
            _count(len(ended) - tpc, "connection") + " open" if len(ended) > tpc else "",
            _count(tpc, "prepared transaction") if tpc else "") if part)
        held = "locks on" if tpc else "locks blocking reads of"  # a prepared one: any lock
        return ("\n".join([PREFIX + f"this test left {left} that held {held} the test "
                            f"database's tables; sqlfix ended {them}:", *ended]), reference)
    stop = None
    try:
        restored = session.restore()
        reference = fingerprint(session)
    except (SqlfixError, psycopg.Error) as exc:
        stop = (PREFIX + "after a test the database differs from its state before the "
                "first test:\n  " + "\n  ".join(changes)
                + f"\nand the baseline could not be restored ({exc}); later tests would "
                "see the changes." + damage_note(session, exc))
    if stop is not None:  # outside `except`: the report shows the message once
        stop_run(item.config, item.session, stop)
    return (PREFIX + "after this test the database differs from its state before the first "
            f"test ({_count(len(changes), 'difference')}; sqlfix put it back):\n  "
            + "\n  ".join(changes) + "\n" + "\n".join([*ended, restored]) + ".",
            reference)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _holders(session: DatabaseSession) -> str:
    from sqlfix.database import locks

    try:
        conn = session.connection()
        conn.rollback()
        found = locks.holders(conn, session._since())
    except (SqlfixError, psycopg.Error):
        return ""
    if not found:
        return ""
    return (f"; held by {locks.summary(found)}. Close the connections a test opens (a `with` "
            "block, or a fixture that closes them)")
