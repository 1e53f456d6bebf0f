"""A user's server by DSN: safety, schema applied once, migrations by setup_command."""

from __future__ import annotations

import sys

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
        "*setup_command*failed with exit code 3*",
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
