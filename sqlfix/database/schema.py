"""The test database: connect, refuse unsafe targets, apply the schema once.

The schema (the only place DDL is allowed) is applied once per session, outside
any test's boundary, in one transaction. Its hash is recorded in
`_sqlfix.schema_state` so a long-lived test database given by DSN is not rebuilt
(or half-rebuilt) on every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from sqlfix.compiler import guard
from sqlfix.compiler.library import display_path
from sqlfix.database.boundary import SqlfixConnection
from sqlfix.errors import DatabaseError

_STATE_DDL = b"""
CREATE SCHEMA IF NOT EXISTS _sqlfix;
CREATE TABLE IF NOT EXISTS _sqlfix.schema_state (
    schema_hash text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


def connect(dsn: str, lock_timeout: int = 0, statement_timeout: int = 0) -> SqlfixConnection:
    """A connection for the session; commits between tests are refused (see SqlfixConnection).

    Its strings follow the rules fixtures are checked by: the guard and the quoting
    read '...' the way PostgreSQL does with standard_conforming_strings on (backslash
    is a plain character). The timeouts (ms, 0 = none) are startup options, so they
    are what `RESET ALL` between tests comes back to.
    """
    options = (f"-c standard_conforming_strings=on -c lock_timeout={lock_timeout} "
               f"-c statement_timeout={statement_timeout}")
    try:
        conn = SqlfixConnection.connect(dsn, autocommit=False, options=options)
        conn._sqlfix_owned = True
        return conn
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to the test database ({exc}). Check the DSN "
            "(the DSN option, SQLFIX_DSN or [tool.sqlfix] dsn), or leave it unset and "
            "sqlfix starts its own PostgreSQL"
        ) from exc


def check_safe(conn: psycopg.Connection[Any], allow_any_database: bool) -> None:
    name = conn.info.dbname
    if "test" in name.lower() or allow_any_database:
        return
    raise DatabaseError(
        f"refusing to use database {name!r}: its name does not contain 'test'. sqlfix "
        "writes and rolls back data and applies the schema there, so it only runs against "
        "test databases. Point the DSN at a test database (e.g. myapp_test), or set "
        "allow_any_database = true in [tool.sqlfix] if this one really is disposable"
    )


def schema_hash(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def apply_schema(conn: psycopg.Connection[Any], files: Sequence[Path]) -> bool:
    """Apply the schema files unless this exact schema is already there; True if applied."""
    if not files:
        return False
    for path in files:
        if not path.is_file():
            raise DatabaseError(f"schema file {path} not found; fix [tool.sqlfix] schema")
    wanted = schema_hash(files)
    cur = conn.cursor(row_factory=tuple_row)
    with conn.transaction():
        # pytest-xdist workers sharing one database take turns; the second finds it done
        cur.execute(b"SELECT pg_advisory_xact_lock(hashtext('sqlfix: apply schema'))")
        cur.execute(_STATE_DDL)
        applied = [r[0] for r in cur.execute(b"SELECT schema_hash FROM _sqlfix.schema_state")]
        if wanted in applied:
            return False
        if applied:
            raise DatabaseError(
                f"the schema files changed since sqlfix applied them to database "
                f"{conn.info.dbname!r}. Recreate that test database (dropdb/createdb) so the "
                "new schema can be applied to an empty one"
            )
        for path in files:
            _run_schema_file(conn, path)
        conn.execute(b"INSERT INTO _sqlfix.schema_state (schema_hash) VALUES (%s)", [wanted])
    return True


def _run_schema_file(conn: psycopg.Connection[Any], path: Path) -> None:
    text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not SQL
    try:
        with conn.transaction():  # a savepoint: the error names this file alone
            conn.execute(text.encode())
    except psycopg.Error as exc:
        position = exc.diag.statement_position
        line = _error_line(text, position) if position else _failing_line(conn, text)
        raise DatabaseError(
            f"{display_path(path)}:{line}:1: schema failed: {exc.diag.sqlstate} "
            f"{exc.diag.message_primary or exc}. If the objects already exist, the database "
            "was not built by sqlfix: point the DSN at an empty test database"
        ) from exc


def _failing_line(conn: psycopg.Connection[Any], text: str) -> int:
    """The line of the statement that fails, found by replaying one at a time (error path)."""
    try:
        with conn.transaction():
            for statement in guard.scan(text).statements:
                try:
                    with conn.transaction():
                        conn.execute(statement.text.encode())
                except psycopg.Error:
                    return text.count("\n", 0, statement.offset) + 1
            raise psycopg.Rollback()
    except psycopg.Error:
        pass
    return 1


def _error_line(text: str, position: str | None) -> int:
    if not position or not position.isdigit():
        return 1
    return text.count("\n", 0, int(position) - 1) + 1
