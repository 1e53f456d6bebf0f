"""A user's server by DSN: safety, schema applied once, migrations by setup_command."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
from helpers import NO_RANDOM
from psycopg.conninfo import make_conninfo

from sqlfix.database.setup_command import database_url

SIMPLE_TEST = """
def test_users(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
"""


def test_a_dsn_database_gets_the_schema_once_and_keeps_it(shop, fresh_dsn):
    shop.makepyfile(SIMPLE_TEST)
    shop.runpytest(f"--sqlfix-dsn={fresh_dsn}", *NO_RANDOM).assert_outcomes(passed=1)
    # a second session finds the same schema and does not apply it again
    result = shop.runpytest(*NO_RANDOM, "-p", "no:cacheprovider", f"--sqlfix-dsn={fresh_dsn}")
    result.assert_outcomes(passed=1)
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM _sqlfix.schema_state").fetchone() == (1,)


def test_a_changed_schema_on_a_kept_database_is_an_error_that_says_what_to_do(shop, fresh_dsn):
    shop.makepyfile(SIMPLE_TEST)
    shop.runpytest(f"--sqlfix-dsn={fresh_dsn}", *NO_RANDOM).assert_outcomes(passed=1)
    schema = shop.path / "fixtures_sql" / "schema.sql"
    schema.write_text(schema.read_text() + "\nCREATE TABLE extra (id int);\n")
    result = shop.runpytest(f"--sqlfix-dsn={fresh_dsn}", *NO_RANDOM)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*schema files changed since sqlfix applied them*Recreate*"])


def test_a_database_without_test_in_its_name_is_refused(shop, pg_server):
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS shop_prod")
        conn.execute("CREATE DATABASE shop_prod")
    dsn = make_conninfo(pg_server.dsn, dbname="shop_prod")
    shop.makepyfile(SIMPLE_TEST)
    result = shop.runpytest(f"--sqlfix-dsn={dsn}", *NO_RANDOM)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*refusing to use database 'shop_prod'*allow_any_database*"])
    with psycopg.connect(dsn) as conn:  # nothing was created there
        assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)

    (shop.path / "pyproject.toml").write_text(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\nallow_any_database = true\n')
    shop.runpytest(f"--sqlfix-dsn={dsn}", *NO_RANDOM).assert_outcomes(passed=1)


MIGRATE = """
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    assert conn.info.dbname == psycopg.connect(os.environ["SQLFIX_DSN"]).info.dbname
    conn.execute("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)")
print("migrated")
"""


def test_setup_command_migrates_the_test_database(pytester):
    pytester.makefile(".py", migrate=MIGRATE)
    pytester.makepyprojecttoml(
        f'[tool.sqlfix]\nsetup_command = ["{sys.executable}", "migrate.py"]\n')
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "notes.sql").write_text(
        "INSERT INTO notes (body) VALUES ({{ fake.sentence() }});\n")
    pytester.makepyfile(
        """
        from sqlfix import uses

        @uses("notes.sql")
        def test_notes(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT count(*) FROM notes").fetchone() == (1,)
        """
    )
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=1)


def test_a_failing_setup_command_stops_the_session_with_its_output(pytester):
    pytester.makepyprojecttoml(
        "[tool.sqlfix]\nsetup_command = \"echo 'migration 042 failed: relation x exists' >&2; exit 3\"\n")
    pytester.makepyfile("def test_a(sqlfix_conn): pass\ndef test_b(sqlfix_conn): pass\n")
    result = pytester.runpytest(*NO_RANDOM)
    assert result.ret == 3
    result.stdout.fnmatch_lines([
        "*setup_command*(from *pyproject.toml) failed with exit code 3*",
        "*migration 042 failed: relation x exists*",
    ])


def test_alembic_as_the_setup_command(pytester):
    pytester.makefile(".ini", alembic="[alembic]\nscript_location = migrations\n")
    (pytester.path / "migrations" / "versions").mkdir(parents=True)
    (pytester.path / "migrations" / "env.py").write_text(
        "import os\n"
        "from alembic import context\n"
        "from sqlalchemy import create_engine\n"
        "url = os.environ['DATABASE_URL'].replace('postgresql://', 'postgresql+psycopg://', 1)\n"
        "with create_engine(url).connect() as connection:\n"
        "    context.configure(connection=connection, target_metadata=None)\n"
        "    with context.begin_transaction():\n"
        "        context.run_migrations()\n"
    )
    (pytester.path / "migrations" / "script.py.mako").write_text("")
    (pytester.path / "migrations" / "versions" / "0001_notes.py").write_text(
        "from alembic import op\n"
        "import sqlalchemy as sa\n"
        "revision = '0001'\n"
        "down_revision = None\n"
        "def upgrade():\n"
        "    op.create_table('notes', sa.Column('id', sa.Integer, primary_key=True),\n"
        "                    sa.Column('body', sa.Text, nullable=False))\n"
    )
    pytester.makepyprojecttoml(
        f'[tool.sqlfix]\nsetup_command = ["{sys.executable}", "-m", "alembic", "upgrade", "head"]\n')
    pytester.makepyfile(
        """
        def test_notes_exist(sqlfix_conn):
            sqlfix_conn.execute("INSERT INTO notes (body) VALUES ('x')")
            assert sqlfix_conn.execute("SELECT count(*) FROM notes").fetchone() == (1,)

        def test_alembic_version_recorded(sqlfix_conn):
            assert sqlfix_conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
        """
    )
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=2)


def test_database_url_keeps_unix_socket_hosts_in_the_query():
    url = database_url("host=/dev/shm/sqlfix-ab port=5432 user=sqlfix dbname=sqlfix_test")
    assert url == "postgresql://sqlfix@/sqlfix_test?host=%2Fdev%2Fshm%2Fsqlfix-ab&port=5432"
    assert database_url("host=db.local port=6543 user=a password=p@ss dbname=x_test") == (
        "postgresql://a:p%40ss@db.local:6543/x_test")


def test_a_failing_schema_statement_is_named_by_file_and_line(pytester):
    (pytester.path / "schema.sql").write_text(
        "CREATE TABLE a (id int PRIMARY KEY);\n\n"
        "CREATE TABLE b (a_id int REFERENCES nowhere (id));\n")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    pytester.makepyfile("def test_a(sqlfix_conn): pass\n")
    result = pytester.runpytest(*NO_RANDOM)
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*schema.sql:3:1: schema failed: 42P01*"])


def _schema_failure(dsn: str, tmp_path, text: str) -> str:
    from sqlfix.database.schema import apply_schema, connect
    from sqlfix.errors import DatabaseError

    path = tmp_path / "schema.sql"
    path.write_text(text)
    conn = connect(dsn)
    try:
        apply_schema(conn, [path])
    except DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()
    raise AssertionError("the schema applied")


def test_a_syntax_error_in_the_schema_says_line_and_column_and_no_already_exists(fresh_dsn, tmp_path):
    message = _schema_failure(fresh_dsn, tmp_path, "CREATE TABLE a (id int);\n\nCREATE TABLE b (id int,, x int);\n")
    assert ":3:24: schema failed: 42601 syntax error at or near \",\"" in message
    assert "already exist" not in message
    assert "one transaction" in message


def test_detail_and_hint_of_the_server_are_shown(fresh_dsn, tmp_path):
    message = _schema_failure(
        fresh_dsn, tmp_path,
        "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1), (1);\n"
        "ALTER TABLE a ADD PRIMARY KEY (id);\n")
    assert ":3:1: schema failed: 23505" in message
    assert "DETAIL: Key (id)=(1) is duplicated." in message
    message = _schema_failure(fresh_dsn, tmp_path, "SELECT lenght('x');\n")
    assert ":1:8: schema failed: 42883 function lenght(unknown) does not exist" in message
    assert "HINT: No function matches" in message


def test_concurrently_points_to_setup_command(fresh_dsn, tmp_path):
    message = _schema_failure(
        fresh_dsn, tmp_path, "CREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY ON a (id);\n")
    assert ":2:1: schema failed: 25001 CREATE INDEX CONCURRENTLY cannot run inside a transaction block" in message
    assert "Schema files run in one transaction" in message and "setup_command" in message
    assert "already exist" not in message


def test_already_exists_advice_only_for_duplicate_objects(fresh_dsn, tmp_path):
    for text in ("CREATE TABLE a (id int);\nCREATE TABLE a (id int);\n",
                 "CREATE TYPE mood AS ENUM ('a');\nCREATE TYPE mood AS ENUM ('b');\n",
                 "CREATE SCHEMA s;\nCREATE SCHEMA s;\n",
                 "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
                 "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"):
        message = _schema_failure(fresh_dsn, tmp_path, text)
        assert ":2:" in message and "already exists" in message, message
        assert "empty test database" in message


def test_psql_restrict_lines_of_pg_dump_are_skipped(fresh_dsn, tmp_path):
    from sqlfix.database.schema import apply_schema, connect

    path = tmp_path / "schema.sql"
    path.write_text("\\restrict AbC123\nCREATE TABLE a (id int);\n\\unrestrict AbC123\n")
    conn = connect(fresh_dsn)
    try:
        assert apply_schema(conn, [path])
        assert conn.execute("SELECT to_regclass('a')::text").fetchone() == ("a",)
    finally:
        conn.close()


def test_other_psql_meta_commands_are_refused_by_name(fresh_dsn, tmp_path):
    message = _schema_failure(fresh_dsn, tmp_path, "CREATE TABLE a (id int);\n\\connect other\n")
    assert ":2:1: schema failed: 42601" in message
    assert "psql meta-commands" in message


def test_setup_command_finds_the_running_interpreters_python_first(pytester, monkeypatch, tmp_path):
    import os

    # A PATH whose `python` is not this interpreter, as when the venv is not activated.
    other = tmp_path / "otherbin"
    other.mkdir()
    (other / "python").write_text("#!/bin/sh\necho wrong python >&2; exit 9\n")
    (other / "python").chmod(0o755)
    monkeypatch.setenv("PATH", f"{other}{os.pathsep}/usr/bin{os.pathsep}/bin")
    pytester.makepyprojecttoml(
        '[tool.sqlfix]\nsetup_command = "python -c \'import sys; print(sys.executable)\' > used.txt"\n')
    pytester.makepyfile("def test_a(sqlfix_conn): pass\n")
    pytester.runpytest(*NO_RANDOM).assert_outcomes(passed=1)
    used = (pytester.path / "used.txt").read_text().strip()
    assert os.path.dirname(used) == os.path.dirname(sys.executable)


def test_transaction_control_in_a_schema_file_is_refused_by_line_before_anything_runs(
        fresh_dsn, tmp_path):
    cases = {
        "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n": ":1:1: schema failed: BEGIN in a schema",
        "CREATE TABLE a (id int);\n-- done\n  COMMIT;\nCREATE TABLE b (id int);\n":
            ":3:3: schema failed: COMMIT in a schema",
        "START TRANSACTION;\nCREATE TABLE a (id int);\nEND;\n": ":1:1: schema failed: START",
        "CREATE TABLE a (id int);\n/* é */ ROLLBACK;\n": ":2:9: schema failed: ROLLBACK",
    }
    for text, expected in cases.items():
        message = _schema_failure(fresh_dsn, tmp_path, text)
        assert expected in message, message
        assert "setup_command" in message and "wrong nesting level" not in message
        with psycopg.connect(fresh_dsn) as conn:  # nothing of it was committed
            assert conn.execute("SELECT to_regclass('a')").fetchone() == (None,)
    # savepoints and plpgsql BEGIN ... END are no transaction control
    from sqlfix.database.schema import apply_schema, connect

    path = tmp_path / "schema.sql"
    path.write_text("CREATE TABLE a (id int);\nSAVEPOINT s;\nROLLBACK TO SAVEPOINT s;\n"
                    "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 1; END$$;\n")
    conn = connect(fresh_dsn)
    try:
        assert apply_schema(conn, [path])
    finally:
        conn.close()


def test_a_missing_owner_role_says_how_to_dump_without_owners(fresh_dsn, tmp_path):
    # role names no other test creates: roles are the whole server's, shared by the tests
    for text in ("CREATE TABLE a (id int);\nALTER TABLE public.a OWNER TO no_such_owner_7f3;\n",
                 "CREATE TABLE a (id int);\nGRANT SELECT ON TABLE public.a TO no_such_reader_7f3;\n"):
        message = _schema_failure(fresh_dsn, tmp_path, text)
        assert ":2:" in message and "42704 role" in message, message
        assert "--no-owner --no-privileges" in message and "CREATE ROLE" in message, message
    message = _schema_failure(fresh_dsn, tmp_path, "CREATE TABLE b (x nosuchtype);\n")
    assert "42704" in message and "--no-owner" not in message  # not every 42704 is a role


def test_the_duplicate_object_advice_names_the_schema_files_themselves(fresh_dsn, tmp_path):
    message = _schema_failure(fresh_dsn, tmp_path, "CREATE TABLE a (id int);\nCREATE TABLE a (id int);\n")
    assert "the schema files create it twice" in message, message


def test_copy_rows_of_a_whole_pg_dump_are_refused_by_line_with_what_to_do(fresh_dsn, tmp_path):
    # `pg_dump mydb` (no --schema-only) holds the data as COPY ... FROM stdin blocks: the
    # server got the rows as SQL ("syntax error at or near 1") and no advice
    data = Path(__file__).parent.parent / "data" / "pgdump"
    text = (data / "schema.sql").read_text() + (data / "data_copy.sql").read_text()
    line = text[:text.index("\nCOPY ")].count("\n") + 2
    message = _schema_failure(fresh_dsn, tmp_path, text)
    assert f"schema.sql:{line}:1: schema failed: COPY ... FROM stdin" in message
    assert "--schema-only" in message and "sqlfix import" in message
    assert "setup_command" in message and "syntax error" not in message
    with psycopg.connect(fresh_dsn) as conn:  # nothing of it was applied
        assert conn.execute("SELECT to_regclass('public.customer')").fetchone() == (None,)
    # COPY at a line start inside a string is no block of rows
    _schema_ok = "CREATE TABLE a (id int);\nCOMMENT ON TABLE a IS $$\nCOPY a FROM stdin;\n$$;\n"
    from sqlfix.database.schema import apply_schema, connect

    path = tmp_path / "ok.sql"
    path.write_text(_schema_ok)
    conn = connect(fresh_dsn)
    try:
        assert apply_schema(conn, [path])
    finally:
        conn.close()
