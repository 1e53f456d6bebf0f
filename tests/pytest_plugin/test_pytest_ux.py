"""pytest as its users drive it: the mark, xdist, failure reports, replay, ini options, unittest."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest
from helpers import NO_RANDOM


def _header_seed(result: pytest.RunResult) -> str:
    line = next(line for line in result.outlines if line.startswith("sqlfix: seed="))
    return line.split("seed=")[1].split()[0]


# ------------------------------------------------------------------ the mark


def test_someone_elses_uses_mark_starts_nothing(shop):
    shop.makefile(".ini", pytest="[pytest]\nasyncio_default_fixture_loop_scope = function\n"
                  "markers =\n    uses(what): the project's own marker\n")
    shop.makepyfile(
        """
        import sys
        import pytest

        @pytest.mark.uses("network")
        def test_network():
            assert "sqlfix.database.session" not in sys.modules  # no server, no database side

        @pytest.mark.uses("network", timeout=3)
        def test_with_kwargs():
            assert "psycopg" not in sys.modules
        """
    )
    result = shop.runpytest_subprocess("--strict-markers", "-W", "error", *NO_RANDOM)
    result.assert_outcomes(passed=2)
    assert "SqlfixDeprecationWarning" not in result.stdout.str()


def test_the_sqlfix_mark_and_uses_load_and_the_old_mark_warns_and_loads_nothing(shop):
    shop.makepyfile(
        """
        import pytest
        from sqlfix import uses

        @pytest.mark.sqlfix("users.sql")
        def test_mark(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)

        @uses("users.sql")
        def test_uses(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)

        @pytest.mark.uses("users.sql", "orders.sql")
        def test_old(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
        """
    )
    result = shop.runpytest("-W", "default", *NO_RANDOM)  # not the outer run's "error"
    result.assert_outcomes(passed=3, warnings=2)  # and pytest's PytestUnknownMarkWarning
    result.stdout.fnmatch_lines([
        "*SqlfixDeprecationWarning: @pytest.mark.uses('users.sql', 'orders.sql') no longer loads "
        "fixtures: sqlfix's mark is now `sqlfix`*nothing was loaded for *test_old",
    ])
    # and a project that treats warnings as errors can filter exactly this one
    strict = shop.runpytest("-W", "default", "-W", "error::sqlfix.SqlfixDeprecationWarning",
                            *NO_RANDOM)
    strict.assert_outcomes(passed=2, errors=1)  # that test only, at its set-up
    strict.stdout.fnmatch_lines(["*SqlfixDeprecationWarning: @pytest.mark.uses(*"])
    # --strict-markers: the old name is not registered any more, the error says so
    assert "'uses' not found in `markers`" in shop.runpytest("--strict-markers").stdout.str()


def test_the_old_mark_with_commit_warns_at_the_tests_line_and_another_plugins_sql_mark_not(shop):
    shop.makefile(".ini", pytest=INI + "markers =\n    uses(what): the project's own marker\n")
    shop.makepyfile(
        """
        import pytest

        @pytest.mark.uses("users.sql", commit=True)
        def test_old_committed(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)

        @pytest.mark.uses("migrations/0001_init.sql")  # someone else's: no such fixture
        def test_someone_elses():
            pass
        """
    )
    # In a subprocess: an in-process run would leave `uses` among the known marks of
    # pytest's process-wide MARK_GEN, and later in-process runs would not warn of it.
    result = shop.runpytest_subprocess(
        "-W", "default", "-W", "error::sqlfix.SqlfixDeprecationWarning:"
        "test_the_old_mark_with_commit_warns_at_the_tests_line_and_another_plugins_sql_mark_not",
        *NO_RANDOM)
    # the warning is attributed to the test's module: a filter by module catches it
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*SqlfixDeprecationWarning: @pytest.mark.uses('users.sql', commit=True) no longer*"])
    assert "mark.uses('migrations/0001_init.sql')" not in result.stdout.str()


def test_bad_arguments_to_the_mark_fail_that_test_with_the_reason(shop):
    shop.makepyfile(
        """
        import pytest

        @pytest.mark.sqlfix(123)
        def test_number(sqlfix_conn):
            pass

        @pytest.mark.sqlfix(["users.sql"])
        def test_list(sqlfix_conn):
            pass

        @pytest.mark.sqlfix("users.sql", bogus=1)
        def test_unknown_keyword(sqlfix_conn):
            pass

        @pytest.mark.sqlfix("users.sql")
        def test_good(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)

        @pytest.mark.sqlfix(" users.sql")
        def test_spaced(sqlfix_conn):
            pass
        """
    )
    result = shop.runpytest_subprocess(*NO_RANDOM)
    result.assert_outcomes(passed=1, errors=4)
    out = result.stdout.str()
    assert out.count("the sqlfix mark (@uses or @pytest.mark.sqlfix) on ") >= 4, out
    module = "test_bad_arguments_to_the_mark_fail_that_test_with_the_reason.py"
    for said in (f"::test_number ({module}:3) takes fixture file names such as 'users.sql', "
                 "got 123",
                 f"::test_list ({module}:7) takes fixture file names such as 'users.sql', got "
                 "['users.sql']",
                 f"::test_unknown_keyword ({module}:11): unknown keyword argument(s) bogus; the "
                 "mark takes fixture file names and commit=True or False",
                 f"::test_spaced ({module}:19): the fixture file name ' users.sql' has spaces "
                 "around it; write 'users.sql'"):
        assert said in out, out
    assert "Traceback" not in result.stdout.str() and "marker.py" not in result.stdout.str()


@pytest.mark.parametrize("strict", [("-W", "error::pytest.PytestUnknownMarkWarning"),
                                    ("--strict-markers",)], ids=["W-error", "strict-markers"])
def test_uses_with_the_plugin_off_keeps_the_modules_other_tests(shop, strict):
    # -p no:sqlfix: the mark is not registered, and pytest's "unknown mark" check (a
    # warning, an error under -W error or --strict-markers) would stop the module's
    # collection. @uses is no typo: the module's tests run; one that needs sqlfix's
    # fixtures fails on them, as it should with sqlfix off.
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("users.sql")
        def test_marked():
            pass

        def test_plain():
            pass

        @uses("users.sql")
        def test_needs_the_connection(sqlfix_conn):
            pass
        """
    )
    result = shop.runpytest_subprocess("-p", "no:sqlfix", *strict, *NO_RANDOM)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'sqlfix_conn' not found*"])
    assert "PytestUnknownMarkWarning" not in result.stdout.str()


