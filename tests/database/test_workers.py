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
    long = worker_dbname("x" * 70, "gw1")
    assert len(long.encode()) == 63 and long.endswith("_gw1")
