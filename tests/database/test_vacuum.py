"""VACUUM between tests (sqlfix.database.vacuum): rolled-back fixture rows are dead tuples
that a long run would otherwise scan again and again (the drift, docs/performance.md#drift).

Each test is run as the plugin runs it (session.begin, load through the handle, the
test's own statements, end), on a real server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import NO_RANDOM

from sqlfix.config import Settings
from sqlfix.database.session import DatabaseSession
from sqlfix.pytest_plugin.handle import Sqlfix

SCHEMA = """
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users);
CREATE TABLE "Odd Name" (id serial PRIMARY KEY);
CREATE TABLE untouched (id serial PRIMARY KEY);
CREATE TABLE kept (id serial PRIMARY KEY, note text);
INSERT INTO kept (note) VALUES ('from the schema');
"""
FILES = {
    "users.sql": "INSERT INTO users (name) SELECT 'u' || g FROM generate_series(1, 40) g;\n",
    "orders.sql": "-- requires: users.sql\n"
                  "INSERT INTO orders (user_id) SELECT id FROM users;\n"
                  "INSERT INTO \"Odd Name\" DEFAULT VALUES;\n",
}


def project(root: Path, **settings: object) -> Settings:
    fixtures = root / "fixtures_sql"
    fixtures.mkdir(parents=True)
    (fixtures / "schema.sql").write_text(SCHEMA)
    for name, text in FILES.items():
        (fixtures / name).write_text(text)
    return dataclasses.replace(
        Settings(root=root, fixtures_dir=fixtures, schema=(fixtures / "schema.sql",)),
        **settings)


@pytest.fixture
def make_session(tmp_path: Path) -> Iterator[object]:
    started: list[DatabaseSession] = []

    def make(**settings: object) -> DatabaseSession:
        session = DatabaseSession(project(tmp_path / str(len(started)), **settings))
        session.start()
        started.append(session)
        return session

    yield make
    for session in started:
        session.stop()


def one_test(session: DatabaseSession, *names: str, layered: bool = False,
             after: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
    """A test as the plugin runs it; returns what it saw: (users, orders, kept) counts."""
    boundary = session.begin(layered=layered)
    Sqlfix(session, boundary).load(*names)
    if not boundary.is_protected:
        boundary.protect()
    seen = boundary.conn.execute(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orders), "
        "(SELECT count(*) FROM kept)").fetchall()
    boundary.conn.execute("INSERT INTO kept (note) VALUES ('by the test')")
    assert boundary.broken() is None
    boundary.end(keep=session.library.order(after) if layered else None)
    return seen


def heap_pages(session: DatabaseSession, table: str) -> int:
    assert session.dsn is not None
    with psycopg.connect(session.dsn) as conn:
        row = conn.execute("SELECT pg_relation_size(%s::regclass) / 8192", [table]).fetchone()
    assert row is not None
    return int(row[0])


def test_the_grown_tables_are_vacuumed_once_the_threshold_is_loaded(make_session):
    session = make_session(vacuum_threshold=200)  # users.sql + orders.sql: 81 rows a test
    assert one_test(session, "orders.sql") == [(40, 40, 1)]
    assert one_test(session, "orders.sql") == [(40, 40, 1)]
    assert session.vacuum.runs == 0 and session.vacuum.written == 162
    assert heap_pages(session, "users") > 0  # the rolled-back rows, still there
    assert one_test(session, "orders.sql") == [(40, 40, 1)]  # 243 rows: due
    assert session.vacuum.runs == 0 and session.vacuum.due()
    session.begin().end()  # due: done at the next test's begin, before its transaction
    assert session.vacuum.runs == 1 and session.vacuum.written == 0
    # the dead rows are gone and the emptied pages truncated; the schema's row is kept
    assert heap_pages(session, "users") == heap_pages(session, "orders") == 0
    assert heap_pages(session, '"Odd Name"') == 0  # a name that needs quoting
    assert heap_pages(session, "kept") == 1
    assert one_test(session, "orders.sql") == [(40, 40, 1)]


def test_the_tables_vacuumed_are_those_that_grew(make_session):
    session = make_session(vacuum_threshold=1)
    one_test(session, "users.sql")
    assert session.vacuum.due()
    boundary = session.begin()  # the VACUUM ran here
    boundary.end()
    assert session.vacuum.runs == 1
    assert session.dsn is not None
    with psycopg.connect(session.dsn) as conn:
        vacuumed = {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relname IN ('users', 'orders', 'untouched', "
            "'kept') AND pg_relation_size(oid) <= relpages::bigint * 8192 AND relpages >= 0 "
            "AND reltuples >= 0")}
    # users grew (dead rows) and kept grew (the test's own row): both vacuumed (reltuples
    # set); orders and untouched never grew, so VACUUM left them as the schema left them
    assert {"users", "kept"} <= vacuumed
    assert "untouched" not in vacuumed


def test_every_500_tests_whatever_was_loaded(make_session):
    """The rows a test writes itself are not counted (nor, with layers, a shared load's)."""
    from sqlfix.database.vacuum import EVERY_TESTS

    session = make_session(vacuum_threshold=10**9)
    one_test(session, "users.sql")  # 40 rows loaded, far below the threshold
    for _ in range(EVERY_TESTS - 2):
        session.begin().end()
    assert session.vacuum.runs == 0 and session.vacuum.tests == EVERY_TESTS - 1
    session.begin().end()  # the 500th test's begin
    assert session.vacuum.runs == 1 and session.vacuum.tests == 0
    assert heap_pages(session, "users") == 0


def test_a_threshold_of_zero_never_vacuums(make_session):
    session = make_session(vacuum_threshold=0)
    for _ in range(5):
        assert one_test(session, "orders.sql") == [(40, 40, 1)]
    assert session.vacuum.runs == 0
    assert heap_pages(session, "users") > 0


def test_an_open_layer_stack_is_not_vacuumed_until_it_ends(make_session):
    session = make_session(vacuum_threshold=1, layers=True)
    for _ in range(3):  # the same set: the stack stays open between these tests
        assert one_test(session, "orders.sql", layered=True, after=("orders.sql",)) == [
            (40, 40, 1)]
    assert session.vacuum.runs == 0  # VACUUM cannot run in the stack's transaction
    # the last test of the stack: nothing shared with the next, the stack ends
    assert one_test(session, "orders.sql", layered=True, after=()) == [(40, 40, 1)]
    assert one_test(session, "users.sql", layered=True, after=()) == [(40, 0, 1)]
    assert session.vacuum.runs == 1
    assert one_test(session, "orders.sql", layered=True, after=()) == [(40, 40, 1)]


def test_a_vacuum_on_a_lost_connection_gives_way_to_the_usual_recovery(make_session):
    session = make_session(vacuum_threshold=1)
    one_test(session, "users.sql")
    pid = session.connection().info.backend_pid
    assert session.dsn is not None
    with psycopg.connect(session.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    # the VACUUM fails on the dead connection; begin() then recovers as it always does
    assert one_test(session, "orders.sql") == [(40, 40, 1)]
    assert session.connection().info.backend_pid != pid


PLUGIN_TESTS = """
from sqlfix import uses

@uses("users.sql", "orders.sql")
def test_1_loads(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM orders").fetchone()[0] > 0

@uses("users.sql", "orders.sql")
def test_2_loads(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM orders").fetchone()[0] > 0

def test_3_sees_the_heap(sqlfix_conn):
    pages = sqlfix_conn.execute(
        "SELECT pg_relation_size('users') / 8192, (SELECT count(*) FROM users)").fetchone()
    print("users pages", pages)
    assert pages[1] == 0
"""


@pytest.mark.parametrize(("threshold", "pages"), [(1, "0"), (0, "[1-9]*")])
def test_the_plugin_vacuums_between_tests_as_configured(shop, threshold, pages):
    shop.makepyfile(test_heap=PLUGIN_TESTS)
    toml = shop.path / "pyproject.toml"
    toml.write_text(toml.read_text().replace(
        "[tool.sqlfix]\n", f"[tool.sqlfix]\nvacuum_threshold = {threshold}\n", 1))
    result = shop.runpytest("-s", *NO_RANDOM)
    result.assert_outcomes(passed=3)
    # the third test begins after two loads: with a threshold of 1 the rolled-back rows
    # were vacuumed away and the heap truncated; with 0 they are still there
    result.stdout.fnmatch_lines([f"*users pages ({pages}, 0)*"])
