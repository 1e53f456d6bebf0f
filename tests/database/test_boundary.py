"""Code under test that manages transactions, escapes, aborted transactions, sequences."""

from __future__ import annotations

import psycopg  # imported here, before any in-process pytester run snapshots sys.modules
from helpers import NO_RANDOM

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
        "*sqlfix restored the baseline: truncated 4 tables*",
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


def test_connection_settings_a_test_changes_do_not_reach_the_next(shop):
    shop.makepyfile(
        """
from psycopg.rows import dict_row

def test_1_sets_a_row_factory(sqlfix_conn):
    sqlfix_conn.row_factory = dict_row
    assert sqlfix_conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}

def test_2_gets_tuples_again(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT 1").fetchone() == (1,)
"""
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=2)


def test_escapes_in_fixture_setup_or_teardown_are_caught_and_undone(shop):
    shop.makepyfile(
        COUNT
        + """
import pytest
from sqlfix import uses

@pytest.fixture
def commits_in_teardown(sqlfix_conn):
    yield
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('leak', 'L', 1)")
    sqlfix_conn.execute("COMMIT")

@pytest.fixture
def commits_then_fails_in_setup(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('leak2', 'L', 1)")
    sqlfix_conn.execute("COMMIT")
    raise RuntimeError("setup broke")

@uses("users.sql")
def test_1(commits_in_teardown):
    pass

def test_2(commits_then_fails_in_setup):
    pass

def test_3_clean(sqlfix_conn):
    assert count(sqlfix_conn, "products") == 0
    assert count(sqlfix_conn, "users") == 0
"""
    )
    result = shop.runpytest(*NO_RANDOM)
    # test_1 passes, then errors at teardown; test_2 errors in setup and at teardown
    result.assert_outcomes(passed=2, errors=3)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_1*", "*rollback boundary did not hold*"])