def test_bad_arguments_to_uses_show_the_tests_line_not_sqlfixs_frames(shop):
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses(123)
        def test_number():
            pass
        """
    )
    result = shop.runpytest_subprocess(*NO_RANDOM)
    out = result.stdout.str()
    assert "uses() takes fixture file names such as 'users.sql', got 123" in out, out
    assert "@uses(123)" in out  # the test's own line
    assert "marker.py" not in out, out


def test_the_sqlfix_mark_is_listed(shop):
    result = shop.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.sqlfix(*fixture_files*): load these .sql fixtures*"])
    assert "@pytest.mark.uses" not in result.stdout.str()


# ------------------------------------------------------------------ xdist with a DSN
# (-n 2 and more: each worker clones the DSN's database, see tests/database/test_workers.py)


def test_xdist_with_one_worker_or_none_and_a_dsn_runs(shop, fresh_dsn):
    shop.makepyfile("def test_a(sqlfix_conn): pass")
    for n in ("0", "1"):
        result = shop.runpytest_subprocess("-n", n, f"--sqlfix-dsn={fresh_dsn}", *NO_RANDOM)
        result.assert_outcomes(passed=1)


def test_server_port_with_more_than_one_xdist_worker_is_refused_once(shop):
    # each worker would start its own server on the one port: refused before any starts
    shop.makefile(".ini", pytest=INI + "sqlfix_server_port = 54393\n")
    shop.makepyfile("def test_a(sqlfix_conn): pass\ndef test_b(sqlfix_conn): pass\n")
    result = shop.runpytest_subprocess("-n", "2", *NO_RANDOM)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count(f"server_port = 54393 (from {shop.path / 'pytest.ini'}) with 2 "
                     "pytest-xdist workers") == 1, err
    assert "Traceback" not in err + result.stdout.str()


# ------------------------------------------------------------------ failure reports and replay


FAILING = """
    from sqlfix import uses

    @uses("orders.sql")
    def test_fails(sqlfix, sqlfix_conn):
        sqlfix.load("inventory_audit.sql")
        assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (99,)

    def test_passes(sqlfix_conn):
        pass
"""


def test_a_failure_names_fixtures_with_seeds_the_replay_command_and_the_server_log(shop):
    from sqlfix.compiler.seeds import derive_seed

    shop.mkpydir("tests")
    (shop.path / "tests" / "test_x.py").write_text(textwrap.dedent(FAILING))
    result = shop.runpytest_subprocess("--sqlfix-seed=11", *NO_RANDOM)
    result.assert_outcomes(passed=1, failed=1)
    seeds = {n: derive_seed(11, n) for n in ("users.sql", "products.sql", "orders.sql",
                                             "inventory_audit.sql")}
    loaded = ", ".join(f"{n} (seed {s})" for n, s in seeds.items())
    result.stdout.fnmatch_lines([
        "*- sqlfix -*",
        "seed=11; replay with:",
        "  pytest tests/test_x.py::test_fails --sqlfix-seed=11",
        f"fixtures loaded: {loaded}",
        "server log: *.pytest_cache/d/sqlfix/postgres.log (copied there when the run ends)",
    ])
    log = shop.path / ".pytest_cache" / "d" / "sqlfix" / "postgres.log"
    assert "database system is ready to accept connections" in log.read_text()
    # run from a subfolder, the command is relative to it
    os.chdir(shop.path / "tests")
    sub = shop.runpytest_subprocess("test_x.py", "--sqlfix-seed=11", *NO_RANDOM)
    sub.stdout.fnmatch_lines(["  pytest test_x.py::test_fails --sqlfix-seed=11"])


def test_the_replay_command_carries_the_options_that_changed_the_data(shop):
    import shlex

    alt = shop.path / "alt_fixtures"
    alt.mkdir()
    (alt / "users.sql").write_text(
        "INSERT INTO users (id, email, full_name, created_at) "
        "VALUES (1, 'a@x.org', 'Alicia', {{ now }});\n")
    shop.makepyfile(
        """
        def test_name(sqlfix, sqlfix_conn):
            sqlfix.load("users.sql")
            row = sqlfix_conn.execute("SELECT full_name, created_at::date::text FROM users")
            assert row.fetchone() == ("Alice", "2024-01-01")
        """
    )
    result = shop.runpytest_subprocess(
        "--sqlfix-fixtures=alt_fixtures", "-o", "sqlfix_now=2030-05-06T07:00:00+00:00",
        "--sqlfix-verify", *NO_RANDOM)
    result.assert_outcomes(failed=1)
    line = next(x for x in result.outlines if x.startswith("  pytest test_the_replay"))
    assert "--sqlfix-fixtures=alt_fixtures" in line and "--sqlfix-verify" in line
    assert "--override-ini=sqlfix_now=2030-05-06T07:00:00+00:00" in line
    # the command, as printed, replays the failure: the same data, the same assertion
    again = shop.runpytest_subprocess(*shlex.split(line)[1:], *NO_RANDOM)
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(["*('Alicia', '2030-05-06')*"])


ROOTDIR_TEST = """
    from sqlfix import uses

    @uses("users.sql")
    def test_rows(sqlfix, sqlfix_conn):
        print("SEED", sqlfix.seed)
        assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (99,)
