"""Every test starts from the same database and the same session (issue #9, runs 1-7).

Each test here is one way a hostile test author broke that promise; the inner runs
use the real embedded PostgreSQL.
"""

from __future__ import annotations

import pytest
from helpers import NO_RANDOM

SCHEMA_T = (
    "CREATE TABLE t (id int PRIMARY KEY, note text);\n"
    "CREATE ROLE lowpriv NOLOGIN;\n"
)


def _project(pytester, schema: str = SCHEMA_T, extra: str = "") -> None:
    (pytester.path / "schema.sql").write_text(schema)
    pytester.makepyprojecttoml(f'[tool.sqlfix]\nschema = ["schema.sql"]\n{extra}')


def test_1_a_committed_search_path_does_not_reach_later_tests(pytester):
    _project(pytester)
    pytester.makepyfile(
        """
def test_1_escapes(sqlfix_conn):
    sqlfix_conn.execute("SET search_path = pg_catalog; COMMIT")

def test_2_sees_t(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert sqlfix_conn.execute("SHOW search_path").fetchone() == ('"$user", public',)

def test_3_sets_it_without_commit(sqlfix_conn):
    sqlfix_conn.execute("SET search_path = pg_catalog")
    sqlfix_conn.commit()  # a savepoint: stays in the test's transaction

def test_4_sees_t(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_1_escapes*", "*sqlfix restored the baseline*"])


def test_2_a_committed_temp_table_does_not_shadow_the_real_one(pytester):
    _project(pytester)
    pytester.makepyfile(
        """
def test_1_shadows(sqlfix_conn):
    sqlfix_conn.execute("CREATE TEMP TABLE t (id int, note text)")
    sqlfix_conn.execute("INSERT INTO t VALUES (1, 'shadow'), (2, 'shadow')")
    sqlfix_conn.execute("COMMIT")

def test_2_real_table(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert sqlfix_conn.execute("SELECT pg_my_temp_schema()::int").fetchone() == (0,)

def test_3_shadows_with_preserved_rows(sqlfix_conn):
    sqlfix_conn.execute("CREATE TEMP TABLE t (id int, note text) ON COMMIT PRESERVE ROWS")
    sqlfix_conn.execute("INSERT INTO t VALUES (1, 'shadow')")

def test_4_real_table(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
"""
    )
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=3, failed=1)


def test_3_the_restore_runs_as_the_session_user_after_set_role(pytester):
    _project(pytester)
    pytester.makepyfile(
        """
def test_1_drops_privileges(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO t VALUES (1, 'escaped')")
    sqlfix_conn.execute("SET ROLE lowpriv; COMMIT")

def test_2_clean_and_back_to_the_session_user(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert sqlfix_conn.execute("SELECT current_user = session_user").fetchone() == (True,)

def test_3_set_session_authorization_without_commit(sqlfix_conn):
    sqlfix_conn.execute("SET SESSION AUTHORIZATION lowpriv")

def test_4_back_again(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT current_user = session_user, current_user <> 'lowpriv'").fetchone() == (True, True)
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*sqlfix restored the baseline: truncated 1 table,*"])


def test_4_session_state_a_test_leaves_does_not_reach_the_next(pytester):
    _project(pytester)
    pytester.makepyfile(
        """
import pytest

STATE = '''
SELECT (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),
       (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'),
       (SELECT count(*) FROM pg_listening_channels()),
       (SELECT count(*) FROM pg_cursors),
       current_setting('work_mem'), current_user = session_user
'''
CLEAN = (0, 0, 0, 0, "4MB", True)

@pytest.mark.parametrize("n", range(3))
def test_leaves_state(sqlfix_conn, n):
    assert sqlfix_conn.execute(STATE).fetchone() == CLEAN
    sqlfix_conn.execute("PREPARE p AS SELECT 1")
    sqlfix_conn.execute("SELECT pg_advisory_lock(42)")
    sqlfix_conn.execute("LISTEN x")
    sqlfix_conn.execute("DECLARE c CURSOR WITH HOLD FOR SELECT 1")
    sqlfix_conn.execute("SET work_mem = '64MB'")
    sqlfix_conn.execute("SET ROLE lowpriv")
    sqlfix_conn.commit()

@pytest.mark.parametrize("n", range(3))
def test_prepared_by_psycopg_still_work(sqlfix_conn, n):
    for _ in range(8):  # past psycopg's prepare threshold: server-side prepared
        assert sqlfix_conn.execute("SELECT %s::int", [n]).fetchone() == (n,)
"""
    )
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=6)


def test_5_a_lock_held_by_a_forgotten_connection_times_out_with_a_clear_error(pytester):
    _project(pytester, "CREATE TABLE t (id int PRIMARY KEY, note text);\n",
             'load_lock_timeout = "300ms"\nlock_timeout = "400ms"\n')
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "rows.sql").write_text(
        "-- a row\nINSERT INTO t VALUES (1, 'one');\n")
    pytester.makepyfile(
        """
import psycopg
from sqlfix import uses

FORGOTTEN = []

def test_1_opens_a_second_connection_and_keeps_a_lock(sqlfix_conn):
    other = psycopg.connect(sqlfix_conn.info.dsn)
    other.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
    FORGOTTEN.append(other)  # never closed, never committed

@uses("rows.sql")
def test_2_load_waits():
    pass

def test_3_body_waits(sqlfix_conn):
    sqlfix_conn.execute("SELECT count(*) FROM t")

def test_4_lock_released(sqlfix_conn):
    FORGOTTEN.pop().close()
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_2_load_waits*",
        "*fixtures_sql/rows.sql:2:*: SQLF701 server rejected the statement: 55P03*",
        "*the fixture load waited longer than load_lock_timeout (300 ms, *pyproject.toml)*",
    ])
    result.stdout.fnmatch_lines([
        "*test_3_body_waits*", "*LockNotAvailable*",
        "*the test waited longer than lock_timeout (400 ms*",
    ])


def test_5_a_cancel_or_a_nowait_lock_is_not_called_a_timeout(pytester):
    """57014 and 55P03 also mean a cancel request and a NOWAIT lock that was not free;
    and a test may SET its own timeout: the words must not send the user to raise a
    limit that was never reached."""
    _project(pytester, "CREATE TABLE t (id int PRIMARY KEY, note text);\n")
    pytester.makepyfile(
        """
import threading
import psycopg

def test_1_own_statement_timeout(sqlfix_conn):
    sqlfix_conn.execute("SET statement_timeout = '50ms'")
    sqlfix_conn.execute("SELECT pg_sleep(5)")

def test_2_nowait(sqlfix_conn):
    with psycopg.connect(sqlfix_conn.info.dsn) as other:
        other.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        sqlfix_conn.execute("LOCK TABLE t IN ACCESS SHARE MODE NOWAIT")

def test_3_cancelled(sqlfix_conn):
    threading.Timer(0.3, sqlfix_conn.cancel).start()
    sqlfix_conn.execute("SELECT pg_sleep(5)")

def test_4_row_nowait(sqlfix_conn):
    with psycopg.connect(sqlfix_conn.info.dsn) as other:
        other.execute("INSERT INTO t VALUES (7, 'held')")
        other.commit()
        other.execute("SELECT * FROM t WHERE id = 7 FOR UPDATE")
        try:
            sqlfix_conn.execute("SELECT * FROM t WHERE id = 7 FOR UPDATE NOWAIT")
        finally:
            other.rollback()
            other.execute("DELETE FROM t WHERE id = 7")
            other.commit()
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(failed=4)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*test_1_own_statement_timeout*", "*QueryCanceled*",
        "*ran longer than statement_timeout (300000 ms, default, unless the test or the code "
        "under test SET its own)*",
    ])
    result.stdout.fnmatch_lines([
        "*test_2_nowait*", "*LockNotAvailable*",
        "*the test asked for a lock with NOWAIT and another connection held it (no timeout*",
    ])
    result.stdout.fnmatch_lines([
        "*test_4_row_nowait*", "*LockNotAvailable*",
        "*the test asked for a lock with NOWAIT and another connection held it (no timeout*",
    ])
    result.stdout.fnmatch_lines([
        "*test_3_cancelled*", "*QueryCanceled*",
        "*was cancelled by a cancel request*not by a timeout*",
    ])
    assert "waited longer than lock_timeout" not in out, out
    assert out.count("ran longer than statement_timeout") == 1, out


def test_6_a_fixture_that_ends_its_own_session_is_named_and_the_run_goes_on(pytester):
    _project(pytester, "CREATE TABLE t (id int PRIMARY KEY, note text);\n")
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "suicide.sql").write_text(
        "INSERT INTO t VALUES (1, 'x');\nSELECT pg_terminate_backend(pg_backend_pid());\n")
    pytester.makepyfile(
        """
import pytest
from sqlfix import uses

@uses("suicide.sql")
def test_1_sql_fixture_kills_its_backend():
    pass

@pytest.fixture
def closes_its_backend(sqlfix_conn):
    sqlfix_conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

def test_2_python_fixture_kills_its_backend(closes_its_backend):
    pass

def test_3_killed_by_another_session(sqlfix_conn):
    import psycopg
    with psycopg.connect(sqlfix_conn.info.dsn, autocommit=True) as other:
        pid = sqlfix_conn.info.backend_pid
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # waits until it is gone

def test_4_runs_normally(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    # test_2 errors in set-up (its fixture's own error) and at tear-down (sqlfix's words)
    result.assert_outcomes(passed=1, errors=3, failed=1)
    out = result.stdout.str()
    # the guard refuses the call by name (and the restricted role sqlfix_fixture could not run it)
    result.stdout.fnmatch_lines(["*suicide.sql:2:*: SQLF104 pg_terminate_backend() reaches outside*"])
    assert "the test's database connection was lost" in out
    assert "Traceback" not in out.split("ERROR at setup of test_1")[1].split("____")[0]


def test_6_a_killed_embedded_server_is_named_and_restarted(pytester):
    _project(pytester, "CREATE TABLE t (id int PRIMARY KEY, note text);\nINSERT INTO t VALUES (7, 'schema row');\n")
    pytester.makepyfile(
        """
import os, signal, time
from pathlib import Path

import psycopg

def test_0_takes_the_dsn(sqlfix_dsn):
    test_0_takes_the_dsn.dsn = sqlfix_dsn

def test_1_kills_the_postmaster(sqlfix_conn):
    data = sqlfix_conn.execute("SHOW data_directory").fetchone()[0]
    pid = int((Path(data) / "postmaster.pid").read_text().split()[0])
    sqlfix_conn.execute("INSERT INTO t VALUES (1, 'x')")
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)

def test_2_runs_normally(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT id FROM t").fetchall() == [(7,)]

def test_3_and_so_on(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (1,)

def test_4_the_dsn_given_before_still_works(sqlfix_dsn):
    # the server came back in its own directory: same socket, same DSN
    assert sqlfix_dsn == test_0_takes_the_dsn.dsn
    with psycopg.connect(sqlfix_dsn) as c:
        assert c.execute("SELECT count(*) FROM t").fetchone() == (1,)
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines([
        "*test_1_kills_the_postmaster*",
        "*the test's database connection was lost*",
        "*the embedded PostgreSQL was killed by SIGKILL: its log*",
        "*sqlfix started the embedded PostgreSQL again (same DSN) and built the test database again*",
    ])
    assert "escaped" not in result.stdout.str()


@pytest.mark.parametrize("how", ["the test closes it", "the test ends its backend"])
def test_6_a_server_stopped_by_sigterm_is_started_again(pytester, how):
    """A smart shutdown (SIGTERM, `pg_ctl stop -m smart`) ends the postmaster only once
    sqlfix's own connection closes, a moment after the restore found it gone: the run
    must start it again, not stop with 'cannot connect'."""
    _project(pytester, "CREATE TABLE t (id int PRIMARY KEY, note text);\n")
    end = ("sqlfix_conn.close()" if how == "the test closes it" else
           "sqlfix_conn.execute('SELECT pg_terminate_backend(pg_backend_pid())')")
    pytester.makepyfile(
        f"""
import os, signal
from pathlib import Path

def test_1_stops_the_postmaster(sqlfix_conn):
    data = sqlfix_conn.execute("SHOW data_directory").fetchone()[0]
    os.kill(int((Path(data) / "postmaster.pid").read_text().split()[0]), signal.SIGTERM)

def test_2_ends_the_connection(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO t VALUES (1, 'x'); COMMIT")
    {end}

def test_3_runs_normally(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    out = result.stdout.str()
    assert result.ret == 1, out  # a failure, not an exit 3 that stops the run
    # a killed backend also fails its test at tear-down, with the restore's words
    result.assert_outcomes(passed=2, failed=1, errors=0 if "closes" in how else 1)
    assert "could not be restored" not in out, out
    result.stdout.fnmatch_lines([
        "*the embedded PostgreSQL exited (exit code 0): its log*",
        "*sqlfix started the embedded PostgreSQL again (same DSN)*",
    ])


def test_6_a_connection_closed_by_a_fixture_is_not_called_lost(pytester):
    """close() by a fixture is the client's doing; a backend ended by the server is not."""
    _project(pytester, "CREATE TABLE t (id int PRIMARY KEY, note text);\n")
    pytester.makepyfile(
        """
import psycopg
import pytest

@pytest.fixture
def closes_it(sqlfix_conn):
    sqlfix_conn.close()

def test_1_closed_by_a_fixture(closes_it, sqlfix_conn):
    sqlfix_conn.execute("SELECT 1")

def test_2_ended_by_the_server(sqlfix_conn):
    with psycopg.connect(sqlfix_conn.info.dsn, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [sqlfix_conn.info.backend_pid])
    sqlfix_conn.execute("SELECT 1")

def test_3_runs_normally(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    out = result.stdout.str()
    first = out.split("_ test_1_closed_by_a_fixture _")[1].split("_ test_2_ended_by_the_server _")[0]
    assert "connection was closed by the client" in first, out
    assert "the server ended its backend" not in first, out
    second = out.split("_ test_2_ended_by_the_server _")[1]
    assert "the test's database connection was lost (the server ended its backend" in second, out
    assert "closed by the client" not in second, out
    assert "test_3" not in out.split("short test summary")[-1], out


def test_7_a_pg_dump_schema_does_not_leave_its_empty_search_path(pytester):
    _project(pytester,
             "SET statement_timeout = 0;\n"
             "SELECT pg_catalog.set_config('search_path', '', false);\n"
             "CREATE TABLE public.actor (actor_id integer NOT NULL, name text);\n"
             "ALTER TABLE ONLY public.actor ADD CONSTRAINT actor_pkey PRIMARY KEY (actor_id);\n")
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "actors.sql").write_text(
        "INSERT INTO actor (actor_id, name) VALUES (1, 'Ann');\n")
    pytester.makepyfile(
        """
from sqlfix import uses

@uses("actors.sql")
def test_unqualified(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT name FROM actor").fetchall() == [("Ann",)]
    assert sqlfix_conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
"""
    )
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=1)


def test_the_session_reset_can_be_turned_off(pytester):
    _project(pytester, extra="reset_session = false\n")
    pytester.makepyfile(
        """
def test_1_prepares(sqlfix_conn):
    sqlfix_conn.execute("PREPARE p AS SELECT 1")

def test_2_still_there(sqlfix_conn):
    assert sqlfix_conn.execute("EXECUTE p").fetchone() == (1,)
"""
    )
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=2)


@pytest.mark.slow  # timing-sensitive (crash recovery): the whole suite runs it, not the matrix
def test_a_backend_killed_right_after_the_baseline_is_survived(pytester):
    # kill -9 of a backend makes the server recover from its WAL; with the embedded
    # server's synchronous_commit off, the baseline's copies committed just before were
    # lost, and the restore's connection met "the database system is in recovery mode".
    _project(pytester, SCHEMA_T + "CREATE TABLE kinds (k text); INSERT INTO kinds VALUES ('a'), ('b');\n")
    pytester.makepyfile(
        """
import os, signal, time
from pathlib import Path

def test_1_killed_at_once(sqlfix_conn):
    pid = sqlfix_conn.info.backend_pid
    os.kill(pid, signal.SIGKILL)
    # SIGKILL lands asynchronously: wait until the backend is gone (or a zombie: its
    # socket is closed either way), so the check after the test body finds it
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if "State:\tZ" in status.read_text():
                break
        except OSError:
            break
        time.sleep(0.01)

def test_2_after(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM kinds").fetchone() == (2,)
"""
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_1_killed_at_once*",
                                 "*the test's database connection was lost*"])
    result.stdout.no_fnmatch_line("*FAILED*test_2_after*")
