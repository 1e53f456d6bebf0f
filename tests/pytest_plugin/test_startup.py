"""What a pytest run with no sqlfix test loads of sqlfix (issue #12: under 20 ms).

Structural, never a stopwatch: the plugin's entry module and a whole run without a
sqlfix test must not import the configuration code, the compiler or the database
side. The figures are in docs/architecture.md, from tests/benchmarks/bench_startup.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# What a run with no sqlfix test must not import (each costs milliseconds or more).
HEAVY = ("psycopg", "jinja2", "pglast", "faker", "sqlalchemy", "tomllib", "tomli",
         "sqlfix.config", "sqlfix.compiler", "sqlfix.database", "sqlfix.cli")


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_the_entry_module_imports_only_what_registration_needs():
    code = "import json, sys, sqlfix.pytest_plugin.plugin; print(json.dumps(sorted(sys.modules)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    loaded = json.loads(out)
    assert "sqlfix.pytest_plugin.plugin" in loaded
    assert _heavy(loaded) == []


CONFTEST = """
import json, sys

def pytest_sessionfinish(session):
    with open("loaded.json", "w") as f:
        json.dump(sorted(sys.modules), f)
"""


@pytest.mark.parametrize("args", [(), ("-q",), ("-v",), ("-p", "no:sqlfix")],
                         ids=["default", "quiet", "verbose", "blocked"])
def test_a_run_with_no_sqlfix_test_loads_none_of_it(pytester, args):
    # pytest.ini, no pyproject.toml: pytest itself then has no reason to import tomllib
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_plain(): pass\nclass TestC:\n    def test_m(self): pass")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:faker", *args)
    result.assert_outcomes(passed=2)
    loaded = json.loads((pytester.path / "loaded.json").read_text())
    assert _heavy(loaded) == []
    assert ("sqlfix.pytest_plugin.plugin" in loaded) == ("no:sqlfix" not in args)
    assert "sqlfix: seed=" not in result.stdout.str()  # the header comes with a sqlfix test


def test_a_run_with_a_sqlfix_test_reads_the_configuration_and_shows_the_header(shop):
    shop.makepyfile("def test_plain(): pass\ndef test_db(sqlfix_conn): pass")
    result = shop.runpytest_subprocess("-p", "no:randomly", "-k", "db")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines([
        "collected 2 items / 1 deselected / 1 selected",
        "sqlfix: seed=0 (default); replay with --sqlfix-seed=0",
        "sqlfix: fixtures *fixtures_sql (default); database: embedded PostgreSQL (started on first use)",
    ])


def test_registration_still_lists_options_ini_keys_markers_and_fixtures(pytester):
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile("def test_plain(): pass")
    text = pytester.runpytest_subprocess("--help").stdout.str()
    for name in ("--sqlfix-seed", "--sqlfix-dsn", "--sqlfix-lock-timeout", "--sqlfix-verify",
                 "sqlfix_seed", "sqlfix_schema", "sqlfix_server_port"):
        assert name in text
    pytester.runpytest_subprocess("--markers").stdout.fnmatch_lines(["@pytest.mark.sqlfix(*"])
    fixtures = pytester.runpytest_subprocess("--fixtures").stdout.str()
    for name in ("sqlfix_conn ", "sqlfix ", "sqlfix_dsn", "sqlfix_aconn", "sqlfix_sqla_session"):
        assert name in fixtures
