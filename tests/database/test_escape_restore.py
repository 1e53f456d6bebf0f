"""What an escape restores beyond rows: committed DDL, role and database settings, and the
connections a test left holding locks (review of issue #9). Inner runs on the real database.
"""

from __future__ import annotations

import psycopg
import pytest
from helpers import NO_RANDOM

SCHEMA = (
    "CREATE TABLE kinds (code text PRIMARY KEY);\n"
    "INSERT INTO kinds VALUES ('a'), ('b');\n"
    "CREATE TABLE t (id int PRIMARY KEY, v text, kind text REFERENCES kinds);\n"
    "CREATE ROLE lowpriv NOLOGIN;\n"
    "CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS $$ SELECT 42 $$;\n"
    "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN NEW.v := NEW.v || '!'; RETURN NEW; END $$;\n"
    "CREATE TRIGGER stamp BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION stamp();\n"
    "ALTER ROLE CURRENT_USER SET work_mem = '8MB';\n"
)


def _project(pytester, extra: str = "", schema: str = SCHEMA) -> None:
    (pytester.path / "schema.sql").write_text(schema)
    pytester.makepyprojecttoml(f'[tool.sqlfix]\nschema = ["schema.sql"]\n{extra}')


BASELINE_CHECK = '''
def check_baseline(conn):
    assert conn.execute("SELECT to_regclass('public.leak_tbl')").fetchone() == (None,)
    assert conn.execute("SELECT code FROM kinds ORDER BY 1").fetchall() == [("a",), ("b",)]
    conn.execute("INSERT INTO t VALUES (1, 'a', 'a')")  # no constraint a test added
    assert conn.execute("SELECT v FROM t").fetchall() == [("a!",)]  # trigger still there
    assert conn.execute("SELECT answer()").fetchone() == (42,)
    assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
    assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
    assert conn.execute("SHOW transaction_read_only").fetchone() == ("off",)
'''


def test_committed_ddl_is_undone_by_a_rebuild_not_called_a_restore(pytester):
    _project(pytester)
    pytester.makepyfile(BASELINE_CHECK + '''
import pytest

ESCAPES = [
    "CREATE TABLE leak_tbl (x int); INSERT INTO leak_tbl VALUES (1); COMMIT",
    "ALTER TABLE t ADD CONSTRAINT vchk CHECK (v <> 'a!') NOT VALID; COMMIT",
    "CREATE OR REPLACE FUNCTION answer() RETURNS int LANGUAGE sql AS $$ SELECT 7 $$; COMMIT",
    "DROP TRIGGER stamp ON t; COMMIT",
    "CREATE ROLE leak_role; COMMIT",
]

@pytest.mark.parametrize("n", range(len(ESCAPES)))
def test_escape(sqlfix_conn, n):
    check_baseline(sqlfix_conn)
    sqlfix_conn.execute(ESCAPES[n])

def test_last(sqlfix_conn):
    check_baseline(sqlfix_conn)
    assert sqlfix_conn.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname = 'leak_role'").fetchone() == (0,)
''')
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=5)
    out = result.stdout.str()
    for line in ["table public.leak_tbl was created", "constraint vchk on public.t was created",
                 "function public.answer() changed", "trigger stamp on public.t was dropped"]:
        assert line in out
    assert "column public.leak_tbl.x" not in out  # a new table's columns go without saying
    assert "role leak_role was created" in out  # sqlfix's own server: roles are its too
    # counted in the failures only: with CI set, pytest's summary repeats whole messages
    assert out.split("short test summary info")[0].count("sqlfix rebuilt the test database") == 5
    assert "sqlfix restored the baseline" not in out