"""


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_the_replay_command_of_a_run_with_rootdir_replays_it(shop, where):
    """--rootdir puts the node ids' base (and the configuration) elsewhere: the command
    names the file by its own path and carries --rootdir, and replays the same failure."""
    import shlex

    svc = shop.path / "svc"
    svc.mkdir()
    shutil.copytree(shop.path / "fixtures_sql", svc / "fixtures_sql")
    (svc / "pyproject.toml").write_text(
        '[tool.sqlfix]\nseed = 11\nschema = ["fixtures_sql/schema.sql"]\n'
        '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    tests = svc / "tests" if where == "inside" else shop.path / "elsewhere"
    tests.mkdir()
    (tests / "test_r.py").write_text(textwrap.dedent(ROOTDIR_TEST))
    result = shop.runpytest_subprocess("--rootdir=svc", "-c", "svc/pyproject.toml",
                                       str(tests.relative_to(shop.path)), "-s", *NO_RANDOM)
    result.assert_outcomes(failed=1)
    line = next(x for x in result.outlines if x.startswith("  pytest "))
    assert line.startswith(f"  pytest {tests.relative_to(shop.path)}/test_r.py::test_rows "), line
    assert "--rootdir=svc" in line
    again = shop.runpytest_subprocess(*shlex.split(line)[1:], "-s", *NO_RANDOM)
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(["*SEED 11*", "*assert (4,) == (99,)*"])


def test_the_replay_command_of_a_doctest_looks_for_doctests(shop):
    import shlex

    shop.makepyfile(mod='''
        def f():
            """
            >>> conn = getfixture("sqlfix_conn")
            >>> conn.execute("SELECT 2").fetchone()
            (1,)
            """
    ''')
    result = shop.runpytest_subprocess("--doctest-modules", "mod.py", *NO_RANDOM)
    result.assert_outcomes(failed=1)
    line = next(x for x in result.outlines if x.startswith("  pytest "))
    assert line.startswith("  pytest mod.py::mod.f ") and "--doctest-modules" in line, line
    shop.runpytest_subprocess(*shlex.split(line)[1:], *NO_RANDOM).assert_outcomes(failed=1)


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_with_a_dsn_the_failure_report_names_the_database_the_test_ran_in(
        shop, fresh_dsn, workers):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    shop.makepyfile("def test_fails(sqlfix_conn):\n    assert False\n")
    dsn = make_conninfo(fresh_dsn, password="S3cretPW")  # trust: not checked
    result = shop.runpytest_subprocess(f"--sqlfix-dsn={dsn}", *workers, *NO_RANDOM)
    result.assert_outcomes(failed=1)
    name = conninfo_to_dict(fresh_dsn)["dbname"]
    shown = f"{name}_gw[01]" if workers else name  # the clone of the worker that ran it
    result.stdout.fnmatch_lines([f"database: {shown} on *:* (DSN from option --sqlfix-dsn)"])
    assert "S3cretPW" not in result.stdout.str()


def test_a_dsn_password_given_with_o_is_left_out_of_the_replay_command(shop, fresh_dsn):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with_password = make_conninfo(fresh_dsn, password="S3cretPW")  # trust: not checked
    shop.makepyfile("def test_fails(sqlfix_conn):\n    assert False\n")
    result = shop.runpytest_subprocess("-o", f"sqlfix_dsn={with_password}", *NO_RANDOM)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "S3cretPW" not in out, out
    line = next(x for x in result.outlines if x.startswith("  pytest "))
    assert "--override-ini=sqlfix_dsn=" in line
    shown = line.split("--override-ini=sqlfix_dsn=")[1].strip("'")
    assert conninfo_to_dict(shown)["dbname"] == conninfo_to_dict(fresh_dsn)["dbname"]


def test_the_sqlfix_dsn_fixture_value_hides_its_password_where_pytest_shows_it(shop, fresh_dsn):
    # pytest shows a failing test's arguments: the fixture's value went into CI logs whole
    from psycopg.conninfo import make_conninfo

    with_password = make_conninfo(fresh_dsn, password="S3cretPW")  # trust: not checked
    shop.makepyfile("""
        import psycopg

        def test_fails(sqlfix_dsn):
            assert "S3cret" + "PW" in sqlfix_dsn and isinstance(sqlfix_dsn, str)
            with psycopg.connect(sqlfix_dsn) as app:  # still the whole URL for libraries
                app.execute("SELECT 1")
            assert False

        def test_compares(sqlfix_dsn):  # pytest's diff of two strings: not their repr()
            assert sqlfix_dsn == "postgresql://elsewhere/db_test"
    """)
    result = shop.runpytest_subprocess(f"--sqlfix-dsn={with_password}", "-l", *NO_RANDOM)
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "S3cretPW" not in out, out
    result.stdout.fnmatch_lines(["*sqlfix_dsn *= 'postgresql://*:***@*"])


@pytest.mark.parametrize("committed", [False, True], ids=["rollback", "committed"])
def test_a_load_or_render_that_fails_mid_test_shows_the_tests_line_and_the_message(
        shop, committed):
    # sqlfix's own frames (loader, library) would stand between the test's line and the
    # message that names the file and line; the errors stay catchable by their types.
    (shop.path / "fixtures_sql" / "bad_row.sql").write_text(
        "-- no email\nINSERT INTO users (id, email) VALUES (1, NULL);\n")
    mark = "@pytest.mark.sqlfix(commit=True)" if committed else ""
    shop.makepyfile(
        f"""
        import pytest
        from sqlfix.errors import ConfigError, LoadError

        {mark}
        def test_bad_row(sqlfix, sqlfix_conn):
            sqlfix.load("bad_row.sql")

        {mark}
        def test_missing(sqlfix, sqlfix_conn):
            sqlfix.render("missing.sql")

        {mark}
        def test_caught(sqlfix, sqlfix_conn):
            with pytest.raises(LoadError, match="bad_row.sql:2:1"):
                sqlfix.load("bad_row.sql")
            with pytest.raises(ConfigError, match="'missing.sql' not found"):
                sqlfix.load("missing.sql")
            sqlfix.load("users.sql")
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)
        """
    )
    result = shop.runpytest_subprocess(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        '>       sqlfix.load("bad_row.sql")',
        "E       sqlfix.errors.LoadError: fixtures_sql/bad_row.sql:2:1: SQLF701 *",
        '>       sqlfix.render("missing.sql")',
        "E       sqlfix.compiler.discovery.FixtureNotFound: fixture 'missing.sql' not found*",
    ])
    assert "sqlfix/database/loader.py" not in out, out
    assert "sqlfix/compiler/" not in out, out
    assert "direct cause" not in out, out


@pytest.mark.parametrize("committed", [False, True], ids=["rollback", "committed"])
def test_a_load_after_the_tests_own_failed_statement_says_to_roll_back(shop, committed):
    # The test's statement failed and nothing rolled back: PostgreSQL refuses every
    # statement. Not psycopg's bare InFailedSqlTransaction from inside the load: what
    # happened and the two ways out, both of which then work.
    mark = "@pytest.mark.sqlfix(commit=True)" if committed else ""
    shop.makepyfile(
        f"""
        import psycopg
        import pytest
        from sqlfix.errors import SqlfixError

        {mark}
        def test_rollback_then_load(sqlfix, sqlfix_conn):
            with pytest.raises(psycopg.errors.UndefinedTable):
                sqlfix_conn.execute("SELECT * FROM no_such_table")
            with pytest.raises(SqlfixError, match="aborted transaction") as raised:
                sqlfix.load("users.sql")
            assert "sqlfix_conn.rollback()" in str(raised.value)
            sqlfix_conn.rollback()
            assert sqlfix.load("users.sql") == ("users.sql",)
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)

        {mark}
        def test_the_block_that_may_fail(sqlfix, sqlfix_conn):
            with pytest.raises(psycopg.errors.UndefinedTable):
                with sqlfix_conn.transaction():
                    sqlfix_conn.execute("SELECT * FROM no_such_table")
            assert sqlfix.load("users.sql") == ("users.sql",)

        {mark}
        def test_uncaught(sqlfix, sqlfix_conn):
            try:
                sqlfix_conn.execute("SELECT * FROM no_such_table")
            except psycopg.Error:
                pass
            sqlfix.load("users.sql")
        """
    )
    result = shop.runpytest_subprocess(*NO_RANDOM)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        '>       sqlfix.load("users.sql")',
        "E       sqlfix.errors.SqlfixError: sqlfix.load() was called on an aborted transaction*",
    ])


def test_a_fake_fixture_without_faker_loaded_mid_test_shows_the_message_not_sqlfixs_frames(shop):
    shop.makeconftest("import sys\nsys.modules['faker'] = None  # as if Faker were not installed\n")
    (shop.path / "fixtures_sql" / "named.sql").write_text(
        "-- requires: users.sql\nUPDATE users SET full_name = {{ fake.name() }};\n")
    shop.makepyfile(
        """
        def test_load(sqlfix, sqlfix_conn):
            sqlfix.load("named.sql")

        def test_render(sqlfix):
            sqlfix.render("named.sql")
        """
    )
    result = shop.runpytest_subprocess(*NO_RANDOM)
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert out.count("pip install 'sqlfix[faker]'") >= 2, out
    assert "fixtures_sql/named.sql:2:" in out
    assert "sqlfix/compiler/" not in out and "sqlfix/pytest_plugin/" not in out, out


def test_load_and_render_take_paths_and_refuse_other_things_at_the_tests_line(shop):
    shop.makepyfile(
        """
        from pathlib import Path, PurePosixPath

        def test_paths(sqlfix, sqlfix_conn):
            assert sqlfix.load(Path("users.sql")) == ("users.sql",)
            assert sqlfix.render(PurePosixPath("products.sql")).startswith("--")
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)

        def test_int(sqlfix):
            sqlfix.load(123)

        def test_list(sqlfix):
            sqlfix.load(["users.sql"])

        def test_none(sqlfix):
            sqlfix.render(None)
        """
    )
    result = shop.runpytest_subprocess(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    for said in ("TypeError: sqlfix.load() takes fixture file names such as 'users.sql', got 123",
                 "got ['users.sql']",
                 "TypeError: sqlfix.render() takes fixture file names such as 'users.sql', got None"):
        assert said in out, out
    assert "sqlfix/compiler/" not in out and "marker.py" not in out, out


def test_seed_last_replays_the_previous_runs_random_seed(shop):
    shop.makepyfile(
        """
        def test_seed(sqlfix):
            print("SEED", sqlfix.seed)
        """
    )
    first = shop.runpytest("--sqlfix-seed=random", *NO_RANDOM)
    seed = _header_seed(first)
    again = shop.runpytest("--sqlfix-seed=last", "-s", *NO_RANDOM)
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines([
        f"sqlfix: seed={seed} (option --sqlfix-seed=last, the previous run's); *",
        f"*SEED {seed}*",
    ])


def test_seed_last_is_not_overwritten_by_runs_that_loaded_nothing(shop):
    shop.makepyfile(
        """
        def test_seed(sqlfix):
            print("SEED", sqlfix.seed)

        def test_plain():
            pass
        """
    )
    first = shop.runpytest("--sqlfix-seed=random", *NO_RANDOM)
    seed = _header_seed(first)
    assert seed != "0"
    # none of these reached the database: the seed stays the random run's
    shop.runpytest("--collect-only", "-q")
    shop.runpytest("--fixtures")
    shop.runpytest("-k", "plain", "--sqlfix-seed=5", *NO_RANDOM).assert_outcomes(passed=1)
    shop.runpytest_subprocess("-n", "2", "-k", "plain", *NO_RANDOM).assert_outcomes(passed=1)
    # nor did a run whose database could not be reached
    failed = shop.runpytest("--sqlfix-seed=15", "--sqlfix-dsn=host=/nonexistent dbname=x_test",
                            *NO_RANDOM)
    assert failed.ret == 3  # sqlfix stops the run: "could not prepare the test database"
    again = shop.runpytest("--sqlfix-seed=last", "-s", *NO_RANDOM)
    again.stdout.fnmatch_lines([f"*SEED {seed}*"])
    # a -n 2 run that used the database stores its seed (the controller's, on the workers)
    shop.runpytest_subprocess("-n", "2", "--sqlfix-seed=77", *NO_RANDOM).assert_outcomes(passed=2)
    shop.runpytest("--sqlfix-seed=last", "-s", *NO_RANDOM).stdout.fnmatch_lines(["*SEED 77*"])


def test_seed_last_without_a_previous_run_or_without_the_cache_is_a_usage_error(shop):
    shop.makepyfile("def test_nothing(): pass")
    result = shop.runpytest("--sqlfix-seed=last")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--sqlfix-seed=last: no previous run's seed*run once first*"])
    result = shop.runpytest("--sqlfix-seed=last", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*reads pytest's cache, which is off (-p no:cacheprovider)*"])


@pytest.mark.parametrize(("stored", "shown"), [
    ("{", "unreadable"), ('"7"', "'7', not a seed"), ("-3", "-3, not a seed"), ("true", "True, not a seed"),
])
def test_a_damaged_stored_seed_is_named_with_its_file(shop, stored, shown):
    # Not "no previous run": there was one, and its file is damaged (a merge, an editor).
    shop.makepyfile("def test_nothing(): pass")
    seed_file = shop.path / ".pytest_cache" / "v" / "sqlfix" / "seed"
    seed_file.parent.mkdir(parents=True)
    seed_file.write_text(stored)
    result = shop.runpytest("--sqlfix-seed=last")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--sqlfix-seed=last: the seed stored in {seed_file} is {shown}; "
                                 "delete that file, or give the seed as a number*"])


# ------------------------------------------------------------------ --sqlfix-report


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_the_report_lists_fixtures_tests_rows_and_the_slowest_loads(shop, workers):
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("users.sql")
        def test_users():
            pass

        @uses("orders.sql")
        def test_orders():
            pass

        def test_none(sqlfix):
            sqlfix.load("products.sql")
        """
    )
    result = shop.runpytest_subprocess("--sqlfix-report", *workers, *NO_RANDOM)
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    section = out[out.index("sqlfix report"):]
    rows = {m[0]: (int(m[1]), int(m[2]), m[3]) for m in
            re.findall(r"^(\S+\.sql)\s+(\d+)\s+[\d.]+\s+(\d+)\s+[\d.]+\s+(\S+)$", section, re.M)}
    assert rows == {  # file: (tests, loads, rows per load)
        "users.sql": (2, 2, "4"),
        "products.sql": (2, 2, "4"),
        "orders.sql": (1, 1, "5"),  # 2 orders, 3 order lines
    }
    users_line = next(line for line in section.splitlines() if line.startswith("  users.sql: "))
    assert sorted(t.split("::")[1] for t in users_line.split(": ", 1)[1].split(", ")) == [
        "test_orders", "test_users"]
    assert "slowest loads (of 3):" in section
    assert re.search(r"ms  \S+::test_orders  users.sql, products.sql, orders.sql \(13 rows\)", section)


