"""Code under test that manages transactions, escapes, aborted transactions, sequences."""

from __future__ import annotations

NO_RANDOM = ("-p", "no:randomly")

COUNT = 'def count(conn, table):\n    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]\n'


def test_commit_rollback_and_transaction_blocks_stay_inside_the_boundary(shop):
    shop.makepyfile(
        COUNT
        + """
from sqlfix import uses

def service_that_commits(conn):
    conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('new', 'New', 100)")
    conn.commit()

def service_that_rolls_back(conn):
    conn.execute("DELETE FROM users")
    conn.rollback()

@uses("users.sql")
def test_commit_then_rollback(sqlfix_conn):
    service_that_commits(sqlfix_conn)
    service_that_rolls_back(sqlfix_conn)
    # the code's rollback undid its own work, not the fixtures nor the committed row
    assert count(sqlfix_conn, "users") == 4
    assert count(sqlfix_conn, "products") == 1

@uses("users.sql")
def test_transaction_block(sqlfix_conn):
    with sqlfix_conn.transaction():
        sqlfix_conn.execute("DELETE FROM users WHERE email = 'bob@example.com'")
    try:
        with sqlfix_conn.transaction():
            sqlfix_conn.execute("DELETE FROM users")
            raise RuntimeError("undo this block")
    except RuntimeError:
        pass
    assert count(sqlfix_conn, "users") == 3

def test_nothing_survived(sqlfix_conn):
    assert count(sqlfix_conn, "users") == 0
    assert count(sqlfix_conn, "products") == 0
"""
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=3)


def test_an_escaped_commit_fails_the_test_and_the_next_test_starts_clean(shop):
    shop.makepyfile(
        COUNT
        + """
from sqlfix import uses

@uses("users.sql")
def test_1_escapes(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('x', 'y', 1)")
    sqlfix_conn.execute("COMMIT")
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('z', 'y', 1)")

def test_2_clean(sqlfix_conn):
    assert count(sqlfix_conn, "users") == 0
    assert count(sqlfix_conn, "products") == 0

def test_3_closes_the_connection(sqlfix_conn):
    sqlfix_conn.close()

def test_4_clean_again(sqlfix_conn):
    assert count(sqlfix_conn, "users") == 0
"""
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "*test_1_escapes*",
        "*rollback boundary did not hold. The test's transaction was COMMITTED*",
        "*sqlfix restored the baseline: truncated 4 table(s)*",
    ])
    result.stdout.fnmatch_lines(["*The connection was closed during the test*"])


def test_an_aborted_transaction_ends_cleanly(shop):
    shop.makepyfile(
        COUNT
        + """
import psycopg
import pytest
from sqlfix import uses

@uses("users.sql")
def test_1_statement_fails_and_is_left_aborted(sqlfix_conn):
    with pytest.raises(psycopg.errors.UniqueViolation):
        sqlfix_conn.execute(
            "INSERT INTO users (email, full_name, created_at) VALUES ('alice@example.com', 'x', now())")

@uses("users.sql")
def test_2_code_recovers_with_rollback(sqlfix_conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        sqlfix_conn.execute("UPDATE users SET email = 'no-at-sign'")
    sqlfix_conn.rollback()
    assert count(sqlfix_conn, "users") == 4

def test_3_clean(sqlfix_conn):
    assert count(sqlfix_conn, "users") == 0
"""
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=3)


def test_default_ids_are_the_same_whichever_test_runs_first(shop):
    shop.makepyfile(
        """
import pytest

def insert(conn):
    return conn.execute(
        "INSERT INTO products (sku, name, price_cents) VALUES ('a', 'A', 1), ('b', 'B', 1) RETURNING id"
    ).fetchall()

def test_a(sqlfix_conn):
    assert insert(sqlfix_conn) == [(1,), (2,)]

def test_b(sqlfix_conn):
    assert insert(sqlfix_conn) == [(1,), (2,)]
"""
    )
    shop.runpytest("-p", "randomly").assert_outcomes(passed=2)
    shop.runpytest("-p", "randomly", "-p", "no:cacheprovider", "--randomly-seed=1").assert_outcomes(passed=2)


def test_reset_sequences_can_be_turned_off(shop):
    (shop.path / "pyproject.toml").write_text(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\nreset_sequences = false\n')
    shop.makepyfile(
        """
def insert(conn):
    return conn.execute(
        "INSERT INTO products (sku, name, price_cents) VALUES ('a', 'A', 1) RETURNING id"
    ).fetchone()[0]

def test_a(sqlfix_conn):
    assert insert(sqlfix_conn) == 1

def test_b(sqlfix_conn):
    assert insert(sqlfix_conn) == 2
"""
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=2)


def test_schema_rows_survive_an_escape_restore(pytester):
    (pytester.path / "schema.sql").write_text(
        "CREATE TABLE statuses (code text PRIMARY KEY, id int GENERATED ALWAYS AS IDENTITY);\n"
        "INSERT INTO statuses (code) VALUES ('new'), ('done');\n"
    )
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    pytester.makepyfile(
        """
def test_1_escapes(sqlfix_conn):
    sqlfix_conn.execute("DELETE FROM statuses WHERE code = 'new'; COMMIT")

def test_2_restored(sqlfix_conn):
    rows = sqlfix_conn.execute("SELECT code, id FROM statuses ORDER BY id").fetchall()
    assert rows == [("new", 1), ("done", 2)]
    assert sqlfix_conn.execute("INSERT INTO statuses (code) VALUES ('x') RETURNING id").fetchone() == (3,)
"""
    )
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=1, failed=1)