def test_role_and_database_settings_a_test_committed_are_put_back(pytester):
    _project(pytester)
    pytester.makepyfile(BASELINE_CHECK + '''
import pytest

def db(conn):
    return conn.execute("SELECT quote_ident(current_database())").fetchone()[0]

ESCAPES = [
    "ALTER ROLE CURRENT_USER SET search_path = pg_catalog; COMMIT",
    "ALTER ROLE CURRENT_USER IN DATABASE {db} SET search_path = pg_catalog; COMMIT",
    "ALTER ROLE CURRENT_USER SET work_mem = '64MB'; COMMIT",
    "ALTER ROLE CURRENT_USER RESET work_mem; COMMIT",
    "ALTER DATABASE {db} SET default_transaction_read_only = on; COMMIT",
    "ALTER ROLE ALL SET default_transaction_read_only = on; COMMIT",
    "ALTER ROLE CURRENT_USER SET role = lowpriv; COMMIT",
    None,  # see below
]

@pytest.mark.parametrize("n", range(len(ESCAPES)))
def test_escape(sqlfix_conn, n):
    check_baseline(sqlfix_conn)
    if ESCAPES[n] is not None:
        sqlfix_conn.execute(ESCAPES[n].format(db=db(sqlfix_conn)))
        return
    # not allowed on the database one is connected to: from another one
    import psycopg
    from psycopg.conninfo import make_conninfo
    other_db = make_conninfo(sqlfix_conn.info.dsn, dbname="postgres")
    with psycopg.connect(other_db, autocommit=True) as other:
        other.execute(f"ALTER DATABASE {db(sqlfix_conn)} ALLOW_CONNECTIONS false")
    sqlfix_conn.execute("COMMIT")

def test_last(sqlfix_conn):
    check_baseline(sqlfix_conn)
    assert sqlfix_conn.execute("SELECT current_user = session_user").fetchone() == (True,)
''')
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=8)
    result.stdout.fnmatch_lines([
        "*test_escape?0?*", "*sqlfix restored the baseline*",
        "*sqlfix put back database and role settings a test committed*",
        "*ALTER ROLE <session user> SET search_path = pg_catalog was undone (RESET)*",
    ])
    out = result.stdout.str()
    for line in [
        "ALTER ROLE <session user> IN DATABASE <test database> SET search_path = pg_catalog "
        "was undone (RESET)",
        "ALTER ROLE <session user> SET work_mem = 64MB was undone (back to 8MB)",
        "ALTER ROLE <session user> RESET work_mem was undone (back to 8MB)",
        "ALTER DATABASE <test database> SET default_transaction_read_only = on was undone",
        "ALTER ROLE ALL SET default_transaction_read_only = on was undone",
        "ALLOW_CONNECTIONS/CONNECTION LIMIT/IS_TEMPLATE was undone (back to True/-1/False)",
        "ALTER ROLE <session user> SET role = lowpriv was undone (RESET)",
    ]:
        assert line in out, line
    assert "read-only" not in out


def test_with_a_dsn_committed_ddl_stops_the_run_and_the_next_run_refuses(pytester, fresh_dsn):
    _project(pytester, f"dsn = {fresh_dsn!r}\n",
             schema="CREATE TABLE t (id int PRIMARY KEY, v text);\n")
    pytester.makepyfile('''
def test_1(sqlfix_conn):
    sqlfix_conn.execute("CREATE TABLE leak_tbl (x int); COMMIT")

def test_2(sqlfix_conn):
    pass
''')
    result = pytester.runpytest(*NO_RANDOM)
    assert result.ret == 3
    result.stdout.fnmatch_lines([
        "*baseline could not be restored (a test changed the schema of the test database*",
        "*table public.leak_tbl was created*",
        "*it does not drop a database given by DSN*Recreate*",
    ])
    assert "restored the baseline" not in result.stdout.str().replace("could not be restored", "")
    again = pytester.runpytest(*NO_RANDOM)
    assert again.ret == 3
    again.stdout.fnmatch_lines([
        "*a test of an earlier run changed the schema of database*"
        "(table public.leak_tbl was created)*Recreate that test database*"])


HOLDER = '''
import psycopg
import pytest
import pytest
from sqlfix import uses

FORGOTTEN = []

@pytest.fixture(autouse=True, scope="module")
def _close_them_in_the_end():  # the outer run's filterwarnings=error sees a leaked one
    yield
    for conn in FORGOTTEN:
        conn.close()

def hold(dsn, mode, app="forgotten"):
    other = psycopg.connect(dsn, application_name=app)
    other.execute(f"LOCK TABLE t IN {mode} MODE")
    FORGOTTEN.append(other)  # never closed, never committed
'''