def test_the_report_counts_the_tests_that_used_a_file_kept_by_layers(shop):
    """With layers the second and third test load nothing: they used the files all the same."""
    shop.makepyfile(
        """
        import pytest
        from sqlfix import uses

        @uses("orders.sql")
        @pytest.mark.parametrize("n", range(3))
        def test_orders(n):
            pass
        """
    )
    result = shop.runpytest_subprocess("--sqlfix-report", "--sqlfix-layers", *NO_RANDOM)
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    section = out[out.index("sqlfix report"):]
    rows = {m[0]: (int(m[1]), int(m[2])) for m in
            re.findall(r"^(\S+\.sql)\s+(\d+)\s+[\d.]+\s+(\d+)\s+[\d.]+\s+\S+$", section, re.M)}
    assert rows == {"users.sql": (3, 1), "products.sql": (3, 1), "orders.sql": (3, 1)}
    assert "slowest loads (of 1):" in section


def test_a_committed_test_is_in_the_failure_report_and_the_load_report(shop):
    from sqlfix.compiler.seeds import derive_seed

    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("users.sql", commit=True)
        def test_committed(sqlfix):
            sqlfix.load("products.sql")
            assert 0
        """
    )
    result = shop.runpytest_subprocess("--sqlfix-report", "--sqlfix-seed=3", *NO_RANDOM)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"fixtures loaded: users.sql (seed {derive_seed(3, 'users.sql')}), "
        f"products.sql (seed {derive_seed(3, 'products.sql')})"])
    out = result.stdout.str()
    section = out[out.index("sqlfix report"):]
    rows = {m[0]: (int(m[1]), int(m[2])) for m in
            re.findall(r"^(\S+\.sql)\s+(\d+)\s+[\d.]+\s+(\d+)\s+[\d.]+\s+\S+$", section, re.M)}
    assert rows == {"users.sql": (1, 1), "products.sql": (1, 1)}


def test_every_plugin_object_sqlfix_registers_is_hashable(shop):
    # pytest before 9.1 keeps plugin objects in a set: an unhashable one (a dataclass with
    # eq) crashed every run with --sqlfix-report ("unhashable type: 'LoadReport'").
    # -n 1: the xdist controller's plugin objects are registered only when xdist
    # distributes; the controller then has them all (the entry module, the seed, the
    # stop, the report).
    shop.makeconftest(
        """
        def pytest_sessionstart(session):
            plugins = session.config.pluginmanager.list_name_plugin()
            ours = [p for name, p in plugins if name.startswith("sqlfix")]
            if not hasattr(session.config, "workerinput"):
                assert len(ours) >= 4, plugins
            for plugin in ours:
                hash(plugin)
        """
    )
    shop.makepyfile("def test_a(sqlfix): pass")
    result = shop.runpytest_subprocess("--sqlfix-report", "-p", "no:randomly", "-n", "1")
    result.assert_outcomes(passed=1)


def test_without_the_option_there_is_no_report(shop):
    shop.makepyfile("def test_a(sqlfix): pass")
    assert "sqlfix report" not in shop.runpytest(*NO_RANDOM).stdout.str()


# ------------------------------------------------------------------ unittest


def test_a_unittest_testcase_gets_the_handle_as_self_sqlfix(shop):
    shop.makepyfile(
        """
        import unittest
        from sqlfix import uses

        @uses("users.sql")
        class TestUsers(unittest.TestCase):
            def setUp(self):
                self.conn = self.sqlfix.conn

            def test_count(self):
                self.assertEqual(self.conn.execute("SELECT count(*) FROM users").fetchone(), (4,))
                self.conn.execute("DELETE FROM users")
                self.conn.commit()

            @uses("orders.sql")
            def test_more(self):
                self.assertEqual(self.sqlfix.loaded, ("users.sql", "products.sql", "orders.sql"))

        class TestPlain(unittest.TestCase):
            def test_no_attribute(self):
                self.assertFalse(hasattr(self, "sqlfix"))

        def test_rolled_back(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)

        @uses("users.sql")
        class TestOwnName(unittest.TestCase):
            sqlfix = "mine"  # a name of the test's own: an error, not overwritten

            def test_mine(self):
                self.assertEqual(self.sqlfix, "mine")
        """
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*TestOwnName has an attribute `sqlfix` of its own, and sqlfix "
                                 "sets `self.sqlfix` (its handle)*rename that attribute*"])


def test_a_skipped_unittest_method_starts_no_database_and_a_bare_mark_gives_the_handle(shop):
    shop.makepyfile(
        """
        import unittest
        import pytest
        from sqlfix import uses

        @uses("users.sql")
        class TestSkipped(unittest.TestCase):
            @unittest.skip("not today")
            def test_skip(self):
                raise AssertionError("ran")

        @pytest.mark.sqlfix
        class TestLoadsItsOwn(unittest.TestCase):
            def test_load(self):
                self.assertEqual(self.sqlfix.load("users.sql"), ("users.sql",))
        """
    )
    # -k: the skipped test alone, against a database that cannot be reached
    alone = shop.runpytest("-k", "test_skip", "--sqlfix-dsn=host=/nonexistent dbname=x_test",
                           "-rs", *NO_RANDOM)
    alone.assert_outcomes(skipped=1)
    alone.stdout.fnmatch_lines(["*not today*"])
    result = shop.runpytest("--sqlfix-report", *NO_RANDOM)
    result.assert_outcomes(passed=1, skipped=1)
    assert "TestSkipped" not in result.stdout.str().split("sqlfix report")[1]


# ------------------------------------------------------------------ ini options and discovery


def _cli(cwd, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_")}
    return subprocess.run([sys.executable, "-m", "sqlfix", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.mark.parametrize(("given", "name"), [
    ("file", "sqlfix_sead"), ("-o", "sqlfix_sead"),
    # pytest's option names are case-sensitive: it would not read this one (nor does the CLI)
    ("file", "SQLFIX_SEED"), ("-o", "Sqlfix_Seed")])
def test_a_misspelled_sqlfix_ini_option_is_an_error_for_pytest_and_the_cli(shop, given, name):
    if given == "file":
        shop.makefile(".ini", pytest=INI + f"{name} = 1\n")
        args: tuple[str, ...] = ()
        where = str(shop.path / "pytest.ini")
    else:
        args, where = ("-o", f"{name}=1"), "pytest -o"
    shop.makepyfile("def test_db(sqlfix_conn): pass")
    result = shop.runpytest(*args, *NO_RANDOM)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    hint = ("" if name == "sqlfix_sead"
            else " (pytest's option names are case-sensitive: write sqlfix_seed)")
    said = f"{where}: unknown sqlfix option(s): {name}{hint}; known options are "
    assert f"ERROR: sqlfix: {said}sqlfix_allow_any_database, " in result.stderr.str()
    if given == "file":  # the CLI reads the same file
        cli = _cli(shop.path, "render", "users.sql")
        assert cli.returncode == 2
        assert said in cli.stderr


def test_ini_options_set_any_key_below_env_and_above_tool_sqlfix(shop, monkeypatch):
    shop.makepyprojecttoml(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\nseed = 3\n'
        '[tool.pytest.ini_options]\nsqlfix_seed = "5"\nsqlfix_reset_sequences = false\n'
        'sqlfix_now = "2030-05-06T07:08:09+00:00"\n'
    )
    shop.makepyfile(
        """
        def test_settings(sqlfix, pytestconfig):
            from sqlfix.pytest_plugin.plugin import SETTINGS_KEY
            s = pytestconfig.stash[SETTINGS_KEY]
            assert (s.seed, s.reset_sequences, s.now.year) == (5, False, 2030)
        """
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["sqlfix: seed=5 (*pyproject.toml); replay with --sqlfix-seed=5"])
    monkeypatch.setenv("SQLFIX_SEED", "6")
    shop.runpytest(*NO_RANDOM).stdout.fnmatch_lines(["sqlfix: seed=6 (env SQLFIX_SEED)*"])


@pytest.mark.parametrize("test", [
    "from sqlfix import uses\n@uses('users.sql')\ndef test_marked(): pass",
    "def test_fixture(sqlfix_conn): pass",
    "import pytest\n@pytest.fixture\ndef mine(sqlfix): pass\ndef test_through_mine(mine): pass",
    "def test_nothing(): pass",  # with a --sqlfix-* option given: read at once
], ids=["marker", "fixture", "fixture-of-a-fixture", "option"])
def test_a_bad_ini_value_names_the_file_and_option(shop, test):
    shop.makefile(".ini", pytest="[pytest]\nasyncio_default_fixture_loop_scope = function\n"
                  "sqlfix_allow_any_database = maybe\n")
    shop.makepyfile(test)
    result = shop.runpytest(*(["--sqlfix-seed=3"] if "nothing" in test else []))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest.ini: sqlfix_allow_any_database = 'maybe' must be true or false"])
    assert "passed" not in result.stdout.str()  # stopped before any test ran


INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
SHOW_TIMEZONE = """
def test_timezone(sqlfix_conn):
    assert sqlfix_conn.execute("SHOW timezone").fetchone() == ("Europe/Paris",)
