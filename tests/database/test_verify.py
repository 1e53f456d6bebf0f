"""The isolation verifier (--sqlfix-verify, verify = true) against the real database."""

from __future__ import annotations

from helpers import NO_RANDOM

SCHEMA = (
    "CREATE TABLE kinds (code text PRIMARY KEY);\n"
    "INSERT INTO kinds VALUES ('a'), ('b');\n"
    "CREATE TABLE base (id int);\nCREATE TABLE child () INHERITS (base);\n"
    "INSERT INTO child VALUES (1);\n"
    "CREATE SEQUENCE tickets;\n"
)
LEAKS = """
import psycopg

def other(conn):
    return psycopg.connect(conn.info.dsn, autocommit=True)

def test_1_clean(sqlfix_conn):
    sqlfix_conn.execute("DELETE FROM kinds; INSERT INTO child VALUES (2)")

def test_2_writes_through_another_connection(sqlfix_conn):
    with other(sqlfix_conn) as c:
        c.execute("INSERT INTO kinds VALUES ('leak')")

def test_3_updates_through_another_connection(sqlfix_conn):
    with other(sqlfix_conn) as c:
        c.execute("UPDATE child SET id = 5")

def test_4_advances_a_sequence_elsewhere(sqlfix_conn):
    with other(sqlfix_conn) as c:
        c.execute("SELECT setval('tickets', 40)")

def test_5_creates_a_table_elsewhere(sqlfix_conn):
    with other(sqlfix_conn) as c:
        c.execute("CREATE TABLE stray (id int)")

def test_6_sees_the_baseline(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM kinds").fetchone() == (2,)
    assert sqlfix_conn.execute("SELECT id FROM child").fetchall() == [(1,)]
"""


def test_the_verifier_names_the_table_and_the_change_and_restores(pytester):
    (pytester.path / "schema.sql").write_text(SCHEMA)
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    pytester.makepyfile(LEAKS)
    result = pytester.runpytest(*NO_RANDOM, "--sqlfix-verify")
    # 2, 3 and 5 pass their call and error at tear-down; sqlfix's own sequence reset
    # puts the sequence of 4 back before the verifier looks
    result.assert_outcomes(passed=6, errors=3)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_2_writes_through_another_connection*",
        "*sqlfix --sqlfix-verify: after this test the database differs*",
        "*table public.kinds: 2 -> 3 rows*",
        "*sqlfix restored the baseline*",
    ])
    result.stdout.fnmatch_lines(["*table public.child: same 1 row, different contents*"])
    result.stdout.fnmatch_lines([  # a schema change is not restored by rows: rebuilt
        "*ERROR at teardown of test_5_creates_a_table_elsewhere*",
        "*the schema's objects changed: see below*",
        "*sqlfix rebuilt the test database*", "*table public.stray was created*"])
    assert "public.base" not in result.stdout.str()  # the child's rows count once, in child


def test_without_the_verifier_a_leak_goes_unnoticed_and_the_key_turns_it_on(pytester):
    (pytester.path / "schema.sql").write_text(SCHEMA)
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    pytester.makepyfile(LEAKS.replace("test_6_sees", "xtest_6_sees"))
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=5)
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\nverify = true\n')
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=5, errors=3)


def test_with_reset_sequences_off_the_verifier_leaves_sequences_alone(pytester):
    (pytester.path / "schema.sql").write_text(SCHEMA)
    pytester.makepyprojecttoml(
        '[tool.sqlfix]\nschema = ["schema.sql"]\nreset_sequences = false\nverify = true\n')
    pytester.makepyfile(
        """
def test_draws_a_ticket(sqlfix_conn):
    sqlfix_conn.execute("SELECT nextval('tickets')")
"""
    )
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=1)


def test_the_verifier_sees_a_materialized_view_refreshed_elsewhere(pytester):
    # The source rows are back where they were; only the view keeps the leak.
    (pytester.path / "schema.sql").write_text(
        "CREATE TABLE src (id int);\nINSERT INTO src VALUES (1), (2);\n"
        "CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM src;\n"
        "CREATE MATERIALIZED VIEW empty_mv AS SELECT 1 AS one WITH NO DATA;\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    pytester.makepyfile("""
import psycopg

def test_1_refreshes_elsewhere(sqlfix_conn):
    with psycopg.connect(sqlfix_conn.info.dsn, autocommit=True) as c:
        c.execute("INSERT INTO src VALUES (3); REFRESH MATERIALIZED VIEW mv; DELETE FROM src WHERE id = 3")

def test_2_sees_the_baseline(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT n FROM mv").fetchone() == (2,)
""")
    result = pytester.runpytest(*NO_RANDOM, "--sqlfix-verify")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_1_refreshes_elsewhere*",
        "*materialized view public.mv: same 1 row, different contents*"])
    assert "empty_mv" not in result.stdout.str()  # never populated: not read