def test_the_verifier_ends_a_forgotten_lock_holder_and_names_it(pytester):
    # lock_timeout long: a verifier that waited would time out and say so, not end it
    _project(pytester, 'lock_timeout = "100s"\nload_lock_timeout = "100s"\n')
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "rows.sql").write_text(
        "INSERT INTO t VALUES (1, 'one', 'a');\n")
    pytester.makepyfile(HOLDER + '''
def test_1_holds(sqlfix_conn, sqlfix_dsn):
    hold(sqlfix_dsn, "ACCESS EXCLUSIVE")

def test_2_holds_a_weaker_lock(sqlfix_conn, sqlfix_dsn):
    hold(sqlfix_dsn, "ROW EXCLUSIVE", "harmless")  # blocks neither reads nor loads

@uses("rows.sql")
def test_3_runs(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (1,)

def test_4_the_first_is_gone():
    assert FORGOTTEN[0].closed or FORGOTTEN[0].broken or _dead(FORGOTTEN[0])
    assert FORGOTTEN[1].execute("SELECT 1").fetchone() == (1,)

def _dead(conn):
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False
''')
    result = pytester.runpytest(*NO_RANDOM, "--sqlfix-verify")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_1_holds*",
        "*sqlfix ended a connection this run opened and left open*pid * (application_name "
        "'forgotten', idle in transaction, last query: 'LOCK TABLE t IN ACCESS EXCLUSIVE "
        "MODE') holding AccessExclusiveLock on public.t*",
    ])
    assert "LockNotAvailable" not in result.stdout.str()
    # the first line says it all: pytest's short summary shows no more
    result.stdout.fnmatch_lines(["*sqlfix --sqlfix-verify: this test left 1 connection open "
                                 "that held locks blocking reads of the test database's "
                                 "tables; sqlfix ended it:"])
    assert "after this test:" not in result.stdout.str()


def test_an_escape_restore_ends_a_forgotten_lock_holder_and_names_it(pytester):
    _project(pytester, 'lock_timeout = "100s"\n')
    pytester.makepyfile(HOLDER + '''
def test_1_holds(sqlfix_conn, sqlfix_dsn):
    hold(sqlfix_dsn, "ACCESS SHARE")

def test_2_escapes(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO t VALUES (5, 'x', 'a'); COMMIT")

def test_3_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
''')
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*test_2_escapes*", "*sqlfix restored the baseline*",
        "*sqlfix ended a connection this run opened and left open, which held locks sqlfix "
        "needed to restore the baseline: pid * (application_name 'forgotten', idle in "
        "transaction, last query: 'LOCK TABLE t IN ACCESS SHARE MODE') holding "
        "AccessShareLock on public.t*",
    ])


def test_a_restore_blocked_by_a_connection_from_before_the_run_stops_naming_it(
        pytester, fresh_dsn):
    _project(pytester, f'dsn = {fresh_dsn!r}\nlock_timeout = "100s"\n',
             schema="CREATE TABLE t (id int PRIMARY KEY, v text);\n")
    pytester.makepyfile('''
def test_1_escapes(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO t VALUES (5, 'x'); COMMIT")
''')
    pytester.runpytest(*NO_RANDOM).assert_outcomes(failed=1)  # applies the schema
    with psycopg.connect(fresh_dsn, application_name="someones psql") as other:
        other.execute("LOCK TABLE t IN ACCESS SHARE MODE")
        result = pytester.runpytest(*NO_RANDOM)
        assert other.execute("SELECT 1").fetchone() == (1,)  # left alone
    assert result.ret == 3
    result.stdout.fnmatch_lines([
        "*the baseline could not be restored (sqlfix must restore the baseline but other "
        "connections hold locks on tables of the test database: pid * (application_name "
        "'someones psql', idle in transaction, last query: 'LOCK TABLE t IN ACCESS SHARE "
        "MODE') holding AccessShareLock on public.t. They were opened before this test run*",
    ])


def test_the_verifier_sees_ddl_and_settings_committed_elsewhere_and_puts_them_back(pytester):
    _project(pytester)
    pytester.makepyfile(BASELINE_CHECK + '''
import psycopg
import pytest

def other(conn):
    return psycopg.connect(conn.info.dsn, autocommit=True)

def test_1_sets_a_role_setting_elsewhere(sqlfix_conn):
    with other(sqlfix_conn) as c:
        c.execute("ALTER ROLE CURRENT_USER SET search_path = pg_catalog")

def test_2_adds_a_column_elsewhere(sqlfix_conn):
    with other(sqlfix_conn) as c:  # before the test's own connection takes locks on t
        c.execute("ALTER TABLE t ADD COLUMN extra int")

def test_3_temp_table_and_analyze_are_no_change(sqlfix_conn):
    with other(sqlfix_conn) as c:
        c.execute("CREATE TEMP TABLE scratch (x int); ANALYZE t")
    check_baseline(sqlfix_conn)

def test_4_clean(sqlfix_conn):
    check_baseline(sqlfix_conn)
    assert sqlfix_conn.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'extra'"
    ).fetchone() == (0,)
''')
    result = pytester.runpytest(*NO_RANDOM, "--sqlfix-verify")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_1_sets_a_role_setting_elsewhere*",
        "*database or role settings (ALTER DATABASE/ROLE ... SET*changed: see below*",
        "*ALTER ROLE <session user> SET search_path = pg_catalog was undone (RESET)*",
        "*ERROR at teardown of test_2_adds_a_column_elsewhere*",
        "*sqlfix rebuilt the test database*", "*column public.t.extra was created*",
    ])


