"""The torture run: 220 generated tests that do what hostile tests do, in random order.

Each generated test first checks it starts clean (no rows, no session state), then
does a random mix of: commit, rollback, raise, abort its transaction, change
session settings, create temp tables, prepare statements, take advisory locks and
listen, load fixtures, insert rows, and escape (raw COMMIT/END, closing the
connection, with SET ROLE or search_path committed). Tests that raise or escape
must fail; every other test must pass. Run with the isolation verifier on, in a
subprocess with a time limit: a leak fails a later test's clean check or the
verifier, a hang fails the limit.
"""

from __future__ import annotations

import random

import pytest

TESTS = 220
SCHEMA = (
    "CREATE ROLE torture_low NOLOGIN;\n"
    "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);\n"
    "CREATE TABLE kinds (code text PRIMARY KEY);\n"
    "INSERT INTO kinds VALUES ('a'), ('b');\n"
    "CREATE TABLE base (id int);\nCREATE TABLE child () INHERITS (base);\n"
)
HEADER = '''
import psycopg
import pytest

CLEAN = """
SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM kinds), (SELECT count(*) FROM ONLY base),
       (SELECT count(*) FROM child),
       (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),
       (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'),
       (SELECT count(*) FROM pg_listening_channels()), pg_my_temp_schema()::int,
       current_user = session_user, current_setting('search_path'), current_setting('work_mem'),
       nextval('items_id_seq')
"""
EXPECTED = (0, 2, 0, 0, 0, 0, 0, 0, True, '"$user", public', "4MB", 1)
WITH_ITEMS = (1, 3, *EXPECTED[2:])  # items.sql loaded

def clean(conn, expected=EXPECTED):
    assert conn.execute(CLEAN).fetchone() == expected
    conn.rollback()
'''
# (code, fails): one step of a test body; `c` is the test's connection, `s` the handle
STEPS = {
    "commit": ("c.execute(\"INSERT INTO items (name) VALUES ('x')\"); c.commit()", False),
    "rollback": ("c.execute(\"INSERT INTO items (name) VALUES ('y')\"); c.rollback()", False),
    "insert": ("c.execute(\"INSERT INTO items (name) VALUES ('z'); INSERT INTO child VALUES (1); DELETE FROM kinds WHERE code = 'a'\")", False),
    "abort": ("with pytest.raises(psycopg.errors.NotNullViolation):\n        c.execute('INSERT INTO items (name) VALUES (NULL)')\n    c.rollback()", False),
    "setting": ("c.execute(\"SET work_mem = '64MB'; SET search_path = pg_catalog, public\")", False),
    "prepare": ("c.execute('PREPARE p AS SELECT 1')", False),
    "lock": ("c.execute('SELECT pg_advisory_lock(7); LISTEN chan')", False),
    "load": ("s.load('items.sql')", False),
    "temp": ("c.execute('CREATE TEMP TABLE items (id int, name text) ON COMMIT PRESERVE ROWS; INSERT INTO items VALUES (1, 1)')", False),
    "role": ("c.execute('SET ROLE torture_low')", False),
    "raise": ("raise RuntimeError('the test fails on purpose')", True),
    "escape_commit": ("c.execute(\"INSERT INTO items (name) VALUES ('leak'); COMMIT\")", True),
    "escape_end": ("c.execute(\"DELETE FROM kinds; SET ROLE torture_low; END\")", True),
    "escape_path": ("c.execute(\"SET search_path = pg_catalog; CREATE TEMP TABLE kinds (code text); COMMIT\")", True),
    "escape_close": ("c.close()", True),
}
LAST_ONLY = {"raise", "escape_commit", "escape_end", "escape_path", "escape_close"}


def generate(seed: int = 9, marks: bool = False) -> tuple[str, int]:
    """The test module's source and how many of its tests must fail.

    With `marks`, most tests load items.sql with a mark (shared by the tests after
    them: savepoint layers are kept between them) instead of in their body.
    """
    rng = random.Random(seed)
    ordinary = [k for k in STEPS if k not in LAST_ONLY]
    parts, failing = [HEADER], 0
    for number in range(TESTS):
        # the role and the temp table (shadowing items) go last: later steps could not run
        steps = sorted(rng.sample(ordinary, rng.randint(1, 4)), key=ordinary.index)
        if rng.random() < 0.25:
            steps.append(rng.choice(sorted(LAST_ONLY)))
        failing += any(STEPS[s][1] for s in steps)
        body = "\n    ".join(STEPS[s][0] for s in steps)
        marked = marks and rng.random() < 0.7
        mark = "@pytest.mark.sqlfix('items.sql')\n" if marked else ""
        expected = "WITH_ITEMS" if marked else "EXPECTED"
        parts.append(f"\n{mark}def test_{number}(sqlfix):\n    c, s = sqlfix.conn, sqlfix\n"
                     f"    clean(c, {expected})\n    {body}\n")
    return "".join(parts), failing


# The layered run (a second whole torture session) only in the full suite, not the matrix
@pytest.mark.parametrize("layers", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["plain", "layers"])
def test_torture_run_with_the_verifier_has_no_leaks_and_no_hangs(pytester, layers):
    (pytester.path / "schema.sql").write_text(SCHEMA)
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "items.sql").write_text(
        "INSERT INTO items (id, name) VALUES ({{ id('items', 'one') }}, 'one');\n"
        "INSERT INTO kinds VALUES ('c');\n")
    source, failing = generate(marks=layers)
    pytester.makepyfile(test_torture=source)
    result = pytester.runpytest_subprocess(
        "-p", "randomly", "--randomly-seed=4", "--sqlfix-verify", "-q",
        *(["--sqlfix-layers"] if layers else []), timeout=240)
    result.assert_outcomes(passed=TESTS - failing, failed=failing)
    assert failing > 20
    assert "sqlfix --sqlfix-verify: " not in result.stdout.str()
