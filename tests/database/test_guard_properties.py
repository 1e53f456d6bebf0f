"""Property: on the real server, nothing runs that the guard did not approve.

Hypothesis writes fixtures that mix allowed and forbidden statements with line
comments, nested block comments, every string form ('...', E'...', U&'...',
dollar quotes, quoted identifiers), semicolons and SQL inside literals, stray
quote characters and settings changes. Each goes through sqlfix's own pipeline
(FixtureLibrary, then the loader) on the embedded server. If the guard refuses
it, nothing may change; if it approves it, the server must do exactly what the
guard's parse trees say: one row per approved INSERT, each value the string the
guard read, the sentinel table, the settings and the large objects untouched.

Examples per run: the `ci` profile (default, bounded for CI); set
HYPOTHESIS_PROFILE=long for a deeper search (docs/security.md).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pglast import parser as pg
from psycopg.conninfo import make_conninfo

from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.library import FixtureLibrary, LoadPlan
from sqlfix.database.loader import load
from sqlfix.errors import FixtureError, LoadError

# The module's connection lives across examples; each example rolls back what it did.
_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=_CHECKS)
settings.register_profile("long", max_examples=3000, deadline=None, suppress_health_check=_CHECKS)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Text inside literals and comments: SQL that must stay data, and every quoting character.
FRAGMENTS = [
    "a", "é", " ", "\n", ";", "'", "''", '"', "\\", "\\'", "$", "$$", "$x$", "--", "/*", "*/",
    "E'", "U&'", "\\0041", "DROP TABLE sentinel", "COMMIT", "; DELETE FROM sentinel; --",
    "SET standard_conforming_strings = off", "'); DROP TABLE sentinel; --",
]  # fmt: skip
content = st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join)


def standard(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def escape(text: str) -> str:
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unicode_escape(text: str) -> str:
    body = text.replace("\\", "\\\\").replace("'", "''").replace("A", "\\0041")
    return "U&'" + body + "'"


def dollar(text: str) -> str:
    tag = next(f"$q{i}$" for i in itertools.count() if f"$q{i}$" not in text + "$")
    return tag + text + tag if not text.endswith("$") else tag + text + " " + tag


literal = st.one_of(
    content.map(standard),
    content.map(escape),
    content.map(lambda t: unicode_escape(t.replace("\n", " "))),
    content.map(dollar),
)
qident = content.map(lambda t: '"' + (t.replace('"', '""') or "q") + '"')
line_comment = content.map(lambda t: "-- " + t.replace("\n", " ") + "\n")
block_comment = st.recursive(
    content.map(lambda t: "/* " + t.replace("*/", "* /").replace("/*", "/ *") + " */"),
    lambda inner: st.tuples(inner, content).map(
        lambda p: "/* " + p[1].replace("*/", "").replace("/*", "") + " " + p[0] + " */"
    ),
    max_leaves=3,
)
ids = itertools.count(1)


@st.composite
def insert(draw: Any) -> str:
    value = draw(literal)
    row_id = next(ids)
    if draw(st.booleans()):
        return f"INSERT INTO data (id, v) VALUES ({row_id}, {value});"
    return f"INSERT INTO data (id, v) SELECT {row_id}, {value} AS {draw(qident)};"


ALLOWED_OTHER = [
    "SET LOCAL search_path TO public;",
    "SET CONSTRAINTS ALL DEFERRED;",
    "SET LOCAL timezone = 'UTC';",
    "SELECT count(*) FROM sentinel;",
]
FORBIDDEN = [
    "DROP TABLE sentinel;",
    "TRUNCATE sentinel;",
    "DELETE FROM sentinel;",  # a data statement: allowed, and seen by the check below
    "CREATE TABLE pwned (a int);",
    "COMMIT;",
    "SET standard_conforming_strings = off;",
    "SET LOCAL standard_conforming_strings = off;",
    "SET LOCAL client_encoding = 'SJIS';",
    "SELECT set_config('standard_conforming_strings', 'off', true);",
    "SELECT lo_create(0);",
    "DO $$ BEGIN DROP TABLE sentinel; END $$;",
]
# Mostly allowed statements, so that a fixture with one forbidden statement, the case a
# wrong guard would let through, is common.
statement = st.one_of(
    insert(), insert(), insert(), st.sampled_from(ALLOWED_OTHER), st.sampled_from(FORBIDDEN)
)
piece = st.one_of(statement, statement, line_comment, block_comment, content)
fixture_text = st.lists(piece, min_size=1, max_size=8).map(lambda parts: "\n".join(parts) + "\n")


@pytest.fixture(scope="module")
def conn(pg_server: Any) -> Iterator[psycopg.Connection[Any]]:
    name = "guard_properties_test"
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"'.encode())
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    with psycopg.connect(make_conninfo(pg_server.dsn, dbname=name)) as connection:
        connection.execute(b"CREATE TABLE sentinel (a int)")
        connection.execute(b"INSERT INTO sentinel VALUES (1), (2)")
        connection.execute(b"CREATE TABLE data (id int PRIMARY KEY, v text)")
        connection.commit()
        yield connection


def expected_rows(sql: str) -> set[tuple[int, str]]:
    """(id, value) of each INSERT INTO data, as the guard's parser reads it."""
    rows = set()
    for raw in json.loads(pg.parse_sql_json(sql))["stmts"]:
        insert_node = raw["stmt"].get("InsertStmt")
        if not insert_node or insert_node["relation"]["relname"] != "data":
            continue
        consts = list(walk_consts(insert_node["selectStmt"]))
        ints = [c["ival"].get("ival", 0) for c in consts if "ival" in c]
        strings = [c["sval"].get("sval", "") for c in consts if "sval" in c]
        rows.add((ints[0], strings[0]))
    return rows


