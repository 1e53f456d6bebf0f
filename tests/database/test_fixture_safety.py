"""Issue #8 on the real server: values quoted by psycopg, the restricted fixture role.

Each load runs inside a test boundary; every test checks the database is as it
was afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sqlfix.config import Settings
from sqlfix.database import fixture_role, loader
from sqlfix.database.session import DatabaseSession
from sqlfix.errors import FixtureError, LoadError

SCHEMA = """
CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL, balance numeric NOT NULL,
                       waited interval, seen timestamp, note text);
CREATE SCHEMA audit;
CREATE TABLE audit.log (id serial PRIMARY KEY, what text NOT NULL);
CREATE FUNCTION audit.record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit.log (what) VALUES (TG_OP || ' ' || NEW.name); RETURN NEW; END $$;
CREATE TRIGGER accounts_audit AFTER INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION audit.record();
CREATE TABLE secrets (id int PRIMARY KEY, owner text NOT NULL);
ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
DO $r$ BEGIN CREATE ROLE app_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $r$;
INSERT INTO accounts (name, balance) VALUES ('base', 100);
"""


@pytest.fixture
def session(fresh_dsn: str, tmp_path: Path) -> Iterator[DatabaseSession]:
    (tmp_path / "fx").mkdir()
    (tmp_path / "schema.sql").write_text(SCHEMA)
    settings = Settings(root=tmp_path, dsn=fresh_dsn, fixtures_dir=tmp_path / "fx",
                        schema=(tmp_path / "schema.sql",))
    db = DatabaseSession(settings)
    db.start()
    before = snapshot(db.connection())
    yield db
    assert snapshot(db.connection()) == before  # the database is as it was
    db.stop()


def snapshot(conn: psycopg.Connection) -> tuple:
    conn.rollback()
    rows = conn.execute(
        "SELECT (SELECT json_agg(a ORDER BY id) FROM accounts a), "
        "(SELECT count(*) FROM audit.log), (SELECT count(*) FROM secrets)").fetchone()
    conn.rollback()
    return rows


def load(db: DatabaseSession, text: str, check: str | None = None) -> object:
    """Load `text` as fixture t.sql in a test boundary; the result of `check` inside it."""
    (db.settings.fixtures_dir / "t.sql").write_text(text)
    boundary = db.boundary()
    boundary.begin()
    try:
        loader.load(boundary.conn, db.library.plan(["t.sql"]))
        return boundary.conn.execute(check).fetchall() if check else None
    finally:
        boundary.end()


# -- values (inputs 2, 3, 4)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [("-30", "130"), ("-0.0", "100.0"), ("-2.5", "102.5"), ("-30 + 0", "130")],
)
def test_a_negative_number_after_a_minus_is_subtracted(session, delta, expected):
    rows = load(session,
                "UPDATE accounts SET balance = balance-{{ " + delta + " }}\n"
                "WHERE name = {{ 'base' }};\n",
                "SELECT balance::text FROM accounts WHERE name = 'base'")
    assert rows == [(expected,)]


def test_a_value_joined_to_macro_output_cannot_delete_rows(session):
    rows = load(session,
                "{% macro prefix() %}p-{% endmacro %}\n"
                "INSERT INTO accounts (name, balance) VALUES\n"
                "  ({{ prefix() ~ \"x'); DELETE FROM accounts; --\" }}, 1);\n",
                "SELECT name FROM accounts ORDER BY id")
    assert rows == [("base",), ("p-x'); DELETE FROM accounts; --",)]


@pytest.mark.parametrize(
    "expression", ["'a\\x00b'", "'x' ~ '\\x00' ~ \"'); DELETE FROM accounts; --\""])
def test_a_value_holding_nul_is_refused_before_the_server(session, expression):
    with pytest.raises(FixtureError, match=r"t.sql:2:1: SQLF203 .*NUL character \(U\+0000\)"):
        load(session, "SELECT 1;\nINSERT INTO accounts (name, balance) VALUES ({{ "
             + expression + " }}, 1);\n")


@pytest.mark.parametrize(
    "delta",
    [
        dt.timedelta(microseconds=1),
        dt.timedelta(days=123456, seconds=7, microseconds=654321),
        dt.timedelta(days=-3, microseconds=999999),
        dt.timedelta(seconds=0.5),
    ],
)
def test_intervals_are_exact_to_the_microsecond(session, delta):
    days, seconds, micros = delta.days, delta.seconds, delta.microseconds
    rows = load(session,
                "INSERT INTO accounts (name, balance, waited) VALUES ('w', 0, {{ timedelta("
                f"days={days}, seconds={seconds}, microseconds={micros})" + " }});\n",
                "SELECT waited FROM accounts WHERE name = 'w'")
    assert rows == [(delta,)]


def test_other_values_round_trip(session):
    rows = load(
        session,
        "INSERT INTO accounts (name, balance, seen, note) VALUES\n"
        "  ({{ \"O'Brien \\\\ back\" }}, {{ -1.5 }}, {{ now.replace(tzinfo=None) }}, "
        "{{ Jsonb({'k': [1, None]}) }}::text);\n",
        "SELECT name, balance::text, seen, note FROM accounts WHERE balance < 0")
    assert rows == [("O'Brien \\ back", "-1.5", dt.datetime(2024, 1, 1, 12),
                     '{"k": [1, null]}')]


# -- the fixture role (input 6)


def test_the_fixture_role_is_set_up_on_a_superuser_session(session):
    assert session.fixture_role == fixture_role.FixtureRole(
        fixture_role.ROLE, session.fixture_role.note)


def test_ordinary_fixtures_still_load_with_sequences_triggers_and_rls(session):
    rows = load(session,
                "INSERT INTO accounts (name, balance) VALUES ('new', 5);\n"
                "UPDATE accounts SET balance = balance + 1 WHERE name = 'new';\n"
                "INSERT INTO secrets (id, owner) VALUES (1, 'x');\n"
                "DELETE FROM secrets;\n"
                "SELECT setval('accounts_id_seq', 50);\n",
                "SELECT (SELECT what FROM audit.log ORDER BY id DESC LIMIT 1), "
                "current_user = session_user")
    assert rows == [("INSERT new", True)]  # the trigger wrote; the role was left


def _escape_attempts(out: Path) -> list[str]:
    return [
        f"SELECT lo_export(lo_from_bytea(0, 'pwned'), '{out}');",
        "SELECT pg_read_file('/etc/hostname');",
        "SELECT pg_ls_dir('.');",
        "SELECT pg_terminate_backend(pg_backend_pid());",
        "SELECT pg_reload_conf();",
        f"SELECT set_config('role', 'none', true);\nSELECT lo_export(lo_from_bytea(0, 'x'), '{out}');",
        f"SELECT set_config('session_authorization', 'none', true);\n"
        f"SELECT lo_export(lo_from_bytea(0, 'x'), '{out}');",
    ]


@pytest.mark.parametrize("index", range(7))
def test_fixtures_cannot_reach_outside_the_database(session, tmp_path, index):
    out = tmp_path / "exported"
    attack = _escape_attempts(out)[index]
    with pytest.raises((FixtureError, LoadError)) as info:  # the guard, or else the server
        load(session, "INSERT INTO accounts (name, balance) VALUES ('x', 1);\n" + attack + "\n")
    if isinstance(info.value, LoadError):
        assert info.value.sqlstate == "42501", info.value  # permission denied
    assert not out.exists()
    assert session.connection().execute("SELECT 1").fetchone() == (1,)  # not terminated


@pytest.mark.parametrize("index", range(7))
def test_the_server_layer_holds_without_the_guard(session, tmp_path, index):
    out = tmp_path / "exported"
    conn = session.connection()
    boundary = session.boundary()
    boundary.begin()
    try:
        with fixture_role.acting_as(conn), pytest.raises(psycopg.Error) as info:
            for statement in _escape_attempts(out)[index].split("\n"):
                conn.execute(statement)
        assert info.value.sqlstate == "42501"
    finally:
        boundary.end()
    assert not out.exists()


def test_the_role_is_left_afterwards_even_after_an_error(session):
    conn = session.connection()
    boundary = session.boundary()
    boundary.begin()
    try:
        conn.execute("SET LOCAL ROLE app_reader")
        with pytest.raises(LoadError):
            (session.settings.fixtures_dir / "bad.sql").write_text(
                "INSERT INTO accounts (name, balance) VALUES (NULL, 1);\n")
            loader.load(conn, session.library.plan(["bad.sql"]))
        assert conn.execute("SELECT current_user").fetchone() == ("app_reader",)
        conn.execute("RESET ROLE")
        # the test itself, as the session user, can still call set_config
        assert conn.execute("SELECT set_config('app.x', '1', true)").fetchone() == ("1",)
        conn.execute("SET LOCAL ROLE app_reader")  # and so can the schema's own roles
        assert conn.execute("SELECT set_config('app.x', '2', true)").fetchone() == ("2",)
    finally:
        boundary.end()


def test_a_user_that_is_not_superuser_gets_the_guard_only(fresh_dsn, pg_server):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = conninfo_to_dict(fresh_dsn)["dbname"]
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS sqlfix_plain_user")
        admin.execute("CREATE ROLE sqlfix_plain_user LOGIN")
    try:
        with psycopg.connect(make_conninfo(fresh_dsn, user="sqlfix_plain_user")) as conn:
            role = fixture_role.prepare(conn)
        assert role.name is None
        assert "'sqlfix_plain_user' is not a superuser" in role.note
        assert "statement guard only" in role.note
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute("DROP ROLE sqlfix_plain_user")


# -- found by review: the server must read the text as the guard did, whatever the test set


@pytest.mark.parametrize(
    "setting",
    ["SET standard_conforming_strings = off", "SET LOCAL standard_conforming_strings = off",
     "SET backslash_quote = on"],
)
def test_a_session_that_reads_backslashes_differently_cannot_smuggle_a_call(session, setting):
    """`SELECT 'p\\', '||pg_advisory_lock(4242)::text --';` is one SELECT of two strings to
    the guard; with standard_conforming_strings off the server would run the lock."""
    (session.settings.fixtures_dir / "v.sql").write_text(
        "SELECT 'p\\', '||pg_advisory_lock(4242)::text --';\n")
    boundary = session.boundary()
    boundary.begin()
    try:
        boundary.conn.execute(setting)
        loader.load(boundary.conn, session.library.plan(["v.sql"]))
        locks = boundary.conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
        ).fetchone()
        assert locks == (0,)
    finally:
        boundary.end()


def test_a_deeply_nested_expression_is_a_clear_finding_not_a_crash(session):
    text = "INSERT INTO accounts (name, balance) VALUES (" + " || ".join(["'a'"] * 1500) + ", 1);\n"
    with pytest.raises(FixtureError) as info:
        load(session, text)
    assert "t.sql:1:" in str(info.value) and "nested too deeply" in str(info.value)


@pytest.mark.parametrize(
    "call",
    ["pg_logical_emit_message(false, 'x', 'y')", "lowrite(0, 'x'::bytea)",
     "pg_catalog.pg_replication_slot_advance('s', '0/0'::pg_lsn)"],
)
def test_calls_with_effects_outside_the_transaction_are_refused(session, call):
    with pytest.raises(FixtureError) as info:
        load(session, f"SELECT {call};\n")
    assert "SQLF104" in str(info.value)
