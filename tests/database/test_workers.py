"""pytest-xdist with a DSN: each worker tests in its own clone of the DSN's database."""

from __future__ import annotations

import json
import sys

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from sqlfix.database.workers import clone_for_worker, drop_worker_database, worker_dbname

WORKERS_TEST = """
import os
import pytest
from sqlfix import uses

@uses("users.sql")
@pytest.mark.parametrize("n", range(8))
def test_own_database(sqlfix_conn, n):
    name = sqlfix_conn.info.dbname
    with open(f"db-{os.getpid()}-{name}.txt", "w"):
        pass
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('x', 'y', 1)")
    sqlfix_conn.commit()  # a savepoint: the next test on this worker sees nothing of it
    assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (1,)
"""


def _databases(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


@pytest.mark.slow  # whole pytest sessions: the full suite runs it, not the version matrix
def test_each_worker_gets_a_clone_dropped_at_the_end(shop, fresh_dsn):
    # The migrations run once a run, by the first worker, not once a worker.
    count = json.dumps([sys.executable, "-c", "open('builds.txt', 'a').write('x')"])
    shop.makepyprojecttoml(
        f'[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\nsetup_command = {count}\n')
    shop.makepyfile(WORKERS_TEST)
    result = shop.runpytest_subprocess("-n", "2", f"--sqlfix-dsn={fresh_dsn}", "-p", "no:randomly")
    result.assert_outcomes(passed=8)
    assert (shop.path / "builds.txt").read_text() == "x"
    result = shop.runpytest_subprocess("-n", "2", f"--sqlfix-dsn={fresh_dsn}", "-p", "no:randomly")
    result.assert_outcomes(passed=8)
    assert (shop.path / "builds.txt").read_text() == "xx"  # a new run: migrations run again
    name = conninfo_to_dict(fresh_dsn)["dbname"]
    used = {p.name.split("-", 2)[2][:-4] for p in shop.path.glob("db-*.txt")}
    assert used == {f"{name}_gw0", f"{name}_gw1"}
    assert not {n for n in _databases(fresh_dsn) if n.startswith(f"{name}_gw")}
    with psycopg.connect(fresh_dsn) as conn:  # the schema was built once, on the template
        assert conn.execute("SELECT count(*) FROM _sqlfix.schema_state").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_a_leftover_clone_of_a_crashed_run_is_replaced(fresh_dsn):
    name = str(conninfo_to_dict(fresh_dsn)["dbname"])
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE marker (id int)")
    stale = clone_for_worker(fresh_dsn, "gw3", lambda dsn: None)
    with psycopg.connect(stale, autocommit=True) as conn:
        conn.execute("CREATE TABLE leftover (id int)")
    again = clone_for_worker(fresh_dsn, "gw3", lambda dsn: None)
    with psycopg.connect(again) as conn:
        assert conn.execute("SELECT to_regclass('leftover'), to_regclass('marker') IS NOT NULL"
                            ).fetchone() == (None, True)
    drop_worker_database(again)
    assert f"{name}_gw3" not in _databases(fresh_dsn)


def test_a_clone_another_run_is_testing_in_is_not_taken_from_it(fresh_dsn):
    """Two runs with -n on one server: the second's gw0 used to drop the first's gw0
    WITH (FORCE) in the middle of its tests."""
    from sqlfix.errors import DatabaseError

    first = clone_for_worker(fresh_dsn, "gw0", lambda dsn: None, run="run-a")
    try:
        with psycopg.connect(first, autocommit=True) as busy:
            busy.execute("CREATE TABLE mine (id int)")
            with pytest.raises(DatabaseError, match="is in use: another test run"):
                clone_for_worker(fresh_dsn, "gw0", lambda dsn: None, run="run-b")
            # the first run's worker goes on in its own database, untouched
            assert busy.execute("SELECT to_regclass('mine') IS NOT NULL").fetchone() == (True,)
    finally:
        drop_worker_database(first)


def test_a_session_on_the_template_delays_the_clone_then_fails_clearly(fresh_dsn, monkeypatch):
    from sqlfix.database import workers
    from sqlfix.errors import DatabaseError

    monkeypatch.setattr(workers, "_CLONE_PATIENCE", 0.3)
    with psycopg.connect(fresh_dsn), pytest.raises(DatabaseError, match="close other sessions"):
        clone_for_worker(fresh_dsn, "gw0", lambda dsn: None)


def test_worker_names_fit_postgresqls_limit():
    assert worker_dbname("shop_test", "gw12") == "shop_test_gw12"
    assert worker_dbname("x" * 59, "gw1") == "x" * 59 + "_gw1"  # 63 bytes: as it is
    long = worker_dbname("x" * 70, "gw1")
    assert len(long.encode()) == 63 and long.endswith("_gw1")
    # two long names that begin alike get clones of their own
    a, b = "test_" + "y" * 54 + "a", "test_" + "y" * 54 + "b"
    assert worker_dbname(a, "gw1") != worker_dbname(b, "gw1")
    assert len(worker_dbname("é" * 40, "gw1").encode()) <= 63  # not cut inside a character


def _clone_name(fresh_dsn: str, worker: str) -> str:
    return worker_dbname(str(conninfo_to_dict(fresh_dsn)["dbname"]), worker)


def test_a_database_sqlfix_did_not_make_is_never_dropped_for_a_clone(fresh_dsn):
    """A database that merely has a clone's name (a colleague's, an older copy) is refused."""
    from psycopg import sql

    from sqlfix.errors import DatabaseError

    target = _clone_name(fresh_dsn, "gw0")
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    try:
        with pytest.raises(DatabaseError, match="sqlfix did not make it"):
            clone_for_worker(fresh_dsn, "gw0", lambda dsn: None)
        assert target in _databases(fresh_dsn)
    finally:
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(target)))