"""


def test_server_settings_from_the_ini_option_reach_the_embedded_server(shop):
    shop.makefile(".ini", pytest=INI + "sqlfix_server_settings =\n    timezone = Europe/Paris\n"
                  "    work_mem = '9MB'\n")
    shop.makepyfile(SHOW_TIMEZONE + "def test_work_mem(sqlfix_conn):\n"
                    "    assert sqlfix_conn.execute('SHOW work_mem').fetchone() == ('9MB',)\n")
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=2)


def test_a_setting_the_server_refuses_is_named_with_where_it_was_set(shop):
    """PostgreSQL's own refusal names the parameter only: sqlfix adds the key and source."""
    shop.makepyfile("def test_db(sqlfix_conn): pass")
    result = shop.runpytest(*NO_RANDOM, "-o", "sqlfix_server_settings=work_mem = 1")
    out = result.stdout.str() + result.stderr.str()
    assert 'outside the valid range for parameter "work_mem"' in out
    assert "server_settings work_mem = '1' (from pytest -o)" in out
    assert "Traceback" not in out


@pytest.mark.parametrize(("lines", "message"), [
    ("timezone = UTC; jit = on", "sqlfix_server_settings: 'timezone = UTC; jit = on' is not "
     "a `name = value` line (a value with spaces is quoted, as in postgresql.conf: 'UTC; jit "
     "= on'; one setting a line); write one setting a line, e.g. `timezone = Europe/Paris  # *"),
    ("port = 5433", "sqlfix_server_settings.port: port is set by sqlfix (use server_port*"),
    ("jit = on\n    jit = off", "sqlfix_server_settings: jit is set twice"),
])
def test_a_bad_server_settings_line_stops_the_run_naming_the_ini_file(shop, lines, message):
    shop.makefile(".ini", pytest=INI + f"sqlfix_server_settings =\n    {lines}\n")
    shop.makepyfile("def test_db(sqlfix_conn): pass")
    result = shop.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: sqlfix: {shop.path / 'pytest.ini'}: {message}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.skipif(pytest.version_tuple < (9,), reason="pytest.toml is pytest 9's")
