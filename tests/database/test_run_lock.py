"""One test run at a time on a DSN's database (database/run_lock.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from helpers import NO_RANDOM

from sqlfix.config import Settings
from sqlfix.database import run_lock
from sqlfix.database.session import DatabaseSession
from sqlfix.errors import DatabaseError

EXAMPLE = Path(__file__).resolve().parents[2] / "fixtures_sql"
HELD = (b"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        b"AND objsubid = 2 AND classid = %s::bigint::oid AND objid = %s::bigint::oid")


def _session(tmp_path: Path, dsn: str) -> DatabaseSession:
    fixtures = tmp_path / "fixtures_sql"
    if not fixtures.exists():
        shutil.copytree(EXAMPLE, fixtures)
    return DatabaseSession(Settings(root=tmp_path, fixtures_dir=fixtures,
                                    schema=(fixtures / "schema.sql",), dsn=dsn))


def _held(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(HELD, run_lock.KEYS).fetchone()
    return int(row[0]) if row else 0


def _other_role(dsn: str, role: str, *then: str) -> str:
    """The DSN as `role`, a new login with CREATE on the database, after the database's
    owner made the schema `_sqlfix` (an earlier run's, as another user) and ran `then`."""
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(role)))
        admin.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(role)))
        admin.execute(psycopg.sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            psycopg.sql.Identifier(admin.info.dbname), psycopg.sql.Identifier(role)))
        admin.execute("CREATE SCHEMA _sqlfix")
        for statement in then:
            admin.execute(statement.encode())
    return make_conninfo(dsn, user=role)


def test_a_second_session_on_the_same_database_is_refused_until_the_first_ends(
        tmp_path: Path, fresh_dsn: str) -> None:
    first = _session(tmp_path, fresh_dsn)
    first.start()
    try:
        assert _held(fresh_dsn) == 1
        lock_pid = first.own_pids[0]
        second = _session(tmp_path, fresh_dsn)
        with pytest.raises(DatabaseError) as caught:
            second.start()
        said = str(caught.value)
        assert "another test run is using database" in said
        assert f"backend pid {lock_pid} ('sqlfix run lock'" in said
        assert "another dbname in the DSN" in said and "-n" in said
        # the refused session left nothing open, and the first one still tests
        boundary = first.begin()
        assert boundary.conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
        boundary.end()
    finally:
        first.stop()
    assert _held(fresh_dsn) == 0  # stop() lets it go
    second = _session(tmp_path, fresh_dsn)
    second.start()
    second.stop()


