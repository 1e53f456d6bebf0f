"""The committed mode (@uses(..., commit=True)) and sqlfix_dsn (the second-connection hint:
test_second_connection_hint.py)."""

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
    # said once, not chained to the TypeError it came from
    assert result.stdout.str().split("short test summary info")[0].count(
        "commit= takes True or False, got 'yes'") == 1
    assert "During handling of the above exception" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*sqlfix_sqla_engine is built on sqlfix's own connection*sqlfix_dsn*"])


def test_a_failed_load_mid_test_keeps_the_tests_own_uncommitted_work(pytester):
    """In the committed mode a failing sqlfix.load() rolled back the whole transaction,
    the test's own uncommitted rows with it, while the error said only the load's rows
    were dropped. As in the rollback mode, only the load is undone (its timeouts too)."""
    fixtures = pytester.mkdir("fixtures_sql")
    (fixtures / "schema.sql").write_text(LOOKUP_SCHEMA)
    (fixtures / "notes.sql").write_text("INSERT INTO notes (body) VALUES ('loaded');\n")
    (fixtures / "broken.sql").write_text(
        "INSERT INTO notes (body) VALUES ('from the load');\n"
        "INSERT INTO cities (id, country, name) VALUES (1, 'xx', 'Nowhere');\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
                               '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    pytester.makepyfile('''
import pytest
from sqlfix import uses
from sqlfix.errors import SqlfixError

def bodies(conn):
    return [r[0] for r in conn.execute("SELECT body FROM notes ORDER BY id")]

@uses(commit=True)
def test_1_pending_work_survives(sqlfix_conn, sqlfix):
    sqlfix_conn.execute("INSERT INTO notes (body) VALUES ('pending')")
    with pytest.raises(SqlfixError, match="broken.sql:2"):
        sqlfix.load("broken.sql")
    assert bodies(sqlfix_conn) == ["pending"]
    assert sqlfix_conn.execute("SHOW lock_timeout").fetchone() != ("5s",)  # not the load's
    sqlfix.load("notes.sql")  # commits the pending row with it, as documented
    assert bodies(sqlfix_conn) == ["pending", "loaded"]

@uses(commit=True)
def test_2_nothing_pending(sqlfix_conn, sqlfix):
    with pytest.raises(SqlfixError):
        sqlfix.load("broken.sql")
    assert bodies(sqlfix_conn) == []

def test_3_baseline(sqlfix_conn):
    assert bodies(sqlfix_conn) == []
''')
    result = pytester.runpytest(*NO_RANDOM, "-p", "no:anyio")
    result.assert_outcomes(passed=3)


def test_a_late_writer_of_a_committed_test_is_named_in_the_next_failures_hint(shop):
    """A committed test's thread that connects after sqlfix's last look writes into the
    next test; that test's hint blamed its own code under test only."""
    shop.makepyfile('''
import threading, time
import psycopg
from sqlfix import uses

@uses("users.sql", commit=True)
def test_1_fire_and_forget(sqlfix_dsn):
    def audit():
        time.sleep(0.5)
        with psycopg.connect(sqlfix_dsn) as c:
            c.execute("INSERT INTO products (sku, name, price_cents) VALUES ('late', 'L', 1)")
    threading.Thread(target=audit).start()

def test_2_innocent(sqlfix_conn):
    time.sleep(1.5)
    assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
''')
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio")
    result.assert_outcomes(passed=1, failed=1)
    text = " ".join(result.stdout.str().split())
    assert "were opened and closed during this test" in text, text
    assert ("A committed test ran earlier in this run (the last one: "
            "test_a_late_writer_of_a_committed_test_is_named_in_the_next_failures_hint.py"
            "::test_1_fire_and_forget)") in text, text


def test_connections_left_open_are_ended_named_and_the_next_test_sees_the_baseline(shop):
    shop.makepyfile('''
import threading
import psycopg
import pytest
from sqlfix import uses

INSERT = "INSERT INTO products (sku, name, price_cents) VALUES (%s, 'P', 1) RETURNING id"
LEAKS = []

@uses("users.sql", commit=True)
def test_1_leaves_an_uncommitted_insert(sqlfix_dsn):
    conn = psycopg.connect(sqlfix_dsn, application_name="leaky-worker")
    assert conn.execute(INSERT, ["leak"]).fetchone() == (1,)   # never committed, never closed
    LEAKS.append(conn)

@uses("users.sql", commit=True)
def test_2_same_key_does_not_wait(sqlfix_dsn):
    with psycopg.connect(sqlfix_dsn) as conn:          # would wait forever on id 1 before
        assert conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
        assert conn.execute(INSERT, ["same-key"]).fetchone() == (1,)

@uses(commit=True)
def test_3_leaves_an_idle_pool(sqlfix_dsn):
    conn = psycopg.connect(sqlfix_dsn, autocommit=True, application_name="idle-pool")
    conn.execute(INSERT, ["idle"])
    conn.execute("SET search_path = nowhere")
    LEAKS.append(conn)

@uses(commit=True)
def test_4_leaves_a_thread_running(sqlfix_dsn, sqlfix_conn):
    def worker():
        with psycopg.connect(sqlfix_dsn, application_name="busy-thread") as conn:
            try:
                conn.execute("SELECT pg_sleep(600)")
            except psycopg.Error:
                pass                                   # ended by sqlfix
    threading.Thread(target=worker, daemon=True).start()
    sleeping = None
    while not sleeping:
        sqlfix_conn.rollback()
        sleeping = sqlfix_conn.execute("SELECT pid FROM pg_stat_activity WHERE "
                                       "query LIKE '%pg_sleep(600)' AND state = 'active'").fetchone()

def test_5_baseline(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
    assert sqlfix_conn.execute(INSERT, ["n"]).fetchone() == (1,)  # sequences back too
    for conn in LEAKS:                                  # ended by the server
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
''')
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio",
                            "-W", "default::sqlfix.errors.LeakedConnectionWarning")
    result.assert_outcomes(passed=5, errors=2, warnings=1)
    text = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_1_leaves_an_uncommitted_insert*",
        "*left 1 connection(s) to the test database open, 1 of them in a transaction*",
        "*pid * 'leaky-worker', idle in transaction, transaction since *, query: *INSERT INTO products*",
        "*sqlfix ended them (pg_terminate_backend)*Close pools*join threads*wait for processes*",
    ])
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_4_leaves_a_thread_running*",
        "*pid * 'busy-thread', active, transaction since *, query: *pg_sleep(600)*",
    ])
    result.stdout.fnmatch_lines([
        "*LeakedConnectionWarning: sqlfix: this committed test*left 1 connection(s)*open, idle:",
        "*'idle-pool', idle*",
    ])
    assert "test_2_same_key_does_not_wait" not in text.split("short test summary")[-1]


def test_idle_leak_warning_can_be_made_an_error(shop):
    shop.makepyfile('''
import psycopg
from sqlfix import uses

@uses("users.sql", commit=True)
def test_leaves_a_pool(sqlfix_dsn):
    test_leaves_a_pool.kept = psycopg.connect(sqlfix_dsn)

def test_next(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").fetchone() == (1,)
    # the warning raised as an error, yet the restore ran before it: no committed users left
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
    test_leaves_a_pool.kept.close()
''')
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio",
                            "-W", "error::sqlfix.errors.LeakedConnectionWarning")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaves_a_pool*",
                                 "*LeakedConnectionWarning*connection(s) to the test database open, idle*"])


def test_each_engine_and_session_fixture_refuses_the_committed_mode_in_its_own_name(shop):
    shop.makepyfile('''
import pytest
from sqlfix import uses

pytestmark = uses(commit=True)

def test_sync_engine(sqlfix_sqla_engine):
    pass

def test_sync_session(sqlfix_sqla_session):
    pass

@pytest.mark.asyncio
async def test_async_engine(sqlfix_async_engine):
    pass

@pytest.mark.asyncio
async def test_async_session(sqlfix_async_session):
    pass
''')
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio", "-o", "asyncio_mode=strict", "-rE")
    result.assert_outcomes(errors=4)
    errors = {line.split("::")[1].split(" ")[0]: line for line in result.stdout.lines
              if line.startswith("ERROR ")}
    full = result.stdout.str().split("short test summary info")[0]  # CI set: whole lines there
    sections = {name: next(s for s in full.split("_ ERROR at setup of ")[1:] if s.startswith(name))
                for name in errors}
    sync_advice = "create_engine(sqlfix_dsn.replace('postgresql://', 'postgresql+psycopg://', 1))"
    async_advice = "create_async_engine(sqlfix_dsn.replace('postgresql://', 'postgresql+psycopg://', 1))"
    for test, fixture, advice in [
        ("test_sync_engine", "sqlfix_sqla_engine", sync_advice),
        ("test_sync_session", "sqlfix_sqla_session", sync_advice),
        ("test_async_engine", "sqlfix_async_engine", async_advice),
        ("test_async_session", "sqlfix_async_session", async_advice),
    ]:
        text = " ".join(sections[test].split())
        assert f"sqlfix: {fixture} is built on sqlfix's own connection" in text, text
        assert advice in text, text
        if "async" in test:
            assert "await engine.dispose()" in text and "create_engine(" not in text, text
        else:
            assert "create_async_engine" not in text and "await" not in text, text
    assert "sqlfix_async_engine is built" not in " ".join(sections["test_async_session"].split())
    assert "async_sessionmaker(" in " ".join(sections["test_async_session"].split())


def test_a_leak_sqlfix_may_not_end_stops_the_run_saying_so(pytester, fresh_dsn, monkeypatch):
    """sqlfix's user is no superuser; the code under test logs in as one: no pg_terminate_backend."""
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(fresh_dsn, autocommit=True) as admin:
        admin.execute("DO $$ BEGIN CREATE ROLE sqlfix_limited LOGIN; "
                      "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        dbname = admin.info.dbname
        admin.execute(f'ALTER DATABASE "{dbname}" OWNER TO sqlfix_limited')
        admin.execute("ALTER SCHEMA public OWNER TO sqlfix_limited")
        admin.execute("GRANT pg_read_all_stats TO sqlfix_limited")  # sees, may not end
    monkeypatch.setenv("SQLFIX_DSN", make_conninfo(fresh_dsn, user="sqlfix_limited"))
    monkeypatch.setenv("LEAK_DSN", fresh_dsn)  # the server's superuser
    fixtures = pytester.mkdir("fixtures_sql")
    (fixtures / "schema.sql").write_text("CREATE TABLE notes (id serial PRIMARY KEY, body text);\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
                               '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    pytester.makepyfile('''
import os
import psycopg
import pytest
from sqlfix import uses

@uses(commit=True)
def test_1_idle_superuser_connection(sqlfix_conn):
    pytest.idle = psycopg.connect(os.environ["LEAK_DSN"], application_name="admin-idle")

@uses(commit=True)
def test_2_superuser_transaction(sqlfix_conn):
    pytest.leak = psycopg.connect(os.environ["LEAK_DSN"], application_name="admin-writer")
    pytest.leak.execute("INSERT INTO notes (body) VALUES ('uncommitted')")

def test_3_never_runs(sqlfix_conn):
    pass
''')
    result = pytester.runpytest(*NO_RANDOM, "-p", "no:anyio",
                                "-W", "default::sqlfix.errors.LeakedConnectionWarning")
    pytest.leak.close()
    pytest.idle.close()
    del pytest.leak, pytest.idle
    assert result.ret == 3, result.stdout.str()
    text = " ".join(result.stdout.str().split())
    assert "'admin-idle', idle" in text and "could not end" in text, text
    assert ("connections of the code under test are still in a transaction and sqlfix could "
            "not end them (" in text and "terminate" in text), text  # the server's words
    assert "'admin-writer', idle in transaction" in text and "a superuser's a superuser" in text
    assert "INSERT INTO notes" in text
    assert "test_3_never_runs" not in text


def test_the_async_committed_example_of_docs_async(shop):
    shop.makepyfile('''
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlfix import uses

@pytest_asyncio.fixture
async def app_sessions(sqlfix_dsn):
    engine = create_async_engine(sqlfix_dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    yield async_sessionmaker(engine)
    await engine.dispose()

@pytest.mark.asyncio
@uses("users.sql", commit=True)
async def test_1_signup(app_sessions):
    async with app_sessions() as session:
        await session.execute(text("DELETE FROM users"))
        await session.commit()
    async with app_sessions() as session:
        assert (await session.execute(text("SELECT count(*) FROM users"))).scalar() == 0

def test_3_baseline(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
''')
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio", "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=2)  # disposed in time: no warning, no error


def test_a_committed_load_waits_no_longer_than_load_lock_timeout(shop):
    (shop.path / "pyproject.toml").write_text(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
        'lock_timeout = "0"\nload_lock_timeout = "200ms"\n'
        '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    shop.makepyfile('''
import threading
import psycopg
import pytest
from sqlfix import uses

@uses(commit=True)
def test_1_load_behind_a_lock(sqlfix, sqlfix_dsn):
    locker = psycopg.connect(sqlfix_dsn, application_name="locker")
    locker.execute("LOCK TABLE users")
    def release():  # lock_timeout is 0: without the load's own bound the load waits until this
        with psycopg.connect(sqlfix_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [locker.info.backend_pid])
    guard = threading.Timer(20, release)
    guard.start()
    try:
        with pytest.raises(Exception) as caught:
            sqlfix.load("users.sql")
        assert "lock timeout" in str(caught.value), str(caught.value)
    finally:
        guard.cancel()
        locker.close()

def test_2_baseline(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
''')
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio")
    result.assert_outcomes(passed=2)


def test_connections_closed_just_before_the_end_or_opened_by_earlier_tests_are_not_this_tests_leak(shop):
    # A backend stays listed for a moment after its client closed: threads that closed their
    # connections (`with psycopg.connect`) are no leak. A connection an earlier rollback-mode
    # test left in a transaction is ended, but the committed test after it does not fail.
    shop.makepyfile('''
import threading
import psycopg
from sqlfix import uses

def test_1_rollback_mode_leaves_a_transaction(sqlfix_dsn):
    test_1_rollback_mode_leaves_a_transaction.kept = c = psycopg.connect(sqlfix_dsn)
    c.execute("SELECT count(*) FROM users")

@uses("users.sql", commit=True)
def test_2_innocent(sqlfix_dsn):
    pass

@uses("users.sql", commit=True)
def test_3_threads_close_their_connections(sqlfix_dsn):
    def work(i):
        with psycopg.connect(sqlfix_dsn) as c:
            c.execute("UPDATE users SET full_name = full_name || %s", [str(i)])
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

def test_4_close_what_test_1_kept():
    test_1_rollback_mode_leaves_a_transaction.kept.close()  # sqlfix ended its backend
''')
    for _ in range(3):  # the race it guards against is a matter of milliseconds
        result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio",
                                "-W", "error::sqlfix.errors.LeakedConnectionWarning")
        # test_2's body passed; what test_1 left is named at its tear-down, as connected
        # before it (a warning, an error here only because of -W error)
        result.assert_outcomes(passed=4, errors=1)
        text = result.stdout.str()
        assert "ERROR at teardown of test_2_innocent" in text
        assert "in a transaction" not in text.split("ERROR at teardown of test_2_innocent")[1]
        assert "connected before this test began" in text
        assert "test_3_threads_close_their_connections" not in text.split("short test summary")[-1]


def test_an_earlier_connection_in_a_transaction_is_not_called_idle(shop):
    shop.makepyfile('''
import psycopg
import pytest
from sqlfix import uses

def test_1_leaves_a_transaction_open(sqlfix_dsn):
    pytest.kept = psycopg.connect(sqlfix_dsn, application_name="earlier")
    pytest.kept.execute("SELECT 1")

@uses("users.sql", commit=True)
def test_2_committed(sqlfix_conn):
    pass
''')
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio",
                            "-W", "default::sqlfix.errors.LeakedConnectionWarning")
    pytest.kept.close()
    del pytest.kept
    result.assert_outcomes(passed=2)
    text = " ".join(result.stdout.str().split())
    assert "left 1 connection(s) to the test database open: pid" in text, text
    assert "'earlier', idle in transaction" in text and "connected before this test" in text


COMMITTED_DDL = '''
import psycopg
import pytest
from sqlfix import uses

@uses("users.sql", commit=True)
def test_1_drops_a_table(sqlfix_conn):
    sqlfix_conn.execute("DROP TABLE order_items")
    sqlfix_conn.commit()

@uses(commit=True)
def test_2_renames_a_table(sqlfix_dsn):
    with psycopg.connect(sqlfix_dsn) as other:   # through another connection
        other.execute("ALTER TABLE orders RENAME TO orders_old")

@uses(commit=True)
def test_3_moves_a_table_and_adds_a_column(sqlfix_conn):
    sqlfix_conn.execute("CREATE SCHEMA elsewhere; ALTER TABLE products SET SCHEMA elsewhere")
    sqlfix_conn.execute("ALTER TABLE users ADD COLUMN extra int")
    sqlfix_conn.execute("INSERT INTO users (email, full_name, created_at) VALUES ('x@y', 'X', now())")
    sqlfix_conn.commit()

@uses("orders.sql", commit=True)
def test_4_baseline_committed(sqlfix_dsn):
    with psycopg.connect(sqlfix_dsn) as other:
        assert other.execute("SELECT count(*) FROM order_items").fetchone() > (0,)
        other.execute("DELETE FROM order_items")

def test_5_baseline(sqlfix_conn):
    assert sqlfix_conn.execute(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orders), "
        "(SELECT count(*) FROM order_items), (SELECT count(*) FROM products)").fetchone() == (0, 0, 0, 0)
    assert sqlfix_conn.execute(
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'extra'").fetchone() == (0,)
'''


@pytest.mark.parametrize("workers", [(), ("-n", "2")])
def test_a_committed_test_that_drops_or_renames_a_table_gets_the_database_rebuilt(shop, workers):
    """Committed DDL that the change fingerprints cannot read past (a table gone, renamed,
    moved) used to stop the run with the fingerprint query's raw error; now the whole
    restore finds the schema change and rebuilds, as after an escape, and says so."""
    shop.makepyfile(COMMITTED_DDL)
    result = shop.runpytest(*NO_RANDOM, *workers, "-W", "always::sqlfix.errors.SchemaRebuiltWarning")
    text = result.stdout.str()
    assert "could not be restored" not in text and "INTERNALERROR" not in text, text
    result.assert_outcomes(passed=5, warnings=3)
    assert text.count("SchemaRebuiltWarning") >= 3, text
    assert "sqlfix rebuilt the test database" in text, text
    assert "the test committed changes to the schema" in text and "Keep DDL" in text, text


LEFT_RUNNING = '''
import asyncio
import threading
import time

import pytest
from sqlfix import uses

kept = []

@uses("users.sql", commit=True)
def test_1_thread_left_on_sqlfix_conn(sqlfix_conn):
    started = threading.Event()
    def work():
        started.set()
        sqlfix_conn.execute("SELECT pg_sleep(60)")
    threading.Thread(target=work, daemon=True).start()
    started.wait()
    time.sleep(0.2)

@uses("users.sql", commit=True)
@pytest.mark.asyncio(loop_scope="module")
async def test_2_task_left_on_sqlfix_aconn(sqlfix_aconn):
    kept.append(asyncio.get_running_loop().create_task(sqlfix_aconn.execute(
        "INSERT INTO products (sku, name, price_cents) SELECT 'late', 'L', 1 FROM pg_sleep(60)")))
    await asyncio.sleep(0.2)

@pytest.fixture
def leaves_a_thread(sqlfix_conn):
    yield
    threading.Thread(target=lambda: sqlfix_conn.execute("SELECT pg_sleep(60)"), daemon=True).start()
    time.sleep(0.3)

@uses(commit=True)
def test_3_left_by_a_fixture_tear_down(leaves_a_thread):
    pass

@pytest.mark.asyncio(loop_scope="module")
async def test_4_baseline(sqlfix_aconn):
    await asyncio.sleep(0.1)
    assert kept[0].done()
    cur = await sqlfix_aconn.execute("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM products)")
    assert await cur.fetchone() == (0, 0)
'''


def test_a_statement_left_running_on_sqlfixs_connection_fails_a_committed_test(shop):
    """As in the rollback mode: a task or thread still running a statement on sqlfix_conn /
    sqlfix_aconn at a committed test's end is stopped and fails the test (it passed silently,
    and tear-down waited for the statement, up to statement_timeout)."""
    shop.makepyfile(LEFT_RUNNING)
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio", "-o", "asyncio_mode=strict",
                            "-W", "ignore::pytest.PytestUnhandledThreadExceptionWarning")
    text = result.stdout.str()
    result.assert_outcomes(passed=2, failed=2, errors=1)
    # counted in the failures only: with CI set, pytest's summary repeats whole messages
    assert text.split("short test summary info")[0].count(
        "a statement was still running on sqlfix's connection") == 3, text
    assert "ERROR at teardown of test_3_left_by_a_fixture_tear_down" in text, text


VIEWS_SCHEMA = """
CREATE TABLE base (id int, kind text);
CREATE TABLE child (extra text) INHERITS (base);
INSERT INTO child VALUES (1, 'c', 'x');
CREATE TABLE src (n int);
INSERT INTO src VALUES (1), (2);
CREATE MATERIALIZED VIEW fresh AS SELECT count(*) AS n FROM src;
CREATE MATERIALIZED VIEW stale AS SELECT count(*) AS n FROM child;
INSERT INTO child VALUES (2, 'c', 'y');
"""


def test_inherited_tables_and_materialized_views_are_restored(pytester):
    fixtures = pytester.mkdir("fixtures_sql")
    (fixtures / "schema.sql").write_text(VIEWS_SCHEMA)
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
                               '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    pytester.makepyfile('''
import pytest
from sqlfix import uses

BASELINE = ("SELECT (SELECT count(*) FROM ONLY base), (SELECT count(*) FROM ONLY child), "
            "(SELECT n FROM fresh), (SELECT n FROM stale)")

def check(conn):
    assert conn.execute(BASELINE).fetchone() == (0, 2, 2, 1)

@uses(commit=True)
def test_1_writes_the_parent_only(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO base VALUES (9, 'p')")
    sqlfix_conn.commit()

def test_2_children_kept(sqlfix_conn):
    check(sqlfix_conn)

@uses(commit=True)
def test_3_refreshes_a_view(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO src VALUES (3)")
    sqlfix_conn.execute("REFRESH MATERIALIZED VIEW fresh")
    sqlfix_conn.commit()
    assert sqlfix_conn.execute("SELECT n FROM fresh").fetchone() == (3,)

def test_4_baseline(sqlfix_conn):
    check(sqlfix_conn)

@uses(commit=True)
def test_5_refreshes_a_stale_view(sqlfix_conn):
    sqlfix_conn.execute("REFRESH MATERIALIZED VIEW stale")
    sqlfix_conn.commit()

def test_6_baseline(sqlfix_conn):
    check(sqlfix_conn)

def test_7_escapes_a_refresh(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO src VALUES (3); REFRESH MATERIALIZED VIEW fresh; COMMIT")

def test_8_baseline(sqlfix_conn):
    check(sqlfix_conn)
''')
    result = pytester.runpytest(*NO_RANDOM, "-p", "no:anyio", "-W", "always")
    result.assert_outcomes(passed=7, failed=1)  # test_7: the escape
    out = result.stdout.str()
    # a view refreshed over restored tables is its baseline again: no rebuild for test_3
    assert out.count("SchemaRebuiltWarning: sqlfix") == 1
    result.stdout.fnmatch_lines(["*sqlfix restored the baseline: *refreshed 1 materialized view*"])
    result.stdout.fnmatch_lines(["*test_5_refreshes_a_stale_view*",
                                 "*SchemaRebuiltWarning*",
                                 "*materialized view public.stale*"])


def test_a_server_that_dies_during_a_committed_test_fails_it_saying_so(shop):
    shop.makepyfile('''
import os, signal, time
from pathlib import Path

import psycopg
from sqlfix import uses

@uses("users.sql", commit=True)
def test_1_the_server_dies(sqlfix_conn, sqlfix_dsn):
    data = sqlfix_conn.execute("SHOW data_directory").fetchone()[0]
    with psycopg.connect(sqlfix_dsn) as app:
        app.execute("INSERT INTO products (sku, name, price_cents) VALUES ('a', 'A', 1)")
    os.kill(int((Path(data) / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
    time.sleep(0.5)

def test_2_baseline(sqlfix_conn, sqlfix_dsn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
    with psycopg.connect(sqlfix_dsn) as app:
        assert app.execute("SELECT count(*) FROM products").fetchone() == (0,)
''')
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio")
    result.assert_outcomes(passed=2, errors=1)  # an error at tear-down, as for a leak
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_1_the_server_dies*",
        "*the embedded PostgreSQL exited during this committed test*",
        "*the embedded PostgreSQL was killed by SIGKILL: its log*",
        "*sqlfix started the embedded PostgreSQL again (same DSN) and built the test database again*",
    ])


def test_a_prepared_transaction_a_committed_test_leaves_is_rolled_back_and_named(shop):
    # A prepared transaction outlives its session: ending the test's connections left it
    # with its rows and locks, and the restore (which truncates only the tables whose
    # committed contents changed) did not look. The next tests met its locks.
    shop.makepyprojecttoml(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\nlock_timeout = "5s"\n'
        '[tool.sqlfix.server_settings]\nmax_prepared_transactions = 5\n'
        '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    shop.makepyfile('''
import psycopg
from sqlfix import uses

@uses("users.sql", commit=True)
def test_1_prepares_on_sqlfix_conn(sqlfix_conn):
    sqlfix_conn.execute("DELETE FROM users WHERE email LIKE 'a%'")
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('p', 'P', 1)")
    sqlfix_conn.execute("PREPARE TRANSACTION 'left_on_sqlfix_conn'")

@uses("users.sql", commit=True)
def test_2_prepares_elsewhere(sqlfix_dsn):
    other = psycopg.connect(sqlfix_dsn)
    other.tpc_begin("order-42")
    other.execute("INSERT INTO products (sku, name, price_cents) VALUES ('q', 'Q', 1)")
    other.execute("UPDATE users SET full_name = 'changed'")
    other.tpc_prepare()
    other.close()  # the prepared transaction stays, with its rows and locks

@uses("users.sql", commit=True)
def test_3_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() == (0,)
    assert sqlfix_conn.execute("SELECT count(*), count(*) FILTER (WHERE full_name = "
                               "'changed') FROM users").fetchone() == (4, 0)
    sqlfix_conn.execute("TRUNCATE products CASCADE")  # no lock held by a prepared one
    sqlfix_conn.execute("UPDATE users SET full_name = 'mine'")
    sqlfix_conn.commit()

def test_4_rollback_mode_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() == (0,)
    assert sqlfix_conn.execute("SELECT (SELECT count(*) FROM users), "
                               "(SELECT count(*) FROM products)").fetchone() == (0, 0)
''')
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=4, errors=2)  # two fail at tear-down, after passing
    out = result.stdout.str().split("short test summary info")[0]  # CI set: repeated there
    assert out.count("left 1 prepared transaction(s) on the test database; sqlfix rolled "
                     "them back before restoring the baseline") == 2
    for gid, test in (("left_on_sqlfix_conn", "test_1_prepares_on_sqlfix_conn"),
                      ("order-42", "test_2_prepares_elsewhere")):
        result.stdout.fnmatch_lines([
            f"*ERROR at teardown of {test}*",
            f"*sqlfix rolled back a prepared transaction this run left behind: '{gid}' *"])
    assert "could not be restored" not in out