def test_pytest_toml_takes_unquoted_ints_booleans_dates_and_tables(shop):
    shop.makefile(".toml", pytest=(
        '[pytest]\nasyncio_default_fixture_loop_scope = "function"\n'
        "sqlfix_seed = 9\nsqlfix_verify = true\nsqlfix_reset_sequences = false\n"
        "sqlfix_lock_timeout = 1500\nsqlfix_now = 2030-05-06T07:08:09Z\n"
        'sqlfix_server_settings = ["timezone = Europe/Paris"]\n'))
    shop.makepyfile(SHOW_TIMEZONE + """
def test_settings(sqlfix, pytestconfig):
    from sqlfix.pytest_plugin.plugin import SETTINGS_KEY
    s = pytestconfig.stash[SETTINGS_KEY]
    assert (s.seed, s.verify, s.reset_sequences, s.lock_timeout) == (9, True, False, 1500)
    assert (s.now.year, sqlfix.seed) == (2030, 9)
""")
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["sqlfix: seed=9 (*pytest.toml); replay with --sqlfix-seed=9"])
    # -o still wins over the file, as text
    shop.runpytest(*NO_RANDOM, "-o", "sqlfix_seed=4", "-k", "settings").stdout.fnmatch_lines(
        ["sqlfix: seed=4 *"])
    assert _cli(shop.path, "render", "users.sql").stdout.startswith(
        "-- sqlfix: users.sql (seed 9)\n")


def test_a_bad_value_given_with_o_is_named_as_pytest_o_not_the_file(shop):
    """The file sets it well; the -o override is the one to blame, and the header says
    where the seed came from."""
    shop.makeini("[pytest]\nsqlfix_layers_max_tests = 5\nsqlfix_seed = 3\n")
    shop.makepyfile("def test_a(sqlfix_conn):\n    pass\n")
    result = shop.runpytest(*NO_RANDOM, "-o", "sqlfix_layers_max_tests=0")
    result.stderr.fnmatch_lines(
        ["ERROR: sqlfix: pytest -o: sqlfix_layers_max_tests: '0' must be a whole number of 1*"])
    assert "tox.ini" not in result.stderr.str() and "pytest.ini" not in result.stderr.str()
    result = shop.runpytest(*NO_RANDOM, "-o", "sqlfix_seed=4")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["sqlfix: seed=4 (pytest -o*"])


@pytest.mark.skipif(pytest.version_tuple < (9,), reason="pytest.toml is pytest 9's")
@pytest.mark.parametrize(("value", "message"), [
    ("1.5", "sqlfix_seed = 1.5 must be an integer or 'random'"),
    ("[9]", "sqlfix_seed = [9] must be an integer or 'random'"),
    ('"seven"', "sqlfix_seed: seed must be a non-negative integer or 'random', not 'seven'"),
])
def test_a_bad_native_value_in_pytest_toml_names_the_file(shop, value, message):
    shop.makefile(".toml", pytest='[pytest]\nasyncio_default_fixture_loop_scope = "function"\n'
                  f"sqlfix_seed = {value}\n")
    shop.makepyfile("def test_db(sqlfix_conn): pass")
    result = shop.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: sqlfix: {shop.path / 'pytest.toml'}: {message}" in result.stderr.str()


def test_a_missing_schema_file_from_the_ini_option_names_the_ini_file(shop):
    shop.makefile(".ini", pytest=INI + "sqlfix_schema =\n    fixtures_sql/schema.sql\n"
                  "    db/missing.sql\n")
    shop.makepyfile("def test_db(sqlfix_conn): pass")
    result = shop.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: sqlfix: {shop.path / 'pytest.ini'}: sqlfix_schema: schema file db/missing.sql "
        "not found (looked for */db/missing.sql); fix the path, relative to the project root, "
        "or create the file"])
    assert "[tool.sqlfix]" not in result.stderr.str()


