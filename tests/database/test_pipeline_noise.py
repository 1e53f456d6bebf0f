"""A failing load is reported once, in sqlfix's words: psycopg's own "error ignored
terminating <psycopg.Pipeline ...>: pipeline aborted" log line (closing the pipeline after
the error sqlfix already reports) is not shown, in `check` or in a pytest report."""

from __future__ import annotations

import sys

from helpers import NO_RANDOM

SCHEMA = "CREATE TABLE t (id int PRIMARY KEY CHECK (id > 0));\n"
BAD = "INSERT INTO t (id) VALUES (-1);\nINSERT INTO t (id) VALUES (2);\nINSERT INTO t (id) VALUES (3);\n"


def _project(pytester):
    (pytester.path / "schema.sql").write_text(SCHEMA)
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "bad.sql").write_text(BAD)


def test_check_reports_a_failing_multi_statement_load_without_psycopg_noise(pytester):
    _project(pytester)
    result = pytester.run(sys.executable, "-m", "sqlfix", "check")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, out
    assert "bad.sql:1" in out and "23514" in out and "check constraint" in out, out
    assert "error ignored" not in out and "pipeline aborted" not in out, out


def test_a_failing_load_in_pytest_has_no_psycopg_log_line(pytester):
    _project(pytester)
    pytester.makepyfile(
        """
        from sqlfix import uses

        @uses("bad.sql")
        def test_a(sqlfix_conn):
            pass
        """
    )
    result = pytester.runpytest(*NO_RANDOM, "-p", "logging", "--log-level=WARNING")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "bad.sql:1" in out, out
    assert "error ignored" not in out and "pipeline aborted" not in out, out
