"""What a schema file SETs on its session stays out of sqlfix's own preparation and the tests.

pg_dump writes `SET client_encoding = 'SQL_ASCII'` for a database made by `initdb --locale=C`,
and `SET ROLE` at the end with `--role`; the schema runs on the connection sqlfix then uses
to prepare the database (the fixture role, the baseline), so each must be undone first.
"""

from __future__ import annotations

import pytest
from helpers import NO_RANDOM

TESTS = """
from sqlfix import uses

@uses("users.sql")
def test_users(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT name FROM app.users").fetchall() == [("ann",)]
    assert sqlfix_conn.execute("SHOW client_encoding").fetchone() == ("UTF8",)
    assert sqlfix_conn.execute("SELECT current_user = session_user").fetchone() == (True,)
"""


@pytest.mark.parametrize("closing", [
    "SET client_encoding = 'SQL_ASCII';",
    "CREATE ROLE sqlfix_t_app; GRANT USAGE ON SCHEMA app TO sqlfix_t_app; SET ROLE sqlfix_t_app;",
    "SET SESSION AUTHORIZATION sqlfix_t_low;",
    "SET search_path = ''; SET client_min_messages = error; SET row_security = off;",
])
def test_what_the_schema_sets_on_its_session_reaches_no_test(pytester, closing):
    first = ("CREATE ROLE sqlfix_t_low;\n"
             if "sqlfix_t_low" in closing else "")
    (pytester.path / "schema.sql").write_text(
        "SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n"
        + first
        + "CREATE SCHEMA app;\nCREATE TABLE app.users (id serial PRIMARY KEY, name text);\n"
        + closing + "\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "users.sql").write_text(
        "INSERT INTO app.users (name) VALUES ('ann');\n")
    pytester.makepyfile(TESTS)
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=1)