def test_sqlfixs_own_copies_changed_by_a_test_make_a_rebuild_not_a_wrong_restore(pytester):
    # A "clean the database" helper truncating every table it finds (sqlfix's copies of
    # the schema's rows included), a write into a copy, a dropped copy schema: the restore
    # would reload the wrong rows; the database is built again instead, and says so.
    _project(pytester)
    pytester.makepyfile(BASELINE_CHECK + """
import pytest

@pytest.mark.parametrize("how", [
    "TRUNCATE _sqlfix_baseline.\\"public.kinds\\", kinds CASCADE",
    "INSERT INTO _sqlfix_baseline.\\"public.kinds\\" VALUES ('z')",
    "DROP SCHEMA _sqlfix_baseline CASCADE",
])
def test_escape(sqlfix_conn, how):
    sqlfix_conn.execute(how + "; COMMIT")

def test_last(sqlfix_conn):
    check_baseline(sqlfix_conn)
""")
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    failures = out.split("short test summary info")[0]  # with CI set, the summary repeats them
    assert failures.count("copies of the schema's rows (schema _sqlfix_baseline) were changed") == 3
    assert "sqlfix restored the baseline" not in out


CATALOG_FACTS = '''
FIRST = []

def check_catalogs(conn):
    """Facts of the catalogs no data restore touches; each test must see the first's."""
    facts = conn.execute("""SELECT
      (SELECT count(*) FROM pg_extension WHERE extname = 'plpgsql'),
      (SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'),
      (SELECT count(*) FROM pg_largeobject_metadata),
      (SELECT count(*) FROM pg_operator WHERE oprname = '==='),
      (SELECT count(*) FROM pg_collation WHERE collname = 'leak_coll'),
      (SELECT count(*) FROM pg_ts_config WHERE cfgname = 'leak_ts'),
      (SELECT count(*) FROM pg_foreign_data_wrapper),
      (SELECT count(*) FROM pg_statistic_ext),
      obj_description('public.t'::regclass, 'pg_class'),
      obj_description('public'::regnamespace, 'pg_namespace'),
      (SELECT count(*) FROM pg_index WHERE indisclustered),
      (SELECT attstorage FROM pg_attribute WHERE attrelid = 'public.t'::regclass
       AND attname = 'v'),
      has_function_privilege('public', 'pg_catalog.now()', 'EXECUTE')""").fetchone()
    FIRST.append(facts)
    assert facts == FIRST[0]
'''


def test_committed_catalog_changes_of_every_kind_are_undone_by_a_rebuild(pytester):
    # The changes a fingerprint of listed kinds missed (built-in objects' ACLs and
    # comments, large objects, extensions, operators...): found whatever catalog holds
    # them, and the database is built again; the next test sees the first test's catalogs.
    _project(pytester)
    pytester.makepyfile(BASELINE_CHECK + CATALOG_FACTS + '''
import pytest

ESCAPES = [
    "DROP EXTENSION plpgsql CASCADE",
    "GRANT CREATE ON SCHEMA public TO lowpriv",
    "SELECT lo_create(4242)",
    "CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq)",
    'CREATE COLLATION leak_coll FROM "C"',
    "CREATE TEXT SEARCH CONFIGURATION leak_ts (COPY = simple)",
    "CREATE FOREIGN DATA WRAPPER leak_fdw; CREATE SERVER leak_srv FOREIGN DATA WRAPPER leak_fdw",
    "CREATE STATISTICS leak_st ON id, v FROM t",
    "COMMENT ON TABLE t IS 'leaked'",
    "COMMENT ON SCHEMA public IS 'leaked'",
    "ALTER TABLE t CLUSTER ON t_pkey",
    "ALTER TABLE t ALTER v SET STORAGE external",
    "REVOKE EXECUTE ON FUNCTION pg_catalog.now() FROM PUBLIC",
    "ALTER SCHEMA public RENAME TO leaked_public",
]

@pytest.mark.parametrize("n", range(len(ESCAPES)))
def test_escape(sqlfix_conn, n):
    check_baseline(sqlfix_conn)
    check_catalogs(sqlfix_conn)
    sqlfix_conn.execute(ESCAPES[n] + "; COMMIT")

def test_last(sqlfix_conn):
    check_baseline(sqlfix_conn)
    check_catalogs(sqlfix_conn)
''')
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=14)
    out = result.stdout.str()
    failures = out.split("short test summary info")[0]
    assert failures.count("sqlfix rebuilt the test database") == 14
    assert "sqlfix restored the baseline" not in out
    for line in ["extension plpgsql was dropped", "schema public changed",
                 "pg_catalog.pg_largeobject_metadata changed (large objects",
                 "pg_catalog.pg_operator changed", "pg_catalog.pg_collation changed",
                 "pg_catalog.pg_ts_config changed", "pg_catalog.pg_foreign_data_wrapper changed",
                 "pg_catalog.pg_statistic_ext changed", "pg_catalog.pg_description changed",
                 "pg_catalog.pg_index changed", "pg_catalog.pg_attribute changed (columns",
                 "pg_catalog.pg_proc changed", "schema leaked_public was created"]:
        assert line in out, line