def test_an_escape_is_reported_even_when_the_test_skips_or_xfails(shop):
    shop.makepyfile(
        """
import pytest

def test_skips(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('x', 'y', 1); COMMIT")
    pytest.skip("not today")

@pytest.mark.xfail(reason="known")
def test_xfails(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('z', 'y', 1); COMMIT")
    assert False
"""
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(skipped=1, xfailed=1, errors=2)
    assert result.stdout.str().count("rollback boundary did not hold") >= 2


def test_commit_outside_any_boundary_is_refused(shop):
    shop.makepyfile(
        COUNT
        + """
import psycopg
import pytest

LEAKED = []

def test_1_keeps_a_reference(sqlfix_conn):
    LEAKED.append(sqlfix_conn)

def test_2_uses_it_without_asking():
    conn = LEAKED[0]
    conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('leak', 'L', 1)")
    with pytest.raises(psycopg.ProgrammingError, match="outside a test's rollback boundary"):
        conn.commit()

def test_3_clean(sqlfix_conn):
    assert count(sqlfix_conn, "products") == 0
"""
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=3)


def test_commit_checks_deferred_constraints_and_fixtures_do_too(pytester):
    (pytester.path / "schema.sql").write_text(
        "CREATE TABLE parents (id int PRIMARY KEY);\n"
        "CREATE TABLE children (id int PRIMARY KEY, parent_id int NOT NULL\n"
        "  REFERENCES parents DEFERRABLE INITIALLY DEFERRED);\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "orphan.sql").write_text(
        "INSERT INTO parents VALUES (1);\nINSERT INTO children VALUES (1, 999);\n")
    pytester.makepyfile(
        """
import psycopg
import pytest
from sqlfix import uses

def test_commit_fails_like_a_real_commit(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO parents VALUES (7)")
    sqlfix_conn.commit()
    sqlfix_conn.execute("INSERT INTO children VALUES (1, 42)")  # deferred: accepted for now
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        sqlfix_conn.commit()
    # as after a failed COMMIT, the work since the last commit is gone, the rest stays
    assert sqlfix_conn.execute("SELECT count(*) FROM children").fetchone() == (0,)
    assert sqlfix_conn.execute("SELECT count(*) FROM parents").fetchone() == (1,)

@uses("orphan.sql")
def test_orphan_fixture():
    pass
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixtures_sql/orphan.sql:2:1: SQLF701 server rejected the statement: 23503*"])


def test_transactional_sequence_changes_in_a_test_are_undone_too(shop):
    shop.makepyfile(
        """
def ins(conn):
    return conn.execute(
        "INSERT INTO products (sku, name, price_cents) VALUES (gen_random_uuid()::text, 'A', 1) RETURNING id"
    ).fetchone()[0]

def test_1_truncates(sqlfix_conn):
    ins(sqlfix_conn), ins(sqlfix_conn)
    sqlfix_conn.execute("TRUNCATE products, order_items RESTART IDENTITY")

def test_2_fresh(sqlfix_conn):
    assert ins(sqlfix_conn) == 1

def test_3_drops_a_table(sqlfix_conn):
    ins(sqlfix_conn)
    sqlfix_conn.execute("DROP TABLE order_items")

def test_4_fresh(sqlfix_conn):
    assert ins(sqlfix_conn) == 1
    assert sqlfix_conn.execute("SELECT count(*) FROM order_items").fetchone() == (0,)
"""
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=4)


def test_code_under_test_in_pipeline_mode_or_after_an_error_commits_like_psycopg(shop):
    shop.makepyfile(
        COUNT
        + """
import psycopg
import pytest

def test_pipeline(sqlfix_conn):
    with sqlfix_conn.pipeline():
        sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('p', 'P', 1)")
        sqlfix_conn.commit()
    assert count(sqlfix_conn, "products") == 1

def test_commit_after_an_error_rolls_back(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('q', 'Q', 1)")
    with pytest.raises(psycopg.errors.CheckViolation):
        sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('r', 'R', -1)")
    sqlfix_conn.commit()
    assert count(sqlfix_conn, "products") == 0
"""
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=2)


def test_restore_reloads_linked_schema_rows_once(pytester):
    (pytester.path / "schema.sql").write_text(
        "CREATE TABLE audit (id serial PRIMARY KEY, what text);\n"
        "CREATE TABLE statuses (code text PRIMARY KEY);\n"
        "CREATE FUNCTION log_status() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN INSERT INTO audit (what) VALUES (NEW.code); RETURN NEW; END $$;\n"
        "CREATE TRIGGER statuses_audit AFTER INSERT ON statuses FOR EACH ROW EXECUTE FUNCTION log_status();\n"
        "CREATE TABLE categories (id int PRIMARY KEY, status text NOT NULL REFERENCES statuses);\n"
        "INSERT INTO statuses VALUES ('active');\n"
        "INSERT INTO categories VALUES (1, 'active');\n"
        "CREATE TABLE items (id serial PRIMARY KEY, name text);\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    pytester.makepyfile(
        """
def test_1_escapes(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO items (name) VALUES ('x'); COMMIT")

def test_2_restored(sqlfix_conn):
    q = lambda sql: sqlfix_conn.execute(sql).fetchall()
    assert q("SELECT count(*) FROM items") == [(0,)]
    assert q("SELECT * FROM categories") == [(1, "active")]
    assert q("SELECT id, what FROM audit") == [(1, "active")]
    assert q("INSERT INTO audit (what) VALUES ('n') RETURNING id") == [(2,)]
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*restored the baseline*(triggers off)*"])


def test_a_fixture_may_defer_constraints_and_a_real_violation_is_still_pinned(pytester):
    (pytester.path / "schema.sql").write_text(
        "CREATE TABLE parent (id int PRIMARY KEY);\n"
        "CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent DEFERRABLE,\n"
        "  qty int CHECK (qty > 0));\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "ok.sql").write_text(
        "SET CONSTRAINTS ALL DEFERRED;\nINSERT INTO child VALUES (1, 10, 1);\n"
        "INSERT INTO parent VALUES (10);\n")
    (pytester.path / "fixtures_sql" / "bad.sql").write_text(
        "SET CONSTRAINTS ALL DEFERRED;\nINSERT INTO child VALUES (1, 10, 1);\n"
        "INSERT INTO parent VALUES (10);\nINSERT INTO child VALUES (2, 10, -1);\n")
    (pytester.path / "fixtures_sql" / "orphan.sql").write_text(
        "SET CONSTRAINTS ALL DEFERRED;\nINSERT INTO parent VALUES (1);\n"
        "INSERT INTO child VALUES (1, 2, 1);\nINSERT INTO child VALUES (2, 1, 1);\n")
    pytester.makepyfile(
        """
from sqlfix import uses

@uses("ok.sql")
def test_ok(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM child").fetchone() == (1,)

@uses("bad.sql")
def test_bad():
    pass

@uses("orphan.sql")
def test_orphan():
    pass
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*fixtures_sql/bad.sql:4:1: SQLF701 *23514*"])
    result.stdout.fnmatch_lines(["*fixtures_sql/orphan.sql:3:1: SQLF701 *23503*"])


INHERITANCE_SCHEMA = """
CREATE TABLE animal (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE dog (breed text) INHERITS (animal);
CREATE TABLE payment (id int, paid_on date NOT NULL, amount int) PARTITION BY RANGE (paid_on);
CREATE TABLE payment_2022 PARTITION OF payment FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
CREATE TABLE payment_2023 PARTITION OF payment FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
INSERT INTO animal VALUES (1, 'generic');
INSERT INTO dog VALUES (2, 'rex', 'lab');
INSERT INTO payment VALUES (1, '2022-05-01', 10), (2, '2023-05-01', 20);
"""


def test_a_restore_keeps_inherited_and_partitioned_rows_once(pytester):
    (pytester.path / "schema.sql").write_text(INHERITANCE_SCHEMA)
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    pytester.makepyfile(
        """
        ROWS = "SELECT (SELECT count(*) FROM animal), (SELECT count(*) FROM ONLY animal), (SELECT count(*) FROM dog), (SELECT count(*) FROM payment), (SELECT count(*) FROM payment_2022)"

        def test_1_escapes(sqlfix_conn):
            sqlfix_conn.execute("INSERT INTO dog VALUES (3, 'fido', 'pug')")
            sqlfix_conn.execute("COMMIT")

        def test_2_restored_once(sqlfix_conn):
            assert sqlfix_conn.execute(ROWS).fetchone() == (2, 1, 1, 2, 1)
        """
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*restored the baseline*reloaded the schema's rows into 3 tables*"])


def test_a_sql_ascii_database_works(pg_server, shop):
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS ascii_test")
        conn.execute("CREATE DATABASE ascii_test ENCODING 'SQL_ASCII' TEMPLATE template0"
                     " LC_COLLATE 'C' LC_CTYPE 'C'")
    dsn = make_conninfo(pg_server.dsn, dbname="ascii_test")
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("orders.sql")
        def test_loads(sqlfix_conn):
            sqlfix_conn.execute("INSERT INTO users (email, full_name, created_at) VALUES ('z@x.org', 'Zoë', now())")
            assert sqlfix_conn.execute("SELECT full_name FROM users WHERE email = 'z@x.org'").fetchone() == ("Zoë",)
            assert sqlfix_conn.execute("SHOW server_encoding").fetchone() == ("SQL_ASCII",)

        def test_again(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
        """
    )
    shop.runpytest(f"--sqlfix-dsn={dsn}", *NO_RANDOM).assert_outcomes(passed=2)


EXPLICIT_IDS = """
INSERT INTO users (id, email, full_name, created_at)
VALUES (1, 'a@x.org', 'A', {{ now }}), (2, 'b@x.org', 'B', {{ now }}), (3, 'c@x.org', 'C', {{ now }});
"""


def test_sequences_move_past_explicit_fixture_ids_and_back_after_the_test(shop):
    (shop.path / "fixtures_sql" / "explicit.sql").write_text(EXPLICIT_IDS)
    shop.makepyfile(
        """
        from sqlfix import uses

        NEW_USER = "INSERT INTO users (email, full_name, created_at) VALUES (%s, 'N', now()) RETURNING id"
        NEW_PRODUCT = "INSERT INTO products (sku, name, price_cents) VALUES ('n', 'n', 1) RETURNING id"

        @uses("explicit.sql")
        def test_1_app_insert_after_explicit_ids(sqlfix_conn):
            assert sqlfix_conn.execute(NEW_USER, ["n@x.org"]).fetchone() == (4,)
            # a table the fixture did not touch keeps its sequence
            assert sqlfix_conn.execute(NEW_PRODUCT).fetchone() == (1,)

        def test_2_back_where_the_schema_left_it(sqlfix_conn):
            assert sqlfix_conn.execute(NEW_USER, ["m@x.org"]).fetchone() == (1,)

        @uses("orders.sql")
        def test_3_label_ids_move_no_sequence(sqlfix_conn, sqlfix):
            assert sqlfix_conn.execute(NEW_USER, ["o@x.org"]).fetchone() == (1,)
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (5,)

        @uses("explicit.sql", "orders.sql")
        def test_4_both(sqlfix_conn):
            assert sqlfix_conn.execute(NEW_USER, ["p@x.org"]).fetchone() == (4,)

        def test_5_load_later_in_the_test(sqlfix):
            sqlfix.load("explicit.sql")
            assert sqlfix.conn.execute(NEW_USER, ["q@x.org"]).fetchone() == (4,)

        @uses("explicit.sql", commit=True)
        def test_6_committed_mode_too(sqlfix, sqlfix_dsn):
            import psycopg
            with psycopg.connect(sqlfix_dsn) as other:  # the app's own connection
                assert other.execute(NEW_USER, ["z@x.org"]).fetchone() == (4,)

        def test_7_back_after_the_committed_test(sqlfix_conn):
            assert sqlfix_conn.execute(NEW_USER, ["d@x.org"]).fetchone() == (1,)
        """
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=7)


def test_an_escape_is_caught_when_the_test_puts_its_application_name_back(shop):
    # The check reads the marker (a SET LOCAL application_name) the server reports, so
    # code that saved application_name, committed with a raw COMMIT and set the saved
    # value back left the marker in place: the test passed and its row reached every
    # later test. The rollback's round trip now also compares the transaction id.
    shop.makepyfile('''
import pytest

HOW = {
    "saved and set back": ["SET application_name = 'batch'", "COMMIT",
                           "SELECT set_config('application_name', %s, false)"],
    "set again locally": ["COMMIT", "SELECT set_config('application_name', %s, true)"],
}

@pytest.mark.parametrize("how", sorted(HOW))
def test_1_escapes(sqlfix_conn, how):
    saved = sqlfix_conn.execute("SHOW application_name").fetchone()[0]
    sqlfix_conn.execute("INSERT INTO users (email, full_name, created_at) "
                        "VALUES ('x@example.com', 'X', now())")
    for statement in HOW[how]:
        sqlfix_conn.execute(statement, [saved] if "%s" in statement else None)

def test_2_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
''')
    result = shop.runpytest(*NO_RANDOM)
    # found by the rollback, after the checks: an error of the test at tear-down
    result.assert_outcomes(passed=3, errors=2)
    out = result.stdout.str().split("short test summary info")[0]
    assert out.count("The test's transaction was COMMITTED before the test ended") == 2
    assert out.count("sqlfix restored the baseline") == 2
