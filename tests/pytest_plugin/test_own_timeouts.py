"""The tests' statement_timeout is for the tests' statements, not for sqlfix's own work
(restores, rebuilds, the verifier's snapshots and catalog checks)."""

from __future__ import annotations

import pytest
from helpers import NO_RANDOM

ESCAPES = """
def test_ddl(sqlfix_conn):
    sqlfix_conn.execute("SET statement_timeout = 0")  # 1ms is for sqlfix's work here
    sqlfix_conn.execute("CREATE TABLE zz (x int); COMMIT")

def test_row(sqlfix_conn):
    sqlfix_conn.execute("SET statement_timeout = 0")
    sqlfix_conn.execute("INSERT INTO users (email, full_name, created_at) VALUES ('a@x', 'a', now()); COMMIT")

def test_clean(sqlfix_conn):
    # SHOW first (microseconds), then no timeout for the reads: under load a query on a
    # table may take over 1ms by itself, and this test is about sqlfix's statements.
    assert sqlfix_conn.execute("SHOW statement_timeout").fetchone() == (WANT,)
    sqlfix_conn.execute("SET statement_timeout = 0")
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
    assert sqlfix_conn.execute("SELECT to_regclass('zz')").fetchone() == (None,)
"""


@pytest.mark.parametrize(("how", "key", "want"), [
    (("--sqlfix-statement-timeout=30ms",), "", "30ms"),
    (("--sqlfix-statement-timeout=1ms", "--sqlfix-verify"), "", "1ms"),
    ((), 'statement_timeout = "1ms"', "1ms"),
])
def test_restores_ignore_the_tests_statement_timeout(
    shop: pytest.Pytester, how: tuple[str, ...], key: str, want: str
) -> None:
    if key:
        toml = shop.path / "pyproject.toml"
        toml.write_text(toml.read_text().replace("[tool.sqlfix]\n", f"[tool.sqlfix]\n{key}\n"))
    shop.makepyfile(test_esc=ESCAPES.replace("WANT", repr(want)))
    result = shop.runpytest(*NO_RANDOM, *how)
    out = result.stdout.str()
    assert "statement timeout" not in out, out
    assert "could not" not in out, out
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) >= 3, out
    result.stdout.fnmatch_lines(["*test_ddl*", "*test_row*"])
    assert "test_clean" not in out.split("short test summary")[-1], out
