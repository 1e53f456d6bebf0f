"""A raw `pg_dump --data-only` file (COPY and --inserts form, pg_dump 15 and 18) is a fixture
unchanged; its preamble changes nothing of the session and its setval() is put back."""

from __future__ import annotations

import shutil
import subprocess
import sys

import psycopg  # noqa: F401 - imported before any in-process pytester run snapshots sys.modules
import pytest
from helpers import DATA, NO_RANDOM

PGDUMP = DATA / "pgdump"
DUMPS = ("data_copy.sql", "data_inserts.sql", "data_copy_pg18.sql", "data_inserts_pg18.sql")

TESTS = """
import pytest
from sqlfix import uses

@uses("{dump}")
def test_1_the_dump_loads(sqlfix_conn):
    conn = sqlfix_conn
    names = conn.execute("SELECT full_name FROM public.customer ORDER BY id").fetchall()
    assert names == [("Ann O'Brien",), ("Bob Tab\\tStop",), ("Cy {{{{ Braces }}}}",)]
    assert conn.execute("SELECT note FROM orders WHERE id = 1").fetchone() == ("two\\nlines",)
    assert conn.execute("SELECT count(*) FROM payment").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM order_line").fetchone() == (3,)
    # the dump's setval(): the next DEFAULT id follows the dump's rows
    new = conn.execute("INSERT INTO customer (email, full_name) VALUES ('d@x.org', 'D') RETURNING id")
    assert new.fetchone() == (4,)
    # none of the preamble's settings reached the test's session or transaction
    shown = {{name: conn.execute(f"SHOW {{name}}").fetchone()[0] for name in SETTINGS}}
    assert shown == BEFORE

@uses("product_dump.sql")
def test_2_setval_of_a_fixture(sqlfix_conn):
    new = sqlfix_conn.execute("INSERT INTO product (sku, price) VALUES ('NEW', 1) RETURNING id")
    assert new.fetchone() == (43,)

def test_3_sequences_are_back_where_the_schema_left_them(sqlfix_conn):
    conn = sqlfix_conn
    assert conn.execute("INSERT INTO customer (email, full_name) VALUES ('e@x.org', 'E') RETURNING id").fetchone() == (1,)
    assert conn.execute("INSERT INTO product (sku, price) VALUES ('NEW', 1) RETURNING id").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM customer").fetchone() == (1,)
    shown = {{name: conn.execute(f"SHOW {{name}}").fetchone()[0] for name in SETTINGS}}
    assert shown == BEFORE

SETTINGS = ("search_path", "statement_timeout", "lock_timeout", "client_min_messages",
            "row_security", "xmloption", "check_function_bodies", "client_encoding",
            "standard_conforming_strings", "idle_in_transaction_session_timeout")
"""


def project(pytester: pytest.Pytester, dump: str) -> None:
    shutil.copy(PGDUMP / "schema.sql", pytester.path / "schema.sql")
    fixtures = pytester.path / "fixtures_sql"
    fixtures.mkdir()
    shutil.copy(PGDUMP / dump, fixtures / dump)
    # the tail of a dump by itself: setval() past the rows a test then adds
    (fixtures / "product_dump.sql").write_text(
        "INSERT INTO public.product VALUES (1, 'MUG', 9.00);\n"
        "SELECT pg_catalog.setval('public.product_id_seq', 42, true);\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n'
                               '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')


# Each is a whole pytest session: two forms in the per-version CI run, all four in the full suite.
@pytest.mark.parametrize("dump", [
    pytest.param(d, marks=() if d in ("data_copy_pg18.sql", "data_inserts.sql") else pytest.mark.slow)
    for d in DUMPS])
def test_a_raw_data_dump_loads_as_a_fixture_and_changes_nothing_else(pytester, dump):
    project(pytester, dump)
    body = TESTS.format(dump=dump)
    # the settings as a test without fixtures sees them, read on the same session first
    pytester.makepyfile("""
BEFORE = {}

def test_0_settings_before(sqlfix_conn):
    BEFORE.update({name: sqlfix_conn.execute(f"SHOW {name}").fetchone()[0] for name in SETTINGS})
    assert BEFORE["search_path"] == '"$user", public' and BEFORE["statement_timeout"] != "0"
""" + body)
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=4)


@pytest.mark.slow
def test_any_order_of_the_tests_passes(pytester):
    # sequence positions and settings after a test do not depend on which test ran before
    project(pytester, "data_inserts_pg18.sql")
    body = TESTS.format(dump="data_inserts_pg18.sql").replace("assert shown == BEFORE", "pass")
    pytester.makepyfile(body)
    for seed in (1, 2):
        pytester.runpytest(f"--randomly-seed={seed}").assert_outcomes(passed=3)


@pytest.mark.slow
@pytest.mark.parametrize("dump", ["data_copy_pg18.sql", "data_inserts.sql"])
def test_lint_accepts_a_raw_dump(pytester, dump):
    project(pytester, dump)
    result = subprocess.run([sys.executable, "-m", "sqlfix", "lint", "fixtures_sql"],
                            cwd=pytester.path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed" in result.stdout


def test_a_bad_row_after_the_preamble_fails_at_its_line_and_keeps_nothing(pytester):
    project(pytester, "data_copy_pg18.sql")
    dump = pytester.path / "fixtures_sql" / "data_copy_pg18.sql"
    lines = dump.read_text().splitlines(keepends=True)
    at = next(i for i, t in enumerate(lines) if t.startswith("2\tKETTLE"))
    lines.insert(at + 1, "1\tDUPE\t3.00\n")  # the id of MUG again
    dump.write_text("".join(lines))
    pytester.makepyfile(
        """
        from sqlfix import uses

        @uses("data_copy_pg18.sql")
        def test_bad(sqlfix_conn):
            pass

        def test_nothing_kept(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM customer").fetchone() == (0,)
            assert sqlfix_conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        """
    )
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"*data_copy_pg18.sql:{at + 2}:1: SQLF701 *23505*"])
