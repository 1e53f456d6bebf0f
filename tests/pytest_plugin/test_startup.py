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


# The only sqlfix modules a run with no sqlfix test may load: the entry module and what
# registration needs. pytest rewrites every module of sqlfix's distribution and loads it
# from its own .pyc at a cost per byte of code (docs/architecture.md): the hooks' and
# fixtures' bodies (runtime.py, async_fixtures.py, sqla.py, stop.py) and `uses`
# (marker.py) are imported on first use. A new import at start fails here: make it lazy.
AT_START = ["sqlfix", "sqlfix.config_keys", "sqlfix.pytest_plugin", "sqlfix.pytest_plugin.plugin"]


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def _sqlfix_modules(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m == "sqlfix" or m.startswith("sqlfix."))


def test_the_entry_module_imports_only_what_registration_needs():
    code = "import json, sys, sqlfix.pytest_plugin.plugin; print(json.dumps(sorted(sys.modules)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    loaded = json.loads(out)
    assert "sqlfix.pytest_plugin.plugin" in loaded
    assert _heavy(loaded) == []
    assert _sqlfix_modules(loaded) == AT_START


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
    assert _sqlfix_modules(loaded) == ([] if "no:sqlfix" in args else AT_START)
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
                 "sqlfix_seed", "sqlfix_schema", "sqlfix_server_port", "sqlfix_server_settings"):
        assert name in text
    # the help links to the docs site, not to a file of the repository
    from sqlfix import DOCS_URL

    assert "docs/configuration.md" not in text and "docs/boundary.md" not in text
    assert text.count(f"{DOCS_URL}configuration/") >= 20
    pytester.runpytest_subprocess("--markers").stdout.fnmatch_lines(["@pytest.mark.sqlfix(*"])
    fixtures = pytester.runpytest_subprocess("--fixtures").stdout.str()
    for name in ("sqlfix_conn ", "sqlfix ", "sqlfix_dsn", "sqlfix_aconn", "sqlfix_sqla_session"):
        assert name in fixtures


# Per test: a test without sqlfix must cost nothing when it runs. These are the
# hooks sqlfix may implement in such a run, each called once per run; a hook called
# per test (runtest_*, makereport, fixture_setup, ...) or an autouse fixture would
# add its cost to every test of every project that installs sqlfix.
ONCE_PER_RUN = {"pytest_addoption", "pytest_configure", "pytest_collection_modifyitems",
                "pytest_report_header", "pytest_report_collectionfinish",
                "pytest_sessionfinish",  # once, at the end (per-worker databases dropped)
                "pytest_configure_node",  # the xdist controller: once per worker
                "pytest_testnodedown",  # the xdist controller: once per worker, at its end
                "pytest_terminal_summary"}  # the xdist controller: a worker's server's death

PER_TEST_CONFTEST = """
import json

set_up = []

def pytest_fixture_setup(fixturedef, request):
    set_up.append([request.node.nodeid, fixturedef.argname,
                   getattr(fixturedef.func, "__module__", None) or ""])

def pytest_sessionfinish(session):
    pm = session.config.pluginmanager
    hooks = {}
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if not name.startswith("pytest_") or not hasattr(caller, "get_hookimpls"):
            continue
        for impl in caller.get_hookimpls():
            module = getattr(impl.function, "__module__", None) or ""
            if module.startswith("sqlfix") or impl.plugin_name.startswith("sqlfix"):
                hooks.setdefault(name, []).append(impl.plugin_name)
    worker = getattr(session.config, "workerinput", {}).get("workerid", "main")
    with open(f"per_test-{worker}.json", "w") as f:
        json.dump({"hooks": hooks, "set_up": set_up,
                   "fixturenames": {i.nodeid: i.fixturenames for i in session.items}}, f)
"""

PLAIN_TESTS = """
import unittest
import pytest

def test_plain(): pass

def test_with_a_fixture(tmp_path): pass

@pytest.mark.parametrize("n", [1, 2])
def test_parametrized(n): pass

@pytest.mark.uses("network")  # another plugin's mark of the same name: not sqlfix's
def test_someone_elses_uses(): pass

class TestC:
    def test_m(self): pass

class TestUnit(unittest.TestCase):
    def test_u(self): pass
"""


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["plain", "xdist"])
def test_a_test_without_sqlfix_gets_no_sqlfix_fixture_or_hook(pytester, args):
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n"
                     "markers =\n    uses(what): the project's own\n")
    pytester.makeconftest(PER_TEST_CONFTEST)
    pytester.makepyfile(PLAIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:faker",
                                           "--strict-markers", *args)
    result.assert_outcomes(passed=7)
    runs = sorted(pytester.path.glob("per_test-*.json"))
    assert [p.name for p in runs] == (["per_test-gw0.json", "per_test-gw1.json", "per_test-main.json"]
                                      if args else ["per_test-main.json"])
    for run in runs:
        seen = json.loads(run.read_text())
        assert set(seen["hooks"]) <= ONCE_PER_RUN, (run.name, seen["hooks"])
        assert [f for f in seen["set_up"] if f[2].startswith("sqlfix")] == []
        for nodeid, names in seen["fixturenames"].items():
            assert [n for n in names if "sqlfix" in n] == [], nodeid


SQLFIX_TESTS = """
import pytest
from sqlfix import uses

order = []

@pytest.fixture(scope="session")
def env():
    order.append("env")  # a user's session fixture: before sqlfix starts the database

@pytest.fixture
def thing():
    order.append("thing")

def test_plain(): pass

@uses("users.sql")
def test_marked(env, thing):
    order.append("test")

def test_requests_it(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)

def test_reaches_it_in_the_body(request):
    conn = request.getfixturevalue("sqlfix_conn")
    conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('x', 'y', 1)")
    conn.execute("COMMIT")  # escapes the boundary: reported even though found by getfixturevalue

def test_last():
    assert order == ["env", "thing", "test"]
"""


@pytest.mark.parametrize("alone", [False, True], ids=["collected", "getfixturevalue-only"])
def test_the_run_hooks_and_uses_fixture_come_with_a_sqlfix_test(shop, alone):
    shop.makeconftest(PER_TEST_CONFTEST)
    shop.makepyfile(SQLFIX_TESTS)
    args = ("-k", "reaches_it") if alone else ()
    result = shop.runpytest_subprocess("-p", "no:randomly", "--setup-show", *args)
    seen = json.loads((shop.path / "per_test-main.json").read_text())
    assert seen["hooks"]["pytest_runtest_makereport"] == ["sqlfix-run"]
    assert set(seen["hooks"]) >= {"pytest_runtest_call", "pytest_runtest_teardown"}
    escape = "*the rollback boundary did not hold*"
    if alone:  # found by the fixture's tear-down: the run hooks came with it, after the call
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(["*ERROR at teardown of test_reaches_it_in_the_body*", escape])
        return
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*_ test_reaches_it_in_the_body _*", escape])
    uses = {nodeid.split("::")[1]: "_sqlfix_uses" in names
            for nodeid, names in seen["fixturenames"].items()}
    assert uses == {"test_plain": False, "test_marked": True, "test_requests_it": False,
                    "test_reaches_it_in_the_body": False, "test_last": False}
    plain = [f for f in seen["set_up"] if f[0].endswith("test_plain") and f[2].startswith("sqlfix")]
    assert plain == []
    # where the autouse fixture was: after the session fixtures, before the test's own
    marked = [line.split()[2] for line in result.outlines if line.strip().startswith("SETUP")]
    assert marked.index("env") < marked.index("_sqlfix_session")
    assert marked.index("_sqlfix_uses") < marked.index("thing")
