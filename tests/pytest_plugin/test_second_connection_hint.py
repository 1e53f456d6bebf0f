"""The second-connection hint: a failed rollback-mode test that used another connection to the
test database is told so (whenever that connection was opened, whatever it is named, in
set-up, call or tear-down); a failure with no such connection, or on sqlfix's own, is not."""

from __future__ import annotations

import re

import psycopg  # noqa: F401  (imported once in the outer session: see test_async.py)
import pytest
import sqlalchemy  # noqa: F401  (SQLAlchemy does not survive being imported twice)
from helpers import NO_RANDOM

SECTION = "sqlfix: other connections"

NO_HINT = '''
import asyncio
import psycopg
import pytest
from sqlfix import uses

# a failure on sqlfix's own connection (a task left running on it, a renamed session)
@pytest.mark.asyncio
@uses("users.sql")
async def test_a1_own_connection_busy(sqlfix_aconn):
    await sqlfix_aconn.execute("SET application_name = 'my-app'")
    task = asyncio.get_running_loop().create_task(sqlfix_aconn.execute("SELECT pg_sleep(0.2)"))
    await asyncio.sleep(0.05)
    try:
        assert False, "fails while its task still runs on sqlfix_aconn"
    finally:
        await task

@uses("users.sql")
def test_a2_own_connection_named_like_an_app(sqlfix_conn):
    sqlfix_conn.execute("SET application_name = 'web'")
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (5,)

# connections of earlier tests, idle during the failing one
@uses("users.sql")
def test_b1_passes_with_a_second_connection(sqlfix_dsn):
    with psycopg.connect(sqlfix_dsn) as conn:
        conn.execute("SELECT 1")

def test_b2_passes_and_leaves_a_pool(sqlfix_dsn):
    pytest.kept = psycopg.connect(sqlfix_dsn, application_name="kept-pool")

@uses("users.sql")
def test_b3_fails_on_its_own_while_the_pool_idles(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (5,)

def test_b4_closes_the_pool():
    pytest.kept.close()

# sqlfix's own restore and verify connections
@uses("users.sql")
def test_c1_escapes(sqlfix_conn):
    sqlfix_conn.execute("COMMIT")

def test_c2_writes_behind_the_verifier(sqlfix_dsn):
    with psycopg.connect(sqlfix_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('v', 'V', 1)")

@uses(commit=True)
def test_c3_committed(sqlfix_dsn):
    with psycopg.connect(sqlfix_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('c', 'C', 1)")

@uses("users.sql")
def test_c4_fails_on_its_own(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (1,)

# a plain failing test, nothing else connected
@uses("users.sql")
def test_d1_plain_failure(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (5,)

def test_d2_plain_failure_without_a_connection(sqlfix):
    assert False, "no database in sight"

# fails twice (call, then a fixture's tear-down): the first look's own connection is sqlfix's
@pytest.fixture
def breaks_on_tear_down():
    yield
    raise RuntimeError("tear-down breaks too")

@uses("users.sql")
def test_d3_fails_in_call_and_tear_down(sqlfix_conn, breaks_on_tear_down):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (5,)

@pytest.mark.asyncio
@uses("users.sql")
async def test_d4_task_left_and_a_failure(sqlfix_aconn):
    async def fails():
        await asyncio.sleep(0.05)
        raise ValueError("fails while a statement runs")
    await asyncio.gather(sqlfix_aconn.execute("SELECT pg_sleep(1)"), fails())
'''

HINTED = '''
import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlfix import uses

@pytest.fixture(scope="module")
def module_conn(sqlfix_dsn):                      # opened by the first test that asks for it
    with psycopg.connect(sqlfix_dsn, application_name="module-conn") as conn:
        yield conn

@pytest.fixture(scope="session")
def app_engine(sqlfix_dsn):                       # the application's pool, made once
    engine = create_engine(sqlfix_dsn.replace("postgresql://", "postgresql+psycopg://", 1),
                           connect_args={"application_name": "app-pool"})
    yield engine
    engine.dispose()

def test_e1_passes_and_opens_them(module_conn, app_engine):
    module_conn.execute("SELECT 1")
    with app_engine.connect() as conn:
        conn.execute(text("SELECT 1"))

@uses("users.sql")
def test_e2_module_connection_of_an_earlier_test(sqlfix_conn, module_conn):
    assert module_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)

@uses("users.sql")
def test_e3_pool_of_a_session_fixture(sqlfix_conn, app_engine):
    with app_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 4

# this test's own second connections, one left open, one closed
@uses("users.sql")
def test_t1_second_connections(sqlfix_dsn, sqlfix_conn):
    with psycopg.connect(sqlfix_dsn) as other:
        seen = other.execute("SELECT count(*) FROM users").fetchone()[0]
    pytest.kept = psycopg.connect(sqlfix_dsn)
    assert seen == 4

def test_t2_close():
    pytest.kept.close()

# a connection named like sqlfix's own is still the test's
@uses("users.sql")
def test_n1_named_sqlfix(sqlfix_dsn, sqlfix_conn):
    pytest.kept = psycopg.connect(sqlfix_dsn, application_name="sqlfix")
    with psycopg.connect(sqlfix_dsn, application_name="sqlfix-worker") as other:
        other.execute("SELECT 1")
    assert pytest.kept.execute("SELECT count(*) FROM users").fetchone() == (4,)

def test_n2_close():
    pytest.kept.close()

# so many connections that sqlfix cannot open one to look
@uses("users.sql")
def test_m1_every_slot_taken(sqlfix_dsn, sqlfix_conn):
    pytest.conns = []
    try:
        while len(pytest.conns) < 1000:
            pytest.conns.append(psycopg.connect(sqlfix_dsn))
    except psycopg.OperationalError:
        pass
    assert False, f"opened {len(pytest.conns)}"

def test_m2_close():
    for conn in pytest.conns:
        conn.close()

# failures in set-up and in tear-down
@pytest.fixture
def admin_count(sqlfix_conn, sqlfix_dsn):
    with psycopg.connect(sqlfix_dsn, application_name="setup-check") as other:
        assert other.execute("SELECT count(*) FROM users").fetchone() == (4,)

@uses("users.sql")
def test_s1_setup_fails(admin_count):
    pass

@pytest.fixture
def audit(sqlfix_conn, module_conn):
    yield
    assert module_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)

@uses("users.sql")
def test_s2_teardown_fails(audit):
    pass

@uses("users.sql")
def test_s3_fails_in_call_and_teardown(audit, module_conn):
    assert module_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)
'''