def test_data_only_escapes_are_restored_not_rebuilt(pytester):
    # What changes catalog rows without changing the schema: a TRUNCATE (a new file for
    # the table), ANALYZE, a temporary table, a setting sqlfix puts back.
    _project(pytester)
    pytester.makepyfile(BASELINE_CHECK + CATALOG_FACTS + '''
import pytest

ESCAPES = [
    "TRUNCATE t, kinds CASCADE",
    "ANALYZE t",
    "CREATE TEMP TABLE t (id int, v text, kind text); INSERT INTO t VALUES (9, 'x', 'z')",
    "ALTER ROLE CURRENT_USER SET work_mem = '64MB'",
]

@pytest.mark.parametrize("n", range(len(ESCAPES)))
def test_escape(sqlfix_conn, n):
    check_baseline(sqlfix_conn)
    check_catalogs(sqlfix_conn)
    sqlfix_conn.execute(ESCAPES[n] + "; COMMIT")

def test_last(sqlfix_conn):
    check_baseline(sqlfix_conn)
    check_catalogs(sqlfix_conn)
''')
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=4)
    out = result.stdout.str()
    assert out.split("short test summary info")[0].count("sqlfix restored the baseline") == 4
    assert "sqlfix rebuilt" not in out


def test_a_rebuild_works_when_the_postgres_database_is_gone(pytester):
    # sqlfix drops and creates the test database from another one: template1 then.
    _project(pytester)
    pytester.makepyfile(BASELINE_CHECK + '''
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

def test_1_drops_postgres_and_escapes(sqlfix_conn):
    with psycopg.connect(make_conninfo(sqlfix_conn.info.dsn, dbname="template1"),
                         autocommit=True) as other:
        other.execute("DROP DATABASE postgres")
    sqlfix_conn.execute("CREATE TABLE leak_tbl (x int); COMMIT")

def test_2_clean(sqlfix_conn):
    check_baseline(sqlfix_conn)
''')
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*sqlfix rebuilt the test database*",
                                 "*table public.leak_tbl was created*"])


def test_with_a_dsn_a_committed_comment_or_large_object_stops_the_run(pytester, fresh_dsn):
    _project(pytester, f"dsn = {fresh_dsn!r}\n",
             schema="CREATE TABLE t (id int PRIMARY KEY, v text);\n")
    pytester.makepyfile('''
def test_1(sqlfix_conn):
    sqlfix_conn.execute("SELECT lo_create(77); COMMENT ON TABLE t IS 'leaked'; COMMIT")

def test_2(sqlfix_conn):
    pass
''')
    result = pytester.runpytest(*NO_RANDOM)
    assert result.ret == 3
    result.stdout.fnmatch_lines(["*a test changed the schema of the test database*",
                                 "*pg_catalog.pg_description changed*"])
    again = pytester.runpytest(*NO_RANDOM)
    assert again.ret == 3
    again.stdout.fnmatch_lines(["*a test of an earlier run changed the schema of database*"])


