"""Savepoint layers against what a hostile review of issue #11 found: each test here passed,
or failed with the same message, without layers, and did not with them."""

from __future__ import annotations

import pytest
from helpers import NO_RANDOM

SCHEMA = """
CREATE TABLE parents (id int PRIMARY KEY);
CREATE TABLE children (id int PRIMARY KEY,
                       parent_id int REFERENCES parents DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE users (id int PRIMARY KEY, name text UNIQUE);
CREATE TABLE notes (id serial PRIMARY KEY, body text);
"""
FILES = {
    "child.sql": "INSERT INTO children VALUES (1, 99);\n",  # needs parent.sql after it
    "parent.sql": "INSERT INTO parents VALUES (99);\n",
    "users.sql": "INSERT INTO users VALUES (1, 'ann');\n",
    "editme.sql": "INSERT INTO notes (body) VALUES ('original');\n",
}


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "schema.sql").write_text(SCHEMA)
    for name, text in FILES.items():
        (pytester.path / "fixtures_sql" / name).write_text(text)
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    return pytester


@pytest.fixture(params=[(), ("--sqlfix-layers",)], ids=["plain", "layers"])
def layers(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Each test runs without layers and with them: it must pass the same way."""
    return tuple(request.param)


def test_a_layer_below_the_checked_top_has_its_deferred_constraints_checked(project, layers):
    project.makepyfile("""
        from sqlfix import uses

        @uses("child.sql", "parent.sql")
        def test_1_both(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM children").fetchone() == (1,)

        @uses("child.sql")
        def test_2_child_alone(sqlfix_conn):
            pass  # its parent is missing: the load fails

        @uses("child.sql", "users.sql")
        def test_3_child_and_users(sqlfix_conn):
            pass  # the same, and child.sql is the one to blame, not users.sql
    """)
    result = project.runpytest(*NO_RANDOM, *layers)
    result.assert_outcomes(passed=1, errors=2)
    errors = [line for line in result.outlines if "SQLF701" in line]
    assert len(errors) == 2 and all("child.sql:1:1" in e for e in errors), errors
    assert not any("users.sql" in e for e in errors)


def test_a_fixture_file_edited_during_the_run_is_loaded_as_edited(project, layers):
    project.makepyfile("""
        from pathlib import Path
        from sqlfix import uses

        @uses("editme.sql")
        def test_1_edits(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT body FROM notes").fetchall() == [("original",)]
            Path("fixtures_sql/editme.sql").write_text(
                "INSERT INTO notes (body) VALUES ('edited by test 1');\\n")

        @uses("editme.sql")
        def test_2_sees_the_edit(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT body FROM notes").fetchall() == [
                ("edited by test 1",)]
    """)
    project.runpytest(*NO_RANDOM, *layers).assert_outcomes(passed=2)


def test_a_row_factory_set_by_a_test_does_not_reach_the_next(project, layers):
    project.makepyfile("""
        from psycopg.rows import dict_row
        from sqlfix import uses

        @uses("users.sql")
        def test_1_sets_one(sqlfix_conn):
            sqlfix_conn.row_factory = dict_row

        @uses("users.sql")
        def test_2_reads_tuples(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT name FROM users").fetchone()[0] == "ann"
    """)
    project.runpytest(*NO_RANDOM, *layers).assert_outcomes(passed=2)


def test_a_test_without_sqlfix_after_a_skipped_one_meets_no_open_stack(project, layers):
    """The stack kept for a sqlfix test that was then skipped held users.sql's row lock."""
    project.makepyfile("""
        import psycopg
        import pytest
        from sqlfix import uses

        @uses("users.sql")
        def test_1_loads(sqlfix_conn):
            pass

        @pytest.mark.skip(reason="skipped before its set-up")
        @uses("users.sql")
        def test_2_skipped(sqlfix_conn):
            pass

        def test_3_own_connection(sqlfix_dsn):
            with psycopg.connect(sqlfix_dsn) as conn:
                conn.execute("SET lock_timeout = '3s'")
                conn.execute("INSERT INTO users VALUES (1, 'ann')")  # the same key
                conn.rollback()
    """)
    project.runpytest(*NO_RANDOM, *layers).assert_outcomes(passed=2, skipped=1)


def test_what_a_test_sets_on_the_connection_object_does_not_reach_the_next(project, layers):
    """Row factory, adapters, cursor factory, prepare threshold, notice handlers: no SQL
    resets them. With a VACUUM due before every test (it reads table names as text), a
    loader the test before registered for text made the next test error in its set-up."""
    project.makepyfile("""
        import psycopg
        from psycopg.adapt import Loader
        from psycopg.rows import dict_row
        from sqlfix import uses

        heard = []

        class Tagged(Loader):
            def load(self, data):
                return "tagged:" + bytes(data).decode()

        @uses("users.sql")
        def test_1_changes_everything(sqlfix_conn):
            sqlfix_conn.row_factory = dict_row
            for name in ("int4", "text", "int8"):
                sqlfix_conn.adapters.register_loader(name, Tagged)
            sqlfix_conn.cursor_factory = psycopg.ClientCursor
            sqlfix_conn.prepare_threshold = 0
            sqlfix_conn.add_notice_handler(lambda notice: heard.append(notice.message_primary))
            assert sqlfix_conn.execute("SELECT id, name FROM users").fetchone() == {
                "id": "tagged:1", "name": "tagged:ann"}

        @uses("users.sql")
        def test_2_finds_the_defaults(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT id, name FROM users").fetchone() == (1, "ann")
            assert type(sqlfix_conn.cursor()) is psycopg.Cursor
            assert sqlfix_conn.prepare_threshold == 5
            sqlfix_conn.execute("DO $$ BEGIN RAISE NOTICE 'hello'; END $$")
            assert heard == []

        def test_3_without_sqlfix():
            pass

        @uses("users.sql")
        def test_4_after_a_test_without_sqlfix(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT name FROM users").fetchone() == ("ann",)
    """)
    result = project.runpytest(*NO_RANDOM, *layers, "-o", "sqlfix_vacuum_threshold=1")
    result.assert_outcomes(passed=4)


def test_sqlfix_reads_its_own_checks_and_loads_past_the_tests_client_state(project, layers):
    """The end-of-test check and a load() in the test ran on the test's cursor factory and
    loaders: a RawCursor made the escape's report crash (the escape not undone), a loader
    for text made a false escape, a load() mid-test failed."""
    project.makepyfile("""
        import psycopg
        from psycopg.adapt import Loader
        from sqlfix import uses

        class Tagged(Loader):
            def load(self, data):
                return "X" + bytes(data).decode()

        @uses("users.sql")
        def test_1_raw_cursor_then_commit(sqlfix_conn):
            sqlfix_conn.cursor_factory = psycopg.RawCursor
            sqlfix_conn.execute("INSERT INTO notes (body) VALUES ('escaped')")
            sqlfix_conn.execute("COMMIT")  # an escape: reported, then undone

        @uses("users.sql")
        def test_2_text_loader_and_application_name(sqlfix_conn):
            sqlfix_conn.adapters.register_loader("text", Tagged)
            sqlfix_conn.execute("SET application_name = 'myapp'")
            assert sqlfix_conn.execute("SELECT name FROM users").fetchone() == ("Xann",)

        @uses("users.sql")
        def test_3_load_mid_test_keeps_the_tests_state(sqlfix, sqlfix_conn):
            sqlfix_conn.cursor_factory = psycopg.RawCursor
            mine = sqlfix_conn.adapters
            mine.register_loader("text", Tagged)
            sqlfix.load("parent.sql")
            assert sqlfix_conn.adapters is mine  # the test's own map, given back
            assert type(sqlfix_conn.cursor()) is psycopg.RawCursor
            assert sqlfix_conn.execute("SELECT name FROM users").fetchone() == ("Xann",)

        @uses("users.sql")
        def test_4_clean(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)
    """)
    result = project.runpytest(*NO_RANDOM, *layers)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_1_raw_cursor_then_commit*", "*was COMMITTED*"])
    assert "TypeError" not in result.stdout.str()


def test_a_stack_whose_backend_ended_between_tests_is_begun_again(project, layers):
    """idle_in_transaction_session_timeout, a terminate, a restart between two tests: the
    next test, which loads nothing on a continued stack, failed in its body with a raw
    AdminShutdown, and was blamed for ending its session."""
    project.makeconftest("""
        import psycopg

        def pytest_runtest_setup(item):
            if item.name == "test_2_after_the_gap":  # before any fixture of the test
                dsn = item.config.stash[__import__("sqlfix.pytest_plugin.plugin",
                                                   fromlist=["x"]).SESSION_KEY].dsn
                with psycopg.connect(dsn, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                                  "WHERE pid <> pg_backend_pid() AND datname = current_database()"
                                  " AND backend_type = 'client backend'")
    """)
    project.makepyfile("""
        from sqlfix import uses

        @uses("users.sql")
        def test_1_writes(sqlfix_conn):
            sqlfix_conn.execute("UPDATE users SET name = 'changed'")

        @uses("users.sql")
        def test_2_after_the_gap(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT name FROM users").fetchall() == [("ann",)]
    """)
    result = project.runpytest(*NO_RANDOM, *layers,
                               "-W", "always::sqlfix.errors.ReconnectedWarning")
    result.assert_outcomes(passed=2, warnings=1)  # the second test starts from the baseline
    result.stdout.fnmatch_lines(["*test_2_after_the_gap*",
                                 "*ReconnectedWarning: sqlfix's connection was lost between tests*"])