DATE_ALONE = "now = 2024-01-01 is a date alone; now is a timestamp: give the time too, " \
    "e.g. 2024-01-01T00:00:00+00:00"


@pytest.mark.parametrize("where", ["pytest.ini", "pytest.toml", "tool.sqlfix", "quoted"])
def test_a_date_alone_as_now_stops_the_run_wherever_it_is_set(shop, where):
    if where == "pytest.toml" and pytest.version_tuple < (9,):
        pytest.skip("pytest.toml is pytest 9's")
    if where == "pytest.ini":
        shop.makefile(".ini", pytest=INI + "sqlfix_now = 2024-01-01\n")
        expected = f"{shop.path / 'pytest.ini'}: sqlfix_{DATE_ALONE}"
    elif where == "pytest.toml":
        shop.makefile(".toml", pytest='[pytest]\nsqlfix_now = 2024-01-01\n'
                      'asyncio_default_fixture_loop_scope = "function"\n')
        expected = f"{shop.path / 'pytest.toml'}: sqlfix_{DATE_ALONE}"
    else:
        value = "2024-01-01" if where == "tool.sqlfix" else '"2024-01-01"'
        shop.makepyprojecttoml(f'[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
                               f"now = {value}\n[tool.pytest.ini_options]\n"
                               'asyncio_default_fixture_loop_scope = "function"\n')
        expected = f"{shop.path / 'pyproject.toml'}: [tool.sqlfix] {DATE_ALONE}"
    shop.makepyfile("def test_db(sqlfix_conn): pass")
    result = shop.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: sqlfix: {expected}" in result.stderr.str()


def test_a_run_with_no_sqlfix_test_does_not_read_the_configuration(shop):
    """Decided in #12: the configuration is read (and checked) once a collected test needs
    sqlfix; a run without one, e.g. `-k` picking only unit tests, is not stopped by it."""
    shop.makefile(".ini", pytest="[pytest]\nasyncio_default_fixture_loop_scope = function\n"
                  "sqlfix_allow_any_database = maybe\n")
    shop.makepyprojecttoml("[tool.sqlfix]\nno_such_key = 1\n")
    shop.makepyfile("def test_unit(): pass\ndef test_db(sqlfix_conn): pass")
    result = shop.runpytest("-k", "unit")
    result.assert_outcomes(passed=1, deselected=1)
    assert "sqlfix: seed=" not in result.stdout.str()
    result = shop.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_plugin_and_cli_read_the_same_configuration_from_a_subfolder(shop):
    shop.makepyprojecttoml('[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\nseed = 3\n')
    sub = shop.mkdir("sub")
    (sub / "pytest.ini").write_text(
        "[pytest]\nsqlfix_seed = 7\nsqlfix_fixtures_dir = ../fixtures_sql\n"
        "sqlfix_schema = ../fixtures_sql/schema.sql\n")
    (sub / "test_s.py").write_text("def test_seed(sqlfix):\n    assert sqlfix.seed == 7\n")
    os.chdir(sub)
    result = shop.runpytest_subprocess(*NO_RANDOM)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"sqlfix: seed=7 ({sub / 'pytest.ini'}); *"])
    rendered = _cli(sub, "render", "users.sql")
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout.startswith("-- sqlfix: users.sql (seed 7)\n")
    # from the root, both see [tool.sqlfix]
    root = _cli(shop.path, "render", "users.sql")
    assert root.stdout.startswith("-- sqlfix: users.sql (seed 3)\n")


def test_the_replay_command_names_the_config_file_a_subfolder_would_shadow(shop):
    # Given only the test's path, pytest looks for its configuration from the test's folder
    # up: a subfolder's own pytest.ini would set another `now` than the run had.
    shop.makepyprojecttoml('[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\nseed = 3\n'
                           'now = "2024-01-01T00:00:00Z"\n[tool.pytest.ini_options]\n'
                           'asyncio_default_fixture_loop_scope = "function"\n')
    sub = shop.mkdir("sub")
    (sub / "pytest.ini").write_text(
        "[pytest]\nsqlfix_seed = 11\nsqlfix_fixtures_dir = ../fixtures_sql\n"
        "sqlfix_schema =\n    ../fixtures_sql/schema.sql\nsqlfix_now = 2030-01-01T00:00:00Z\n")
    (sub / "tests").mkdir()
    (sub / "tests" / "test_s.py").write_text(
        "def test_now(sqlfix):\n"
        "    raise AssertionError(sqlfix.render('orders.sql'))\n")
    first = shop.runpytest_subprocess(*NO_RANDOM)
    first.assert_outcomes(failed=1)
    assert "'2024-01-01" in first.stdout.str()
    replay = next(line.strip() for line in first.stdout.lines if line.strip().startswith(
        "pytest sub/tests/test_s.py::test_now"))
    assert replay == ("pytest sub/tests/test_s.py::test_now --sqlfix-seed=3 "
                      "--config-file=pyproject.toml")
    again = shop.runpytest_subprocess(*shlex.split(replay)[1:], *NO_RANDOM)
    again.assert_outcomes(failed=1)
    assert "'2024-01-01" in again.stdout.str()  # the run's `now`, not sub's 2030
    assert "'2030-01-01" not in again.stdout.str()


@pytest.mark.parametrize("line", ["fixtures_sql/my schema.sql", '"fixtures_sql/my schema.sql"'])
def test_plugin_and_cli_read_an_ini_schema_path_with_a_space_alike(shop, line):
    # pytest gives a line-list option its lines; the CLI used to split the text on spaces
    # ("schema file fixtures_sql/my not found") while the test run passed.
    (shop.path / "fixtures_sql" / "schema.sql").rename(shop.path / "fixtures_sql" / "my schema.sql")
    shop.makefile(".ini", pytest=INI + f"sqlfix_schema =\n    {line}\n")
    shop.makepyfile("from sqlfix import uses\n@uses('users.sql')\n"
                    "def test_db(sqlfix_conn):\n"
                    "    assert sqlfix_conn.execute('SELECT count(*) FROM users').fetchone()[0]\n")
    shop.runpytest_subprocess(*NO_RANDOM).assert_outcomes(passed=1)
    checked = _cli(shop.path, "check", "fixtures_sql/users.sql")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK    users.sql" in checked.stdout


def test_two_ini_schema_paths_on_one_line_get_the_same_error_from_plugin_and_cli(shop):
    shop.makefile(".ini", pytest=INI + "sqlfix_schema = fixtures_sql/schema.sql fixtures_sql/schema.sql\n")
    shop.makepyfile("def test_db(sqlfix_conn): pass")
    said = (f"{shop.path / 'pytest.ini'}: sqlfix_schema: schema file fixtures_sql/schema.sql "
            "fixtures_sql/schema.sql not found (looked for ")
    hint = "(these are several paths on one line: write one path per line)"
    result = shop.runpytest_subprocess(*NO_RANDOM)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert said in result.stderr.str() and hint in result.stderr.str()
    checked = _cli(shop.path, "check")
    assert checked.returncode == 2 and said in checked.stderr and hint in checked.stderr