def test_change_lines_agree_with_plural_kinds():
    from sqlfix.database.catalog import Schema

    before = Schema({("internal triggers", "on public.t"): "OO",
                     ("default privileges", "postgres 0 r"): "{a}",
                     ("trigger", "stamp on public.t"): "x"}, "1")
    after = Schema({}, "2")
    assert before.changes(after) == [
        "default privileges postgres 0 r were dropped",
        "internal triggers on public.t were dropped",
        "trigger stamp on public.t was dropped"]
    assert after.changes(before)[1] == "internal triggers on public.t were created"


@pytest.mark.parametrize("built", ["by schema files", "by hand"])
def test_with_a_dsn_a_failed_restore_marks_the_database_and_the_next_run_refuses(
        pytester, fresh_dsn, built):
    table = "CREATE TABLE t (id int PRIMARY KEY, v text);\n"
    if built == "by schema files":
        _project(pytester, f"dsn = {fresh_dsn!r}\n", schema=table)
    else:  # no schema files (setup_command, a database made by hand): no state table yet
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            conn.execute(table)
        pytester.makepyprojecttoml(f"[tool.sqlfix]\ndsn = {fresh_dsn!r}\n")
    pytester.makepyfile('''
def test_1(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO t VALUES (1, 'escaped'); COMMIT")

def test_2(sqlfix_conn):
    pass
''')
    assert pytester.runpytest(*NO_RANDOM).ret == 1  # the schema is there; restored
    # a connection opened before the run holds a lock sqlfix's restore needs: it does not
    # end connections it did not open, so the restore fails and the run stops
    with psycopg.connect(fresh_dsn) as holder:
        holder.execute("SELECT count(*) FROM t")
        result = pytester.runpytest(*NO_RANDOM)
    assert result.ret == 3
    result.stdout.fnmatch_lines([
        "*baseline could not be restored*",
        "*sqlfix marked the test database as damaged: the next run refuses it*"])
    again = pytester.runpytest(*NO_RANDOM)
    assert again.ret == 3
    again.stdout.fnmatch_lines([
        "*a run before this one stopped with a test's committed changes still in database*"
        "(the baseline could not be restored: *)*Recreate that test database*"])
    assert "no tests ran" in again.stdout.str()


TWO_PHASE = '[tool.sqlfix.server_settings]\nmax_prepared_transactions = 4\n'
TWO_PHASE_CLEAN = '''
def test_9_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert sqlfix_conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() == (0,)
    # the rows' keys are free again: no insert waits for a prepared transaction's locks
    sqlfix_conn.execute("INSERT INTO t VALUES (1, 'x', 'a'), (2, 'y', 'a')")
'''


def test_prepare_transaction_in_a_test_is_an_escape_named_and_rolled_back(pytester):
    # A prepared transaction keeps its rows and locks after its session: the restore
    # waited for them until lock_timeout and stopped the run, blaming "a connection that
    # is gone now", and the message said the transaction "is in progress".
    _project(pytester, 'lock_timeout = "5s"\n' + TWO_PHASE)
    pytester.makepyfile('''
def test_1_prepares(sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO t VALUES (1, 'x', 'a')")
    sqlfix_conn.execute("PREPARE TRANSACTION 'left_behind'")
''' + TWO_PHASE_CLEAN)
    result = pytester.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*The test's transaction was PREPARED for two-phase commit (PREPARE TRANSACTION "
        "'left_behind')*",
        "*sqlfix restored the baseline*",
        "*sqlfix rolled back a prepared transaction this run left behind: 'left_behind' *",
    ])
    assert "is in progress" not in result.stdout.str()


def test_the_verifier_rolls_back_a_prepared_transaction_a_test_left_behind(pytester):
    # Code under test's two-phase commit on its own connection, never finished: without
    # the verifier nothing looks; with it, the test that left it is named.
    _project(pytester, 'lock_timeout = "5s"\n' + TWO_PHASE)
    pytester.makepyfile('''
import psycopg

def test_1_prepares_elsewhere(sqlfix_conn, sqlfix_dsn):
    other = psycopg.connect(sqlfix_dsn)
    other.tpc_begin("order-42")
    other.execute("INSERT INTO t VALUES (2, 'y', 'a')")
    other.tpc_prepare()
    other.close()  # the prepared transaction stays, with its row and locks
''' + TWO_PHASE_CLEAN)
    result = pytester.runpytest(*NO_RANDOM, "--sqlfix-verify")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_1_prepares_elsewhere*",
        "*sqlfix --sqlfix-verify: this test left 1 prepared transaction*",
        "*sqlfix rolled back a prepared transaction this run left behind: 'order-42' *",
    ])