def test_a_killed_run_leaves_no_lock(tmp_path: Path, fresh_dsn: str) -> None:
    """The lock is a session's: the server lets it go when the backend ends."""
    first = _session(tmp_path, fresh_dsn)
    first.start()
    pid = first.own_pids[0]
    with psycopg.connect(fresh_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
    second = _session(tmp_path, fresh_dsn)
    second.start()
    second.stop()
    first.stop()


def test_two_pytest_runs_at_once_the_second_is_refused_and_committed_tests_keep_the_lock(
        shop: pytest.Pytester, fresh_dsn: str) -> None:
    """A committed test ends the connections other than sqlfix's on the test database:
    not the run lock's. The test in the middle starts a second run on the same database."""
    shop.makepyfile(f"""
        import subprocess, sys
        import psycopg
        from sqlfix import uses

        HELD = {HELD!r}
        KEYS = {run_lock.KEYS!r}

        @uses("users.sql", commit=True)
        def test_1_committed(sqlfix_conn):
            pass

        def test_2_lock_still_held_and_a_second_run_refused(sqlfix_dsn, tmp_path):
            with psycopg.connect(sqlfix_dsn) as conn:
                assert conn.execute(HELD, KEYS).fetchone() == (1,)
            (tmp_path / "test_other.py").write_text(
                "from sqlfix import uses\\n"
                "@uses('users.sql')\\n"
                "def test_x(sqlfix_conn):\\n"
                "    pass\\n")
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
                 "--rootdir", ".", f"--sqlfix-dsn={{sqlfix_dsn}}", str(tmp_path / "test_other.py")],
                capture_output=True, text=True, timeout=120)
            assert done.returncode != 0, done.stdout
            assert "another test run is using database" in done.stdout + done.stderr
    """)
    result = shop.runpytest_subprocess(f"--sqlfix-dsn={fresh_dsn}", *NO_RANDOM)
    result.assert_outcomes(passed=2)
    assert _held(fresh_dsn) == 0


KILLED = """
import os, signal
from sqlfix import uses

@uses("users.sql", "orders.sql")
def test_ids(sqlfix_conn):
    ids = [r[0] for r in sqlfix_conn.execute("SELECT id FROM users ORDER BY id")]
    drawn = sqlfix_conn.execute("SELECT nextval('orders_id_seq')").fetchone()[0]
    open("ids.txt", "a").write(f"{ids} {drawn}\\n")  # fixture ids, and the test's own draw
    if os.environ.get("KILL_IT"):
        os.kill(os.getpid(), signal.SIGKILL)  # a CI timeout, the OOM killer
"""


def test_a_run_killed_mid_test_gets_its_sequences_put_back_by_the_next(
        shop: pytest.Pytester, fresh_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sequences are not transactional: the server rolls back a killed run's transaction,
    not the ids it drew. Without the record the next run took them as its baseline."""
    shop.makepyfile(test_killed=KILLED)
    shop.runpytest_subprocess(f"--sqlfix-dsn={fresh_dsn}", *NO_RANDOM).assert_outcomes(passed=1)
    position = b"SELECT last_value, is_called FROM orders_id_seq"
    with psycopg.connect(fresh_dsn) as conn:
        clean = conn.execute(position).fetchone()
    monkeypatch.setenv("KILL_IT", "1")
    shop.runpytest_subprocess(f"--sqlfix-dsn={fresh_dsn}", *NO_RANDOM)
    monkeypatch.delenv("KILL_IT")
    with psycopg.connect(fresh_dsn) as conn:  # the kill left them moved, and the record
        assert conn.execute(position).fetchone() != clean
        assert conn.execute("SELECT count(*) FROM _sqlfix.open_run").fetchone() == (1,)
    result = shop.runpytest_subprocess(f"--sqlfix-dsn={fresh_dsn}", *NO_RANDOM, "-W",
                                       "error::sqlfix.errors.UnfinishedRunWarning")
    result.assert_outcomes(errors=1)  # the warning, made an error, says what happened
    result.stdout.fnmatch_lines(["*did not end: it was killed*put them back*"])
    result = shop.runpytest_subprocess(f"--sqlfix-dsn={fresh_dsn}", *NO_RANDOM)
    result.assert_outcomes(passed=1)
    assert "UnfinishedRunWarning" not in result.stdout.str()  # a clean end leaves no record
    runs = (shop.path / "ids.txt").read_text().splitlines()
    # the same ids in every run (the third errored on the warning, made an error)
    assert len(runs) == 3 and len(set(runs)) == 1, runs
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM _sqlfix.open_run").fetchone() == (0,)
        assert conn.execute(position).fetchone() == clean


def test_the_record_is_skipped_where_the_user_may_not_create_it(
        tmp_path: Path, fresh_dsn: str) -> None:
    """A `_sqlfix` schema the session's user may not create in: no record, no error."""
    dsn = _other_role(fresh_dsn, "plain_tester",
                      "GRANT USAGE ON SCHEMA _sqlfix TO plain_tester",
                      "CREATE TABLE t (id serial PRIMARY KEY)",
                      "GRANT ALL ON t, t_id_seq TO plain_tester")
    fixtures = tmp_path / "fixtures_sql"
    fixtures.mkdir()
    (fixtures / "t.sql").write_text("INSERT INTO t DEFAULT VALUES;\n")
    session = DatabaseSession(Settings(root=tmp_path, fixtures_dir=fixtures, dsn=dsn))
    session.start()
    try:
        boundary = session.begin()
        assert boundary.conn.execute("SELECT nextval('t_id_seq')").fetchone() == (1,)
        boundary.end()
        assert session.start_notes == []
    finally:
        session.stop()
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT to_regclass('_sqlfix.open_run')").fetchone() == (None,)
        assert conn.execute("SELECT last_value, is_called FROM t_id_seq").fetchone() == (
            1, False)


def test_a_lock_whose_connection_was_ended_is_taken_again_or_the_run_stops(
        tmp_path: Path, fresh_dsn: str) -> None:
    """A committed test's pg_terminate_backend() of every other backend, a DBA: the lock
    went with its connection, and a second run could start beside the first."""
    first = _session(tmp_path, fresh_dsn)
    first.start()
    second = _session(tmp_path, fresh_dsn)
    try:
        with psycopg.connect(fresh_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", [first.own_pids[0]])
        first.begin().end()  # the next test takes it again
        assert _held(fresh_dsn) == 1
        with pytest.raises(DatabaseError, match="another test run is using database"):
            second.start()
        with psycopg.connect(fresh_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", [first.own_pids[0]])
        second.start()  # took the lock while the first run had none
        with pytest.raises(DatabaseError, match="run lock on this database was lost"):
            first.begin()
        first.stop()  # leaves the second run's record and lock alone
        assert _held(fresh_dsn) == 1
        with psycopg.connect(fresh_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM _sqlfix.open_run").fetchone() == (1,)
    finally:
        first.stop()
        second.stop()
    assert _held(fresh_dsn) == 0


def test_idle_session_timeout_does_not_end_the_lock(tmp_path: Path, fresh_dsn: str) -> None:
    import time

    with psycopg.connect(fresh_dsn, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("ALTER DATABASE {} SET idle_session_timeout = '300ms'")
                      .format(psycopg.sql.Identifier(admin.info.dbname)))
    first = _session(tmp_path, fresh_dsn)
    first.start()
    try:
        time.sleep(1.0)  # the run's lock connection idles past the database's timeout
        assert _held(fresh_dsn) == 1
    finally:
        first.stop()


def test_the_record_is_data_a_writer_of_it_cannot_make_a_later_run_execute(
        tmp_path: Path, fresh_dsn: str) -> None:
    """Whoever may write _sqlfix.open_run (a role that made the schema first) must not
    choose SQL a later, more privileged run executes; a name that is no sequence now (a
    sequence renamed since, or an attack) is left alone and named, the rest put back."""
    first = _session(tmp_path, fresh_dsn)
    first.start()
    first.stop()
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE pwned (x int)")
        conn.execute("SELECT setval('orders_id_seq', 50)")
        conn.execute(
            "INSERT INTO _sqlfix.open_run (positions) VALUES (%s)",
            ['[["orders_id_seq", 1, false], ["x; DROP TABLE pwned; --", 1, false], '
             '["users_id_seq; DROP TABLE pwned", 1, false], ["products_id_seq", "1", 0]]'])
    again = _session(tmp_path, fresh_dsn)
    again.start()
    try:
        note = "\n".join(again.start_notes)
        assert "put them back" in note and "x; DROP TABLE pwned; --" in note
    finally:
        again.stop()
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT to_regclass('pwned') IS NOT NULL").fetchone() == (True,)
        assert conn.execute("SELECT last_value, is_called FROM orders_id_seq").fetchone() == (
            1, False)


def test_an_xdist_worker_refuses_a_database_a_run_tests_in(tmp_path: Path,
                                                            fresh_dsn: str) -> None:
    """Its schema would be applied to, and its clone made of, a database under test; the
    workers of one run do not refuse each other (shared tries)."""
    first = _session(tmp_path, fresh_dsn)
    first.start()
    try:
        fixtures = tmp_path / "fixtures_sql"
        worker = DatabaseSession(Settings(root=tmp_path, fixtures_dir=fixtures,
                                          schema=(fixtures / "schema.sql",), dsn=fresh_dsn),
                                 worker="gw0", run="r1")
        with pytest.raises(DatabaseError, match="another test run is using database"):
            worker.start()
        worker.stop()
    finally:
        first.stop()
    with psycopg.connect(fresh_dsn) as a, psycopg.connect(fresh_dsn) as b:
        shared = b"SELECT pg_try_advisory_lock_shared(%s, %s)"
        assert a.execute(shared, run_lock.KEYS).fetchone() == (True,)
        assert b.execute(shared, run_lock.KEYS).fetchone() == (True,)


@pytest.mark.slow  # a whole pytest session with workers
def test_an_xdist_run_on_a_database_under_test_is_refused_once_by_the_controller(
        shop: pytest.Pytester, tmp_path: Path, fresh_dsn: str) -> None:
    first = _session(tmp_path, fresh_dsn)
    first.start()
    try:
        shop.makepyfile("def test_a(sqlfix_conn):\n    pass\n")
        result = shop.runpytest_subprocess("-n", "2", f"--sqlfix-dsn={fresh_dsn}", *NO_RANDOM)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        err = result.stderr.str()
        assert err.count("another test run is using database") == 1, err
        assert "Traceback" not in err + result.stdout.str()
    finally:
        first.stop()


def test_sqlfixs_schema_made_by_another_role_is_named_with_the_grant_to_give(
        tmp_path: Path, fresh_dsn: str) -> None:
    dsn = _other_role(fresh_dsn, "other_tester", "GRANT CREATE ON SCHEMA public TO other_tester")
    fixtures = tmp_path / "fixtures_sql"
    fixtures.mkdir()
    (tmp_path / "schema.sql").write_text("CREATE TABLE t (id int PRIMARY KEY);\n")
    session = DatabaseSession(Settings(
        root=tmp_path, fixtures_dir=fixtures, schema=(tmp_path / "schema.sql",),
        dsn=dsn))
    with pytest.raises(DatabaseError) as caught:
        session.start()
    said = str(caught.value)
    assert "permission denied for schema _sqlfix" in said
    assert "GRANT USAGE, CREATE ON SCHEMA _sqlfix TO" in said and "drop the schema" in said
    assert _held(fresh_dsn) == 0  # the refused session let its lock go


def test_a_dsn_user_who_may_not_create_schemas_is_told_the_grant_to_give(
        tmp_path: Path, fresh_dsn: str) -> None:
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(fresh_dsn, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS no_create_tester")
        admin.execute("CREATE ROLE no_create_tester LOGIN")  # CONNECT and TEMP, from PUBLIC
    fixtures = tmp_path / "fixtures_sql"
    fixtures.mkdir()
    (tmp_path / "schema.sql").write_text("CREATE TEMP TABLE t (id int);\n")
    session = DatabaseSession(Settings(
        root=tmp_path, fixtures_dir=fixtures, schema=(tmp_path / "schema.sql",),
        dsn=make_conninfo(fresh_dsn, user="no_create_tester")))
    with pytest.raises(DatabaseError) as caught:
        session.start()
    said = str(caught.value)
    assert said.startswith("permission denied for database"), said
    assert "GRANT CREATE ON DATABASE" in said and "owner" in said
    assert _held(fresh_dsn) == 0


def test_the_run_lock_is_free_the_moment_a_run_lets_it_go(fresh_dsn: str) -> None:
    # Closing the connection frees a session-level advisory lock only once the server's
    # backend has exited: about 1 in 12 probes right after close() still found it held,
    # and a run started at once (the next CI step) was refused as "another test run".
    with psycopg.connect(fresh_dsn, autocommit=True) as probe:
        for _ in range(100):
            run_lock.release(run_lock.take(fresh_dsn))
            assert probe.execute(b"SELECT pg_try_advisory_lock(%s, %s)",
                                 run_lock.KEYS).fetchone() == (True,)
            probe.execute(b"SELECT pg_advisory_unlock(%s, %s)", run_lock.KEYS)
            run_lock.refuse_if_running(fresh_dsn)  # a worker's shared look, let go too
            assert probe.execute(b"SELECT pg_try_advisory_lock(%s, %s)",
                                 run_lock.KEYS).fetchone() == (True,)
            probe.execute(b"SELECT pg_advisory_unlock(%s, %s)", run_lock.KEYS)


def test_a_released_lock_connection_that_was_ended_is_closed_quietly(fresh_dsn: str) -> None:
    lock = run_lock.take(fresh_dsn)
    with psycopg.connect(fresh_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [lock.info.backend_pid])
    run_lock.release(lock)  # the unlock fails on the dead connection: no error
    assert lock.closed and _held(fresh_dsn) == 0