def _blocks(text: str) -> dict[str, str]:
    """Each failure or error block of pytest's output, by test name ("setup test_x" for an
    error at set-up, "teardown test_x" at tear-down)."""
    blocks: dict[str, str] = {}
    for block in re.split(r"\n(?=_{3,} )", text):
        head = block.split("\n", 1)[0]
        found = re.match(r"_+ (?:ERROR at (setup|teardown) of )?(test_\w+)", head)
        if found:
            key = f"{found[1]} {found[2]}" if found[1] else found[2]
            blocks[key] = block.split("short test summary info")[0]
    return blocks


def _hint(block: str) -> str:
    return " ".join(block.split(SECTION, 1)[1].split()) if SECTION in block else ""


def test_no_hint_without_another_connection_used_during_the_test(shop):
    shop.makepyfile(NO_HINT)
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio", "-o", "asyncio_mode=strict",
                            "--sqlfix-verify")
    del pytest.kept
    blocks = _blocks(result.stdout.str())
    expected = {"test_a1_own_connection_busy": "fails while its task still runs",
                "test_a2_own_connection_named_like_an_app": "== (5,)",
                "test_b3_fails_on_its_own_while_the_pool_idles": "== (5,)",
                "test_c1_escapes": "the rollback boundary did not hold",
                "teardown test_c2_writes_behind_the_verifier": "differs from its state",
                "test_c4_fails_on_its_own": "== (1,)",
                "test_d1_plain_failure": "== (5,)",
                "test_d2_plain_failure_without_a_connection": "no database in sight",
                "test_d3_fails_in_call_and_tear_down": "== (5,)",
                "teardown test_d3_fails_in_call_and_tear_down": "tear-down breaks too",
                "test_d4_task_left_and_a_failure": "fails while a statement runs",
                "teardown test_d4_task_left_and_a_failure": "still running"}
    for name, what in expected.items():
        assert what in blocks.get(name, ""), (name, result.stdout.str())
        assert SECTION not in blocks[name], (name, blocks[name])
    result.assert_outcomes(passed=5, failed=9, errors=3)


def test_the_hint_names_connections_used_during_the_failing_test_whenever_opened(shop):
    shop.makepyfile(HINTED)
    result = shop.runpytest(*NO_RANDOM, "-p", "no:anyio")
    del pytest.kept, pytest.conns
    text = result.stdout.str()
    blocks = _blocks(text)
    earlier = ("other connection(s) to the test database opened earlier (by an earlier "
               "test, a module- or session-scoped fixture, a pool, a fixture set up before "
               "sqlfix's) are open and ran statements during this test")
    hint = _hint(blocks.get("test_e2_module_connection_of_an_earlier_test", ""))
    assert f"1 {earlier} (pid " in hint and "'module-conn')" in hint, text
    assert "@uses(..., commit=True)" in hint and "app-pool" not in hint, hint
    hint = _hint(blocks.get("test_e3_pool_of_a_session_fixture", ""))
    assert f"1 {earlier}" in hint and "'app-pool')" in hint and "module-conn" not in hint, text

    hint = _hint(blocks.get("test_t1_second_connections", ""))
    assert ("1 other connection(s) to the test database opened during this test are still "
            "open (pid ") in hint and "(no application_name)" in hint, text
    assert "1 other connection(s) to the test database were opened and closed" in hint, hint

    # the name is the test's to choose: sqlfix knows its own connection by its pid
    hint = _hint(blocks.get("test_n1_named_sqlfix", ""))
    assert "opened during this test are still open (pid " in hint and "'sqlfix')" in hint, text
    assert "1 other connection(s) to the test database were opened and closed" in hint, hint

    hint = _hint(blocks.get("test_m1_every_slot_taken", ""))
    assert "has no free connection slot left for sqlfix to look" in hint, text
    assert "too many clients already" in hint and "commit=True" in hint, hint

    hint = _hint(blocks.get("setup test_s1_setup_fails", ""))
    assert "1 other connection(s) to the test database were opened and closed" in hint, text
    hint = _hint(blocks.get("teardown test_s2_teardown_fails", ""))
    assert f"1 {earlier}" in hint and "'module-conn')" in hint, text
    # once per test: the call's report has it, the tear-down's does not repeat it
    assert f"1 {earlier}" in _hint(blocks.get("test_s3_fails_in_call_and_teardown", "")), text
    assert "teardown test_s3_fails_in_call_and_teardown" in blocks, text
    assert SECTION not in blocks["teardown test_s3_fails_in_call_and_teardown"], text
    assert text.count(f"{SECTION} -") == 8, text
    result.assert_outcomes(passed=5, failed=6, errors=3)  # s2 passes its call