def test_the_cli_finds_pytest_configuration_files_as_pytest_does(tmp_path):
    from sqlfix.config import find_project

    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[tool.sqlfix]\nseed = 1\n")
    assert find_project(deep).root == tmp_path and find_project(deep).inifile is None
    (tmp_path / "a" / "setup.cfg").write_text("[metadata]\nname = x\n")  # no [tool:pytest]
    assert find_project(deep).root == tmp_path
    (tmp_path / "a" / "tox.ini").write_text("[pytest]\nsqlfix_seed = 4\n")
    assert find_project(deep).root == tmp_path / "a"
    (deep / "pyproject.toml").write_text("[tool.pytest.ini_options]\nsqlfix_seed = 9\n")
    project = find_project(deep)
    assert (project.root, project.ini["sqlfix_seed"]) == (deep, "9")


# ------------------------------------------------------------------ shards


@pytest.mark.parametrize("seed", [(), ("--sqlfix-seed=12",)], ids=["default-seed", "seed-12"])
def test_two_runs_with_different_subsets_render_and_load_the_same_bytes(shop, seed):
    """CI shards: each machine runs some tests, in its own order, and the data is the same
    on all: the rendered text and the rows the database then holds."""
    shop.makepyfile(
        """
        import pathlib
        import pytest

        NAMES = ["users.sql", "products.sql", "orders.sql", "inventory_audit.sql"]
        TABLES = ["users", "products", "orders", "order_items"]

        @pytest.mark.parametrize("name", NAMES)
        def test_render(sqlfix, name):
            pathlib.Path(f"rendered-{name}").write_bytes(sqlfix.render(name).encode())

        @pytest.mark.parametrize("name", NAMES)
        def test_load(sqlfix, sqlfix_conn, name):
            sqlfix.load(name)
            rows = [sqlfix_conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES]
            pathlib.Path(f"loaded-{name}").write_text(repr(rows))
        """
    )
    runs = {}
    for shard, names in (("a", "users or orders"), ("b", "inventory or products or orders or users")):
        result = shop.runpytest_subprocess("-k", names, "-p", "randomly", *seed)
        assert result.ret == 0
        made = [*shop.path.glob("rendered-*"), *shop.path.glob("loaded-*")]
        runs[shard] = {p.name: p.read_bytes() for p in made}
        for p in made:
            p.unlink()
    assert set(runs["a"]) == {"rendered-users.sql", "rendered-orders.sql", "loaded-users.sql",
                              "loaded-orders.sql"}
    assert len(runs["b"]) == 8
    for name in runs["a"]:
        assert runs["a"][name] == runs["b"][name], name
    assert runs["a"]["loaded-users.sql"].count(b"@") == 4  # the four users, emails and all


def test_the_replay_options_read_every_spelling_and_leave_the_password_out():
    from sqlfix.pytest_plugin.report import _given, _without_password

    args = ["-o", "sqlfix_seed_x=1", "-osqlfix_now=2024-01-01T00:00:00Z", "--override-ini=a=b",
            "--override-ini", "sqlfix_verify=true", "-c", "ci.ini", "--config-file=x.toml",
            "-k", "cat", "tests/x.py"]
    assert _given(args) == [
        "--override-ini=sqlfix_seed_x=1", "--override-ini=sqlfix_now=2024-01-01T00:00:00Z",
        "--override-ini=sqlfix_verify=true", "--config-file=ci.ini", "--config-file=x.toml"]
    assert "secret" not in _without_password("host=db dbname=app_test password=secret user=u")
    assert "secret" not in _without_password("postgresql://u:secret@db/app_test")
    assert _without_password("host=db dbname=app_test") == "host=db dbname=app_test"


def test_a_cache_folder_that_cannot_be_made_is_a_warning_not_an_error(shop):
    # a read-only checkout (docker run -v $PWD:/src:ro): pytest warns about its cache, and
    # so does sqlfix, once; the tests run, the failure report says no log was kept
    shop.makepyfile(
        """
        from sqlfix import uses

        @uses("users.sql")
        def test_ok(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)

        @uses("users.sql")
        def test_fails(sqlfix_conn):
            assert False
        """
    )
    result = shop.runpytest_subprocess("-o", "cache_dir=/dev/null/cache", *NO_RANDOM)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert out.count("sqlfix: could not create its folder in pytest's cache") == 1
    assert "Traceback" not in out and "OSError" not in out.split("warnings summary")[0]


def test_a_dsn_to_a_database_not_named_test_is_refused_once_under_xdist(shop):
    shop.makepyfile("def test_a(sqlfix): pass\ndef test_b(sqlfix): pass")
    result = shop.runpytest_subprocess(
        "-n", "2", "--sqlfix-dsn", "host=/nonexistent dbname=shop_prod", *NO_RANDOM)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert out.count("refusing to use database 'shop_prod'") == 1
    assert "Traceback" not in out and "gw0" not in out


@pytest.mark.parametrize("then", ["", "sqlfix_conn.execute('SELECT 1')"])
def test_a_lost_connection_names_the_server_settings_that_may_have_ended_it(shop, then):
    # idle_in_transaction_session_timeout ends the test's connection while the test sleeps
    # inside its transaction: the report blamed the test alone. Found by sqlfix at the
    # test's end, or by the test's own next statement (the test fails on it, and the
    # teardown quotes the server's words libpq kept).
    shop.makefile(".ini", pytest=INI + "sqlfix_server_settings =\n"
                  "    idle_in_transaction_session_timeout = 300ms\n")
    shop.makepyfile(f"""
        import time
        from sqlfix import uses

        @uses("users.sql")
        def test_slow(sqlfix_conn):
            time.sleep(1.5)
            {then}

        def test_next(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT 1").fetchone() == (1,)
    """)
    result = shop.runpytest_subprocess(*NO_RANDOM)
    out = result.stdout.str()
    assert "connection was lost" in out, out
    assert ("The server ran with server_settings idle_in_transaction_session_timeout = "
            "'300ms' (from " in out), out
    assert "The server said: terminating connection due to idle-in-transaction timeout" in out
    if not then:
        assert "IdleInTransactionSessionTimeout" not in out  # was a raw psycopg traceback
        result.assert_outcomes(failed=1, passed=1)
    else:  # the test's own statement failed; sqlfix's word comes at tear-down
        result.assert_outcomes(failed=1, passed=1, errors=1)


def test_a_connection_an_administrator_ended_does_not_blame_the_server_settings(shop):
    shop.makefile(".ini", pytest=INI + "sqlfix_server_settings =\n    work_mem = 8MB\n")
    shop.makepyfile("""
        import psycopg

        def test_ended(sqlfix_conn):
            pid = sqlfix_conn.info.backend_pid
            with psycopg.connect(sqlfix_conn.info.dsn, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", [pid])
    """)
    result = shop.runpytest_subprocess(*NO_RANDOM)
    out = result.stdout.str()
    assert "The server said: terminating connection due to administrator command" in out, out
    assert "The server ran with server_settings" not in out
