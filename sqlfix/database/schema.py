"""The test database: connect, refuse unsafe targets, apply the schema once.

The schema (the only place DDL is allowed) is applied once per session, outside
any test's boundary, in one transaction. Its hash is recorded in
`_sqlfix.schema_state` so a long-lived test database given by DSN is not rebuilt
(or half-rebuilt) on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from pglast import parser as pg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import tuple_row

from sqlfix.compiler import copy_blocks, guard
from sqlfix.compiler.library import display_path
from sqlfix.database.backends import APP_NAME
from sqlfix.database.boundary import SqlfixConnection
from sqlfix.errors import DatabaseError, RefusedDatabase

_STATE_DDL = b"""
CREATE SCHEMA IF NOT EXISTS _sqlfix;
CREATE TABLE IF NOT EXISTS _sqlfix.schema_state (
    schema_hash text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE _sqlfix.schema_state ADD COLUMN IF NOT EXISTS damaged text;
"""
_DAMAGED = b"UPDATE _sqlfix.schema_state SET damaged = %s"
# A database without schema files (setup_command, or built by hand) has no state row yet
_DAMAGED_NO_ROW = (b"INSERT INTO _sqlfix.schema_state (schema_hash, damaged) SELECT '', %s "
                   b"WHERE NOT EXISTS (SELECT FROM _sqlfix.schema_state)")
# How `damaged` begins when a restore failed (DatabaseSession.mark_damaged, record_damage), not DDL
RESTORE_FAILED = "the baseline could not be restored: "


# How long sqlfix's own connections to a DSN wait for the server, in seconds. libpq's
# default is no limit of its own: a host that accepts the TCP connection and never answers
# (a dead server behind a proxy or tunnel, a firewall) held the run for the OS's TCP
# timeout, two minutes or more a connection.
CONNECT_TIMEOUT = 10


def with_connect_timeout(dsn: str, seconds: int | None = None) -> str:
    """`dsn` with `connect_timeout=seconds` (default CONNECT_TIMEOUT), unless the user
    chose a timeout: a `connect_timeout` in the DSN (keyword or URI query), or
    PGCONNECT_TIMEOUT, which libpq reads. Theirs wins. Every connection sqlfix opens to a
    DSN goes through here."""
    if os.environ.get("PGCONNECT_TIMEOUT", "").strip():
        return dsn
    if conninfo_to_dict(dsn).get("connect_timeout") is not None:
        return dsn
    return make_conninfo(dsn, connect_timeout=CONNECT_TIMEOUT if seconds is None else seconds)


def server_address(dsn: str) -> tuple[str, str]:
    """(host, port) a DSN reaches, as libpq fills them in: the DSN, then PGHOST/PGPORT,
    then its defaults. Raises psycopg.ProgrammingError for a DSN it cannot read."""
    params = conninfo_to_dict(dsn)
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") \
        or os.environ.get("PGHOSTADDR") or "localhost"
    return str(host), str(params.get("port") or os.environ.get("PGPORT") or "5432")


def no_answer(dsn: str) -> str:
    """What to say when a connection to `dsn` timed out (psycopg's ConnectionTimeout,
    whose own text names neither the server nor the way out). Never the password."""
    params = conninfo_to_dict(dsn)
    host, port = server_address(dsn)
    seconds = params.get("connect_timeout") or os.environ.get("PGCONNECT_TIMEOUT", "").strip() \
        or CONNECT_TIMEOUT
    return (f"no answer from the server at host {host}, port {port} within {seconds} s "
            "(connect_timeout): something accepts connections there but does not answer as "
            "PostgreSQL, or the network drops them (a stopped server behind a proxy or "
            "tunnel, a firewall, a wrong host or port). Check the DSN (the DSN option, "
            "SQLFIX_DSN or [tool.sqlfix] dsn) and that PostgreSQL runs there; to wait longer, "
            "set connect_timeout in the DSN (connect_timeout=30, or ?connect_timeout=30 in a "
            "URI) or PGCONNECT_TIMEOUT")


def connect(dsn: str, lock_timeout: int = 0, statement_timeout: int = 0) -> SqlfixConnection:
    """A connection for the session; commits between tests are refused (see SqlfixConnection).

    Its strings follow the rules fixtures are checked by: the guard and the quoting
    read '...' the way PostgreSQL does with standard_conforming_strings on (backslash
    is a plain character). The timeouts (ms, 0 = none) are startup options, so they
    are what `RESET ALL` between tests comes back to. `application_name` is "sqlfix",
    so that sqlfix tells its own connections from the test's in `pg_stat_activity`.
    """
    options = (f"-c standard_conforming_strings=on -c lock_timeout={lock_timeout} "
               f"-c statement_timeout={statement_timeout}")
    try:
        # client_encoding UTF8: on a SQL_ASCII database the default client encoding is
        # SQL_ASCII too, and psycopg then returns text as bytes, sqlfix's catalog reads
        # included. UTF8 works with every server encoding (SQL_ASCII: no conversion).
        conn = SqlfixConnection.connect(
            with_connect_timeout(dsn), autocommit=False, client_encoding="UTF8", options=options,
            application_name=APP_NAME)
        conn._sqlfix_owned = True
        return conn
    except psycopg.OperationalError as exc:
        raise DatabaseError(cannot_connect(dsn, exc)) from exc


def cannot_connect(dsn: str, exc: psycopg.OperationalError) -> str:
    """What to say when a connection to the test database failed: a timeout in
    `no_answer`'s words, else libpq's reason and where the DSN is set."""
    if isinstance(exc, psycopg.errors.ConnectionTimeout):
        return f"cannot connect to the test database: {no_answer(dsn)}"
    return (f"cannot connect to the test database ({str(exc).strip()}). Check the DSN "
            "(the DSN option, SQLFIX_DSN or [tool.sqlfix] dsn), or leave it unset and "
            "sqlfix starts its own PostgreSQL")


def check_safe(conn: psycopg.Connection[Any], allow_any_database: bool) -> None:
    why = unsafe_database(conn.info.dbname, allow_any_database)
    if why:
        raise RefusedDatabase(why)


def unsafe_database(name: str, allow_any_database: bool) -> str | None:
    """Why sqlfix refuses the database `name`, or None: its name must contain 'test'."""
    if "test" in name.lower() or allow_any_database:
        return None
    return (
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


def record_damage(conn: psycopg.Connection[Any], why: str, keep_earlier: bool = False) -> None:
    """Record in the database itself that a run left it changed; `apply_schema` of the
    next run refuses it. `keep_earlier`: an earlier mark stays (it says more).

    With or without schema files (the state table is made if missing). The caller commits.
    """
    conn.execute(_STATE_DDL)
    conn.execute(_DAMAGED + (b" WHERE damaged IS NULL" if keep_earlier else b""), [why])
    conn.execute(_DAMAGED_NO_ROW, [why])


def apply_schema(conn: psycopg.Connection[Any], files: Sequence[Path]) -> bool:
    """Apply the schema files unless this exact schema is already there; True if applied.

    Raises DatabaseError if a file is missing or fails, if the database holds another
    schema, or if a run marked it damaged (`record_damage`), schema files or not.
    """
    if not files:
        with conn.transaction():
            if conn.execute(b"SELECT to_regclass('_sqlfix.schema_state')").fetchone() != (None,):
                _refuse_damaged(conn, [r[0] for r in conn.execute(
                    b"SELECT damaged FROM _sqlfix.schema_state WHERE damaged IS NOT NULL")])
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
        rows = cur.execute(b"SELECT schema_hash, damaged FROM _sqlfix.schema_state").fetchall()
        applied = [r[0] for r in rows]
        _refuse_damaged(conn, [r[1] for r in rows if r[1]])
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
        # sqlfix's own bookkeeping runs as the session's user, not as a role the schema
        # switched to (pg_dump --role writes SET ROLE; SET SESSION AUTHORIZATION)
        conn.execute(b"SET SESSION AUTHORIZATION DEFAULT")
        conn.execute(b"RESET ROLE")
        conn.execute(b"INSERT INTO _sqlfix.schema_state (schema_hash) VALUES (%s)", [wanted])
    return True


def _refuse_damaged(conn: psycopg.Connection[Any], damaged: Sequence[str]) -> None:
    """Raise DatabaseError if an earlier run marked the database (see `record_damage`)."""
    if not damaged:
        return
    if damaged[0].startswith(RESTORE_FAILED):
        raise DatabaseError(
            f"a run before this one stopped with a test's committed changes still in "
            f"database {conn.info.dbname!r} ({damaged[0]}), and sqlfix does not drop a "
            "database given by DSN: it would take them as its baseline. Recreate that "
            "test database (dropdb/createdb) so the schema can be applied to an empty one")
    raise DatabaseError(
        f"a test of an earlier run changed the schema of database {conn.info.dbname!r} "
        f"and committed it ({damaged[0]}), and sqlfix does not drop a database given "
        "by DSN. Recreate that test database (dropdb/createdb) so the schema can be "
        "applied to an empty one")


# Duplicate database, schema, table, column, function, object (type, constraint, role...):
# the one kind of error that says the objects are there already.
_DUPLICATE_OBJECT = frozenset({"42P04", "42P06", "42P07", "42701", "42723", "42710"})
# An owner or grantee the server does not have (pg_dump's OWNER TO, GRANT ... TO)
_UNDEFINED_OBJECT = "42704"
_MISSING_ROLE = re.compile(r'role ".*" does not exist')
# "cannot run inside a transaction block" (CREATE INDEX CONCURRENTLY, VACUUM, ...)
_NEEDS_NO_TRANSACTION = "25001"
# pg_dump (15.14+, 16.10+, 17.6+) brackets its output with these psql meta-commands.
# They only guard psql's own reading of the file, so they mean nothing to the server.
_PSQL_RESTRICT = re.compile(r"^[ \t]*\\(?:un)?restrict\b[^\n]*$", re.MULTILINE)


def schema_sql(text: str) -> str:
    """The schema text as sent to the server: `\\restrict`/`\\unrestrict` lines blanked.

    Blanked, not removed, so offsets (and so lines and columns) stay those of the file.
    """
    return _PSQL_RESTRICT.sub(lambda m: " " * len(m.group()), text)


def _run_schema_file(conn: psycopg.Connection[Any], path: Path) -> None:
    text = schema_sql(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is not SQL
    control = transaction_control(text)
    if control is not None:
        at, word = control
        raise DatabaseError(
            f"{_where(display_path(path), text, at)}: schema failed: {word} in a schema file; "
            "sqlfix applies the schema files in one transaction of its own, which this "
            "statement would end or nest: remove the file's BEGIN/COMMIT/ROLLBACK (it needs "
            "none), or apply the file with psql from [tool.sqlfix] setup_command. Nothing "
            "of the schema was applied")
    _refuse_copy_rows(path, text)
    try:
        with conn.transaction():  # a savepoint: the error names this file alone
            conn.execute(text.encode())
    except psycopg.Error as exc:
        offset = _error_offset(text, exc.diag.statement_position)
        if offset is None:
            offset = _failing_offset(conn, text)
        raise DatabaseError(schema_error(display_path(path), text, offset, exc)) from exc


def _refuse_copy_rows(path: Path, text: str) -> None:
    """A COPY ... FROM stdin block (a whole `pg_dump`) cannot go in one query string.

    The server would read its rows as SQL and say "syntax error at or near" a row.
    """
    if not copy_blocks.may_hold_copy(text):
        return
    blocks = copy_blocks.find(text).blocks
    if not blocks:
        return
    where = _where(display_path(path), text, blocks[0].start)
    raise DatabaseError(
        f"{where}: schema failed: COPY ... FROM stdin with rows in "
        "a schema file (a pg_dump made without --schema-only): schema files go to the server "
        "as SQL, which cannot carry COPY rows. Dump the schema with pg_dump --schema-only "
        "and turn the data into fixtures with `python -m sqlfix import`, or apply the whole "
        "dump with psql from [tool.sqlfix] setup_command. Nothing of the schema was applied")


def _where(shown: str, text: str, offset: int) -> str:
    """`shown:line:col` of `offset` in `text` (1-based, as editors count)."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"{shown}:{line}:{col}"


def schema_error(shown: str, text: str, offset: int, exc: psycopg.Error) -> str:
    """`file:line:col: schema failed: SQLSTATE message; DETAIL; HINT` and what to do."""
    diag = exc.diag
    parts = [f"{_where(shown, text, offset)}: schema failed: {diag.sqlstate or '?'} "
             f"{(diag.message_primary or str(exc)).strip()}"]
    parts += [f"{label}: {value.strip()}" for label, value in
              (("DETAIL", diag.message_detail), ("HINT", diag.message_hint)) if value]
    parts.append(_advice(diag.sqlstate, text[offset:offset + 1], diag.message_primary or ""))
    return "\n  ".join(parts)


def _advice(sqlstate: str | None, at: str, message: str = "") -> str:
    if sqlstate in _DUPLICATE_OBJECT:
        return ("The object already exists: the schema files create it twice (remove one), "
                "or, with a DSN, the database was not built by sqlfix: point the DSN at an "
                "empty test database (or leave it unset for the embedded one)")
    if sqlstate == _UNDEFINED_OBJECT and _MISSING_ROLE.match(message):
        return ("pg_dump writes the owners and grants of the database it dumped: dump the "
                "schema with --no-owner --no-privileges, or create the role first (CREATE "
                "ROLE in an earlier schema file). The embedded server has the role postgres")
    if sqlstate == _NEEDS_NO_TRANSACTION:
        return ("Schema files run in one transaction; a statement that cannot (CREATE INDEX "
                "CONCURRENTLY, ALTER TYPE ... ADD VALUE before PostgreSQL 12, VACUUM, ...) "
                "belongs in a migration run by [tool.sqlfix] setup_command, or drop "
                "CONCURRENTLY: a test database has no concurrent readers")
    if at == "\\":
        return ("psql meta-commands (\\connect, \\set, ...) are not SQL: the schema files "
                "are sent to the server as they are; remove the line or apply the file "
                "with psql from setup_command")
    return "Schema files run in one transaction: nothing of them was applied"


def _failing_offset(conn: psycopg.Connection[Any], text: str) -> int:
    """The offset of the statement that fails, found by replaying one at a time (error path)."""
    try:
        with conn.transaction():
            for statement in guard.scan(text).statements:
                try:
                    with conn.transaction():
                        conn.execute(statement.text.encode())
                except psycopg.Error:
                    return statement.offset
            raise psycopg.Rollback()
    except psycopg.Error:
        pass
    return 0


def _error_offset(text: str, position: str | None) -> int | None:
    """The 0-based offset of the server's 1-based character position, if it gave one."""
    if not position or not position.isdigit():
        return None
    return min(int(position) - 1, len(text))


# Transaction control that ends (or would nest) the transaction the schema runs in;
# savepoints inside it are harmless. A COMMIT would otherwise keep half a schema.
_ENDS_TRANSACTION = frozenset({
    "TRANS_STMT_BEGIN", "TRANS_STMT_START", "TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK",
    "TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED", "TRANS_STMT_ROLLBACK_PREPARED"})
_TRANSACTION_WORD = re.compile(r"\b(?:BEGIN|START|COMMIT|END|ROLLBACK|ABORT|PREPARE)\b", re.I)
_COMMENT_TOKENS = frozenset({"C_COMMENT", "SQL_COMMENT"})


def transaction_control(text: str) -> tuple[int, str] | None:
    """(offset, first word) of the first statement that ends the transaction, or None.

    None too when the text does not parse: the server then names the syntax error.
    """
    if not _TRANSACTION_WORD.search(text):
        return None  # the common case: no parse at all
    data = text.encode()
    try:
        tree = json.loads(pg.parse_sql_json(text))
    except pg.ParseError:
        return None
    for raw in tree.get("stmts", []):
        node = raw["stmt"].get("TransactionStmt")
        if node is None or node.get("kind") not in _ENDS_TRANSACTION:
            continue
        start = raw.get("stmt_location", 0)
        chunk = data[start:start + raw.get("stmt_len", len(data))]
        first = next((t for t in pg.scan(chunk.decode()) if t.name not in _COMMENT_TOKENS), None)
        skip = first.start if first is not None else 0  # bytes of the chunk before its word
        offset = len(data[:start + skip].decode("utf-8", "replace"))
        return offset, text[offset:].split(None, 1)[0].rstrip(";").upper()
    return None
