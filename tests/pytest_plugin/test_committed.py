"""The committed mode (@uses(..., commit=True)), sqlfix_dsn, and the second-connection hint."""

from __future__ import annotations

import psycopg  # noqa: F401  (imported once in the outer session: see test_async.py)
import pytest
from helpers import NO_RANDOM

COMMITTED = '''
import asyncio
import concurrent.futures
import subprocess
import sys

import psycopg
import pytest
from sqlfix import uses

COUNTS = "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM products), (SELECT count(*) FROM orders)"

def add_product(dsn, sku):                    # code under test, on a thread, own connection
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO products (sku, name, price_cents) VALUES (%s, 'P', 1)", [sku])

WORKER = """
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    conn.execute("DELETE FROM users WHERE email = 'bob@example.com'")
    conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('sub', 'S', 1)")
"""

@uses("users.sql", commit=True)
def test_1_threads_and_a_subprocess(sqlfix_dsn, sqlfix_conn):
    with psycopg.connect(sqlfix_dsn) as other:  # the fixtures are committed: visible
        assert other.execute("SELECT count(*) FROM users").fetchone() == (4,)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: add_product(sqlfix_dsn, f"t{i}"), range(8)))
    subprocess.run([sys.executable, "-c", WORKER, sqlfix_dsn], check=True)
    assert sqlfix_conn.execute(COUNTS).fetchone() == (3, 9, 0)
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('own', 'O', 1)")
    sqlfix_conn.commit()                       # a real commit in this mode

def test_2_clean_baseline(sqlfix_conn):
    assert sqlfix_conn.execute(COUNTS).fetchone() == (0, 0, 0)
    new_id = sqlfix_conn.execute(
        "INSERT INTO products (sku, name, price_cents) VALUES ('n', 'N', 1) RETURNING id").fetchone()
    assert new_id == (1,)                      # sequences are back too

@uses("orders.sql", commit=True)
class TestCommittedClass:
    def test_3_sees_orders_from_another_connection(self, sqlfix_dsn):
        with psycopg.connect(sqlfix_dsn) as other:
            assert other.execute(COUNTS).fetchone() == (4, 4, 2)
            other.execute("TRUNCATE orders CASCADE")

    @pytest.mark.asyncio
    async def test_4_async_code_on_its_own_connections(self, sqlfix_dsn, sqlfix_aconn):
        async def service():
            async with await psycopg.AsyncConnection.connect(sqlfix_dsn) as conn:
                await conn.execute("UPDATE users SET full_name = 'X'")
        await asyncio.gather(service(), service())
        cur = await sqlfix_aconn.execute("SELECT count(*) FROM users WHERE full_name = 'X'")
        assert await cur.fetchone() == (4,)
        await sqlfix_aconn.execute("DELETE FROM order_items")
        await sqlfix_aconn.commit()

def test_5_clean_again(sqlfix_conn):
    assert sqlfix_conn.execute(COUNTS).fetchone() == (0, 0, 0)

@uses("users.sql")
def test_6_rollback_mode_with_a_second_connection_fails(sqlfix_dsn):
    with psycopg.connect(sqlfix_dsn) as other:
        assert other.execute("SELECT count(*) FROM users").fetchone() == (4,)

@uses("users.sql")
def test_7_rollback_mode_pool_left_open(sqlfix_dsn):
    kept = psycopg.connect(sqlfix_dsn)
    pytest.kept = kept
    assert kept.execute("SELECT count(*) FROM users").fetchone() == (4,)

@uses("users.sql")
def test_8_fails_on_its_own(sqlfix_conn):
    pytest.kept.close()
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (5,)
'''


def test_committed_mode_threads_subprocess_async_then_clean_baseline(shop):
    shop.makepyfile(COMMITTED)
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio", "-o", "asyncio_mode=strict")
    del pytest.kept  # set by the in-process run (closed by its test_8)
    result.assert_outcomes(passed=5, failed=3)
    text = result.stdout.str()
    sections = text.split("____ ")
    by_test = {name: next((s for s in sections if name in s.split("\n")[0]), "")
               for name in ("test_6", "test_7", "test_8")}
    assert "other connection(s) to the test database were opened and closed" in by_test["test_6"]
    assert "commit=True" in by_test["test_6"]
    assert "opened during this test are still open" in by_test["test_7"], by_test["test_7"]
    assert "other connections" not in by_test["test_8"], by_test["test_8"]