def test_a_long_test_database_name_is_cloned_though_its_clone_name_loses_test(pg_server):
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = "t" * 58 + "_test"  # 63 bytes: the clone's name is cut before "test"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(pg_server.dsn, dbname=name)
    clone = clone_for_worker(dsn, "gw1", lambda dsn: None)
    try:
        assert "test" not in str(conninfo_to_dict(clone)["dbname"])
        with psycopg.connect(clone) as conn:
            assert conn.info.dbname == worker_dbname(name, "gw1")
    finally:
        drop_worker_database(clone)


def test_a_user_who_may_create_but_not_copy_the_database_is_told_what_to_grant(fresh_dsn):
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from sqlfix.errors import DatabaseError

    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS clone_maker")
        conn.execute("CREATE ROLE clone_maker LOGIN CREATEDB")
    try:
        with pytest.raises(DatabaseError) as caught:
            clone_for_worker(make_conninfo(fresh_dsn, user="clone_maker"), "gw0",
                             lambda dsn: None)
        said = str(caught.value)
        assert "permission denied to copy database" in said
        assert "OWNER TO" in said and "IS_TEMPLATE true" in said
    finally:
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            name = _clone_name(fresh_dsn, "gw0")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute("DROP ROLE clone_maker")


def test_the_controller_drops_the_clones_its_workers_left(fresh_dsn):
    """Workers interrupted by Ctrl-C or crashed never drop their clones: the controller
    does as the run ends; not a database sqlfix did not make, not one a client is on."""
    from psycopg import sql

    from sqlfix.database.workers import drop_clones_left

    left = [clone_for_worker(fresh_dsn, worker, lambda dsn: None) for worker in ("gw0", "gw1")]
    foreign = _clone_name(fresh_dsn, "gw2")
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(foreign)))
    try:
        with psycopg.connect(left[1]):  # a client still on gw1's clone: it stays
            dropped = drop_clones_left(fresh_dsn, ["gw0", "gw1", "gw2"], patience=0.3)
        assert dropped == [_clone_name(fresh_dsn, "gw0")]
        assert drop_clones_left(fresh_dsn, ["gw0", "gw1", "gw2"]) == [
            _clone_name(fresh_dsn, "gw1")]
        assert foreign in _databases(fresh_dsn)
    finally:
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(foreign)))