def walk_consts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "A_Const" in node:
            yield node["A_Const"]
        for value in node.values():
            yield from walk_consts(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_consts(item)


def server_state(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    return (
        conn.execute(b"SELECT array_agg(a ORDER BY a) FROM sentinel").fetchone(),
        conn.execute(b"SELECT to_regclass('pwned') IS NULL").fetchone(),
        conn.execute(b"SELECT count(*) FROM pg_largeobject_metadata").fetchone(),
        conn.execute(b"SHOW standard_conforming_strings").fetchone(),
        conn.execute(b"SHOW client_encoding").fetchone(),
    )


names = itertools.count()


@settings(PROFILE)
@given(text=fixture_text)
# #8 item 1, verbatim and as a VALUES row, with each way to switch the setting
@example("SET LOCAL standard_conforming_strings = off;\nSELECT 'x\\''; DROP TABLE sentinel; --';\n")
@example(
    "SET LOCAL standard_conforming_strings = off;\n"
    "INSERT INTO data (id, v) VALUES (1, 'a\\'); DROP TABLE sentinel; --');\n"
)
@example(
    "SELECT set_config('standard_conforming_strings', 'off', true);\n"
    "INSERT INTO data (id, v) VALUES (2, 'a\\'); DELETE FROM sentinel; --');\n"
)
@example("INSERT INTO data (id, v) VALUES (3, 'a\\'); DROP TABLE sentinel; --');\n")
@example("INSERT INTO data (id, v) VALUES (4, E'a\\''); DROP TABLE sentinel; --');\n")
@example("INSERT INTO data (id, v) VALUES (5, $$a$$); DROP TABLE sentinel; --$$);\n")
@example("/* a /* b */ DROP TABLE sentinel; */ INSERT INTO data (id, v) VALUES (6, 'x');\n")
def test_nothing_runs_that_the_guard_did_not_approve(
    conn: psycopg.Connection[Any], tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    root = tmp_path_factory.getbasetemp() / "guard_properties"
    root.mkdir(exist_ok=True)
    name = f"f{next(names)}.sql"
    (root / name).write_text(text, encoding="utf-8")
    library = FixtureLibrary(FixtureDir(Path(root)))
    before = server_state(conn)
    try:
        try:
            fixture = library.compile(name)
        except FixtureError:
            event("refused by the guard")
            assert server_state(conn) == before
            return
        approved = "\n".join(s.text for s in fixture.statements)
        deletes = any(
            raw["stmt"].get("DeleteStmt", {}).get("relation", {}).get("relname") == "sentinel"
            for raw in json.loads(pg.parse_sql_json(approved))["stmts"]
        )
        try:
            load(conn, LoadPlan((fixture,)))
        except LoadError:
            event("refused by the server")
            # refused by the server (a value error, or two commands in one message): no trace
            assert server_state(conn) == before
            assert conn.execute(b"SELECT count(*) FROM data").fetchone() == (0,)
            return
        event("loaded")
        rows = set(conn.execute(b"SELECT id, v FROM data").fetchall())
        assert rows == expected_rows(approved)
        after = server_state(conn)
        if deletes:  # the one allowed statement that touches the sentinel
            after = ((None,), *after[1:])
            before = ((None,), *before[1:])
        assert after == before
    finally:
        conn.rollback()
    assert server_state(conn)[0] == ([1, 2],)  # nothing was committed