LOOKUP_SCHEMA = """
CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL);
INSERT INTO countries VALUES ('fr', 'France'), ('de', 'Germany');
CREATE TABLE cities (id serial PRIMARY KEY, country text NOT NULL REFERENCES countries (code), name text NOT NULL);
CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
"""


def test_committed_mode_restores_rows_the_schema_filled_and_refuses_bad_input(pytester):
    fixtures = pytester.mkdir("fixtures_sql")
    (fixtures / "schema.sql").write_text(LOOKUP_SCHEMA)
    (fixtures / "cities.sql").write_text(
        "INSERT INTO cities (id, country, name) VALUES ({{ id('cities', 'paris') }}, 'fr', 'Paris');\n")
    (fixtures / "notes.sql").write_text("INSERT INTO notes (body) VALUES ('loaded later');\n")
    (fixtures / "broken.sql").write_text(
        "INSERT INTO notes (body) VALUES ('kept?');\nINSERT INTO cities (id, country, name) VALUES (1, 'xx', 'Nowhere');\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
                               '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    pytester.makepyfile('''
import psycopg
import pytest
from sqlfix import uses

pytestmark = uses("cities.sql", commit=True)

def test_1_deletes_lookup_rows(sqlfix_dsn, sqlfix):
    assert sqlfix.load("notes.sql") == ("notes.sql",)  # committed too, in this mode
    with psycopg.connect(sqlfix_dsn) as conn:
        assert conn.execute("SELECT name FROM cities").fetchall() == [("Paris",)]
        assert conn.execute("SELECT body FROM notes").fetchall() == [("loaded later",)]
        conn.execute("DELETE FROM cities")
        conn.execute("DELETE FROM countries WHERE code = 'de'")
        conn.execute("UPDATE countries SET name = 'F' WHERE code = 'fr'")

@uses("broken.sql")
def test_2_failing_fixture_leaves_nothing(sqlfix_conn):
    pass

@uses("cities.sql", commit=False)
def test_3_closest_marker_wins(sqlfix_dsn, sqlfix_conn):
    with psycopg.connect(sqlfix_dsn) as conn:  # rollback mode: not committed, not visible
        assert conn.execute("SELECT count(*) FROM cities").fetchone() == (0,)
    assert sqlfix_conn.execute("SELECT count(*) FROM cities").fetchone() == (1,)
    assert sqlfix_conn.execute("SELECT name FROM countries ORDER BY code").fetchall() == [("Germany",), ("France",)]
    assert sqlfix_conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)

@pytest.mark.sqlfix("cities.sql", commit="yes")
def test_4_bad_commit_value():
    pass

def test_5_engine_refused(sqlfix_sqla_engine):
    pass
''')
    result = pytester.runpytest(*NO_RANDOM, "-p", "no:anyio")
    result.assert_outcomes(passed=2, errors=3)
    result.stdout.fnmatch_lines([
        "*test_2_failing_fixture_leaves_nothing*", "*broken.sql:2:*23503*",
    ])
    result.stdout.fnmatch_lines(["*commit= takes True or False, got 'yes'*"])
    result.stdout.fnmatch_lines(["*sqlfix_sqla_engine is built on sqlfix's own connection*sqlfix_dsn*"])


def test_a_connection_left_in_a_transaction_stops_the_run_with_its_name(shop):
    shop.makepyfile('''
import psycopg
import pytest
import sqlfix.pytest_plugin.committed as committed
from sqlfix import uses

committed.LOCK_TIMEOUT = "200ms"  # the restore's wait, shortened for this test

@uses("users.sql", commit=True)
def test_1_leaves_a_transaction_open(sqlfix_dsn):
    conn = psycopg.connect(sqlfix_dsn, application_name="leaky-worker")
    assert conn.execute("SELECT count(*) FROM users").fetchone() == (4,)
    pytest.leak = conn  # never committed, never closed: holds a lock on users

def test_2_never_runs():
    pass
''')
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio")
    pytest.leak.close()  # the run was in this process: its leaked connection is ours to close
    del pytest.leak
    assert result.ret == 3
    result.stdout.fnmatch_lines([
        "*the baseline could not be restored: connections of the code under test still hold "
        "locks after 200ms*leaky-worker*Close pools*"])