CRASHING_WORKER = """
import os
import pytest
from sqlfix import uses

@uses("users.sql")
@pytest.mark.parametrize("n", range(6))
def test_one(sqlfix_conn, n, worker_id):
    if worker_id == "gw0" and n >= 1:
        os._exit(1)  # the worker dies without its clean-up: its clone stays behind
"""


@pytest.mark.slow  # whole pytest sessions
def test_a_crashed_workers_clone_is_dropped_by_the_controller(shop, fresh_dsn):
    shop.makepyfile(CRASHING_WORKER)
    result = shop.runpytest_subprocess("-n", "2", "--max-worker-restart=0", "--dist=load",
                                       f"--sqlfix-dsn={fresh_dsn}", "-p", "no:randomly")
    assert "crashed" in result.stdout.str() or "replacing crashed worker" in result.stdout.str()
    name = conninfo_to_dict(fresh_dsn)["dbname"]
    assert not {n for n in _databases(fresh_dsn) if n.startswith(f"{name}_gw")}


@pytest.mark.slow  # whole pytest sessions
@pytest.mark.parametrize("case", ["no-createdb", "not-the-owner", "name-from-the-user"])
def test_a_database_no_worker_could_clone_is_refused_once_by_the_controller(
        shop, fresh_dsn, case):
    """Each worker would fail the same way (exit 3, once per worker, after the tests it
    ran first): the controller asks the server before any worker starts (exit 4)."""
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    role = {"no-createdb": "plain_maker", "not-the-owner": "other_maker",
            "name-from-the-user": "unsafe_name_user"}[case]
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN {}").format(
            sql.Identifier(role), sql.SQL("NOCREATEDB" if case == "no-createdb" else "CREATEDB")))
        if case == "name-from-the-user":  # no dbname in the DSN: libpq takes the user's name
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(role), sql.Identifier(role)))
    params = conninfo_to_dict(fresh_dsn)
    if case == "name-from-the-user":
        del params["dbname"]
    dsn = make_conninfo(make_conninfo(**params), user=role)  # type: ignore[arg-type]
    try:
        shop.makepyfile("def test_plain():\n    pass\ndef test_db(sqlfix_conn):\n    pass\n")
        result = shop.runpytest_subprocess("-n", "2", f"--sqlfix-dsn={dsn}", "-p", "no:randomly")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
        err = result.stderr.str()
        said = {"no-createdb": "the DSN's user may not create databases. Give the DSN's user CREATEDB",
                "not-the-owner": "PostgreSQL copies a database for its owner only",
                "name-from-the-user": f"refusing to use database '{role}'"}[case]
        assert err.count(said) == 1, err
        assert "Traceback" not in err + result.stdout.str()
    finally:
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.slow  # a whole pytest session
def test_a_database_whose_clones_another_run_tests_in_is_refused_once_by_the_controller(
        shop, fresh_dsn):
    first = clone_for_worker(fresh_dsn, "gw0", lambda dsn: None, run="the-other-run")
    try:
        with psycopg.connect(first):  # the other run's worker, in the middle of its tests
            shop.makepyfile("def test_db(sqlfix_conn):\n    pass\n")
            result = shop.runpytest_subprocess("-n", "2", f"--sqlfix-dsn={fresh_dsn}",
                                               "-p", "no:randomly")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
        err = result.stderr.str()
        assert err.count(f"the pytest-xdist worker database {_clone_name(fresh_dsn, 'gw0')!r} "
                         "is in use: another test run") == 1, err
        assert "Traceback" not in err + result.stdout.str()
    finally:
        drop_worker_database(first)
