"""`python -m sqlfix lint | render | check`, as a DBA runs them (check against real PostgreSQL)."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import DATA as TEST_DATA
from helpers import REPO, setup_command_that_waits, sqlfix_command, wait_for
from psycopg.conninfo import make_conninfo
from test_lint import validate_json_findings

from sqlfix.cli.main import main
from sqlfix.database.server import EmbeddedServer

DATA = TEST_DATA / "lint"
SHIPPED = REPO / "fixtures_sql"


def expected(folder: Path) -> list[str]:
    lines = (folder / "EXPECTED").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SQLFIX_DSN", "SQLFIX_SEED"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project (a pyproject.toml) as the working directory."""
    (tmp_path / "pyproject.toml").write_text("[tool.sqlfix]\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def broken(project: Path) -> Path:
    shutil.copytree(DATA / "broken", project / "fx")
    (project / "pyproject.toml").write_text('[tool.sqlfix]\nfixtures_dir = "fx"\n', encoding="utf-8")
    return project / "fx"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ lint


def test_lint_on_the_shipped_fixtures_is_clean(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    assert run(capsys, "lint") == (0, "All checks passed (4 fixtures).\n", "")


def test_lint_text_reports_each_broken_finding_once(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "lint")
    assert (code, err) == (1, "")
    *lines, summary = out.splitlines()
    found = [re.sub(r"^fx/(.*?): (SQLF\d+) .*", r"\1 \2", line) for line in lines]
    assert found == expected(broken)
    assert summary == "Found 19 findings (17 errors, 2 warnings) in 17 files."


def test_lint_json_is_valid_and_matches_the_text(broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lint", "--format", "json")
    data = json.loads(out)
    validate_json_findings(data)
    found = [
        f"{Path(d['filename']).name}:{d['location']['row']}:{d['location']['column']} {d['code']}"
        for d in data
    ]
    assert (code, found) == (1, expected(broken))


def test_lint_github_annotations(broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lint", "--format", "github")
    *lines, summary = out.splitlines()
    pattern = re.compile(r"::(error|warning) file=fx/(.*?),line=(\d+),col=(\d+),title=(SQLF\d+)::.+")
    found = []
    for line in lines:
        match = pattern.fullmatch(line)
        assert match, line
        found.append(f"{match[2]}:{match[3]}:{match[4]} {match[5]}")
        assert (match[1] == "warning") == (match[5] in {"SQLF403", "SQLF501"})
    assert (code, found) == (1, expected(broken))
    assert summary.startswith("Found 19 findings")


def test_lint_given_files_and_the_select_ignore_options(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "lint", "fx/transaction.sql", "fx/ddl.sql", "--ignore", "SQLF101")
    assert code == 1
    assert [line.split(": ")[1].split()[0] for line in out.splitlines()[:-1]] == ["SQLF102", "SQLF102"]
    assert run(capsys, "lint", "fx/ddl.sql", "--select", "SQLF5")[:2] == (0, "All checks passed (1 fixture).\n")


def test_lint_config_applies_and_the_option_replaces_it(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (broken.parent / "pyproject.toml").write_text(
        '[tool.sqlfix]\nfixtures_dir = "fx"\n[tool.sqlfix.lint]\nignore = ["SQLF1"]\n', encoding="utf-8"
    )
    assert run(capsys, "lint", "fx/ddl.sql")[0] == 0
    assert run(capsys, "lint", "fx/ddl.sql", "--ignore", "SQLF501")[0] == 1


def test_lint_with_tests_reports_unused_and_missing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "fixtures_sql").mkdir()
    (project / "fixtures_sql" / "used.sql").write_text("SELECT 1;\n", encoding="utf-8")
    (project / "fixtures_sql" / "unused.sql").write_text("SELECT 1;\n", encoding="utf-8")
    (project / "tests").mkdir()
    (project / "tests" / "test_x.py").write_text(
        'from sqlfix import uses\n\n@uses("used.sql", "usd.sql")\ndef test_x(): ...\n', encoding="utf-8"
    )
    code, out, _ = run(capsys, "lint", "--tests", "tests")
    assert code == 1
    assert out.splitlines()[:2] == [
        "fixtures_sql/unused.sql:1:1: SQLF601 fixture 'unused.sql' is not used: no test in tests "
        "names it in uses() and no fixture requires it; use it, or delete it if it is dead data",
        "tests/test_x.py:3:19: SQLF602 uses() names a missing fixture: fixture 'usd.sql' not found "
        f"in {project / 'fixtures_sql'}; did you mean 'used.sql', 'unused.sql'?; fix the name or "
        "add the file",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lint", "--select", "SQLF999"], "unknown rule code 'SQLF999'"),
        (["lint", "nowhere.sql"], "nowhere.sql: no such file or directory"),
        (["lint", "--tests", "nowhere"], "the tests directory nowhere does not exist"),
        # outside the working directory: as given, not ../../../nowhere
        (["lint", "--tests", "/nowhere/tests"], "the tests directory /nowhere/tests does not "),
        (["lint"], "the fixtures directory fixtures_sql does not exist; pass fixture files or "
                   "directories, or set fixtures_dir in [tool.sqlfix] or sqlfix_fixtures_dir"),
        (["lint", "--seed", "-1"], "seed must be a non-negative integer"),
        (["lint", "--format", "xml"], "invalid choice: 'xml'"),
        ([], "the following arguments are required: COMMAND"),
        (["render", "nope.sql"], "fixture 'nope.sql' not found"),
        (["render", ""], "the fixture name is empty: render takes a fixture name"),
        (["lint", "--fixtures", ""], "--fixtures: an empty path: give the fixtures folder"),  # "is a directory"
        # An existing file that is not SQL is refused unread (its first word is not echoed).
        (["render", "/etc/passwd"], "/etc/passwd is not a .sql file: render takes a fixture name"),
        (["render", "pyproject.toml"], "pyproject.toml is not a .sql file: render takes"),
        (["render", "fixtures_sql"], "fixtures_sql is a directory: render takes a fixture name"),
        (["render", "dangling.sql"], "dangling.sql: no such file (a symbolic link to a missing file)"),
        (["lint", "--fixtures", "pyproject.toml"],
         "the fixtures directory pyproject.toml is not a directory"),
        (["lint", "--fixtures", "/etc/passwd"], "the fixtures directory /etc/passwd is not a directory"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    if argv != ["lint"]:
        (project / "fixtures_sql").mkdir()
    (project / "dangling.sql").symlink_to(project / "nowhere.sql")
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert message in err


def test_an_internal_error_exits_2_with_its_traceback(
    broken: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("sqlfix.cli.main.lint", boom)
    code, _, err = run(capsys, "lint")
    assert code == 2
    assert "RuntimeError: boom" in err and "internal error" in err


@pytest.mark.parametrize("command", [[], ["lint"], ["render"], ["check"]])
def test_help_lists_options_with_examples(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert "examples:" in out and "python -m sqlfix" in out
    assert "--seed" in out or not command


# ------------------------------------------------------------------ render


def test_render_prints_the_fixture_and_its_requirements_in_load_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    code, out, err = run(capsys, "render", "orders.sql")
    assert (code, err) == (0, "")
    headers = [line for line in out.splitlines() if line.startswith("-- sqlfix:")]
    assert headers == [
        "-- sqlfix: users.sql (seed 0)",
        "-- sqlfix: products.sql (seed 0)",
        "-- sqlfix: orders.sql (seed 0)",
    ]
    assert "{{" not in out and "'alice@example.com'" in out
    assert run(capsys, "render", "fixtures_sql/orders.sql")[1] == out  # a path works too
    seven = run(capsys, "render", "orders.sql", "--seed", "7")[1]
    assert "(seed 7)" in seven and seven.replace("seed 7", "seed 0") != out


def test_render_of_a_broken_fixture_goes_to_stderr(broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "render", "loop_ddl.sql")
    assert (code, out) == (1, "")
    assert err.startswith("fx/loop_ddl.sql:6:5: SQLF101 ")


def test_render_warnings_go_to_stderr_and_the_sql_to_stdout(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "render", "nondeterministic.sql")
    assert code == 0
    assert out.startswith("-- sqlfix: nondeterministic.sql (seed 0)\nINSERT INTO orders")
    assert err.startswith("fx/nondeterministic.sql:2:9: SQLF501 ")


# ------------------------------------------------------------------ check


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer.start() as srv:
        yield srv


@pytest.fixture
def dsn(server: EmbeddedServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database of the test's own on the embedded server."""
    name = "cli_" + re.sub(r"\W", "_", request.node.name).lower()[:40] + "_test"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    yield make_conninfo(server.dsn, dbname=name)
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())


# Every table and sequence but the system's and the baseline copy the session start rewrites
# (as in a test run): sqlfix's schema record is counted. Plain count(*): the wheel's server
# has no libxml (query_to_xml).
TABLES = b"""
SELECT format('%I.%I', schemaname, tablename), schemaname || '.' || tablename FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema', '_sqlfix_baseline')
"""
SEQUENCES = b"""
SELECT 'sequence ' || schemaname || '.' || sequencename, coalesce(last_value::text, 'unused')
FROM pg_sequences
"""


def db_state(dsn: str) -> dict[str, str]:
    """Rows of every table and the position of every sequence."""
    with psycopg.connect(dsn) as conn:
        state = {
            name: str(conn.execute(f"SELECT count(*) FROM {quoted}".encode()).fetchone()[0])
            for quoted, name in conn.execute(TABLES).fetchall()
        }
        state.update(conn.execute(SEQUENCES).fetchall())
    return dict(sorted(state.items()))


def test_check_loads_every_shipped_fixture_and_commits_nothing(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    assert run(capsys, "check", "--dsn", dsn)[0] == 0  # applies the schema (as a test run does)
    with psycopg.connect(dsn) as conn:  # rows of our own, so "unchanged" is not just "empty"
        conn.execute(
            b"INSERT INTO users (id, email, full_name, created_at) VALUES (1, 'dba@example.com', 'D', now())"
        )
        conn.execute(b"SELECT nextval('order_items_id_seq')")
    before = db_state(dsn)
    assert (before["public.users"], before["public.orders"]) == ("1", "0")
    assert before["sequence public.order_items_id_seq"] == "1"

    code, out, err = run(capsys, "check", "--dsn", dsn)

    assert db_state(dsn) == before
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Loading 4 fixtures (seed 0) into DSN from option --dsn"
    assert [line.split()[:2] for line in lines[1:5]] == [
        ["OK", "inventory_audit.sql"],
        ["OK", "orders.sql"],
        ["OK", "products.sql"],
        ["OK", "users.sql"],
    ]
    assert re.search(r"orders\.sql +\d+\.\d ms  order_items \+3, orders \+2, products \+4, users \+4$", lines[2])
    assert lines[1].endswith("  products +4")  # inventory_audit.sql: its requirement's rows
    assert lines[-1] == "All 4 fixtures OK; every load was rolled back, nothing was committed."


def test_check_maps_server_errors_to_file_line_and_sqlstate(
    project: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(DATA / "server", project / "fx")
    shutil.copy(SHIPPED / "schema.sql", project / "schema.sql")
    (project / "pyproject.toml").write_text(
        '[tool.sqlfix]\nfixtures_dir = "fx"\nschema = ["schema.sql"]\n', encoding="utf-8"
    )
    code, out, _ = run(capsys, "check", "--dsn", dsn)
    assert code == 1
    found = []
    for line in out.splitlines():
        if line.startswith("OK "):
            found.append(f"{line.split()[1]} OK")
        elif match := re.match(r"  fx/(\S+): SQLF701 server rejected the statement: (\w{5}) ", line):
            found.append(f"{match[1]} {match[2]}")
    assert found == expected(DATA / "server")
    assert "    VALUES (4, 'dee@example.com', 'Dee', 'not a time');" in out  # the rendered statement
    assert out.splitlines()[-1] == "1 OK, 5 failed; every load was rolled back, nothing was committed."
    after = db_state(dsn)
    assert all(n in ("0", "unused") for k, n in after.items() if "public." in k), after


def test_check_stops_at_lint_errors_before_the_database(
    broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "check", "fx/ddl.sql", "--dsn", "host=/nonexistent dbname=never_test")
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "fx/ddl.sql:3:1: SQLF101 DDL statement (CREATE TABLE) in a fixture; fixtures hold data only: "
        "put schema changes in the schema files ([tool.sqlfix] schema) or your migrations",
        "Found 1 finding (1 error, 0 warnings) in 1 file. Fix the errors first: nothing was sent "
        "to the database.",
    ]


def test_check_reports_an_unreachable_database_with_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "fixtures_sql").mkdir()
    (project / "fixtures_sql" / "a.sql").write_text("SELECT 1;\n", encoding="utf-8")
    code, _, err = run(capsys, "check", "--dsn", "host=/nonexistent dbname=never_test")
    assert code == 2
    assert "cannot connect to the test database" in err


def test_check_leaves_the_test_file_rules_to_lint(
    project: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text('[tool.sqlfix.lint]\ntests = "tests"\n', encoding="utf-8")
    (project / "fixtures_sql").mkdir()
    (project / "fixtures_sql" / "a.sql").write_text("SELECT 1;\n", encoding="utf-8")
    (project / "tests").mkdir()
    (project / "tests" / "test_x.py").write_text('uses("nope.sql")\n', encoding="utf-8")
    assert run(capsys, "lint")[0] == 1  # SQLF601 for a.sql, SQLF602 for nope.sql
    code, out, _ = run(capsys, "check", "--dsn", dsn)
    assert code == 0
    assert re.fullmatch(r"OK    a\.sql +\d+\.\d ms  no rows changed", out.splitlines()[1])


def test_check_with_no_fixtures_starts_no_database(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "fixtures_sql").mkdir()
    code, out, _ = run(capsys, "check", "--dsn", "host=/nonexistent dbname=never_test")
    assert (code, out) == (0, "No fixtures to check.\n")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_check_shows_progress_on_a_terminal(
    dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["check", "--dsn", dsn, "fixtures_sql/users.sql", "fixtures_sql/orders.sql"]) == 0
    text = terminal.getvalue()
    assert "\r\x1b[K[1/2] orders.sql\r\x1b[KOK    orders.sql" in text
    assert "\r\x1b[K[2/2] users.sql\r\x1b[KOK    users.sql" in text


def test_python_m_sqlfix_check_runs_on_the_embedded_server() -> None:
    """The README's main job, as a fresh shell runs it: no DSN, sqlfix starts PostgreSQL
    (the one SQLFIX_PG_BINDIR names, so CI's version matrix covers it)."""
    keep = ("SQLFIX_PG_BINDIR", "SQLFIX_CACHE_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_") or k in keep}
    result = subprocess.run(
        [sys.executable, "-m", "sqlfix", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "into embedded PostgreSQL" in result.stdout
    assert result.stdout.count("\nOK ") == 4


def test_check_counts_each_row_once_in_inherited_and_partitioned_tables(
    project: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "schema.sql").write_text(
        "CREATE TABLE animal (id int, name text);\n"
        "CREATE TABLE dog (breed text) INHERITS (animal);\n"
        "CREATE TABLE payment (id int, paid_on date) PARTITION BY RANGE (paid_on);\n"
        "CREATE TABLE payment_2022 PARTITION OF payment FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');\n"
        "CREATE TABLE payment_2023 PARTITION OF payment FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');\n",
        encoding="utf-8")
    (project / "fx").mkdir()
    (project / "fx" / "rows.sql").write_text(
        "INSERT INTO animal VALUES (1, 'cat');\nINSERT INTO dog VALUES (2, 'rex', 'lab');\n"
        "INSERT INTO payment VALUES (1, '2022-05-01'), (2, '2022-06-01'), (3, '2023-05-01');\n",
        encoding="utf-8")
    (project / "pyproject.toml").write_text(
        '[tool.sqlfix]\nfixtures_dir = "fx"\nschema = ["schema.sql"]\n', encoding="utf-8")
    code, out, _ = run(capsys, "check", "--dsn", dsn)
    assert code == 0, out
    assert out.splitlines()[1].endswith("animal +1, dog +1, payment_2022 +2, payment_2023 +1")


def test_check_expect_error_passes_only_on_that_sqlstate(
    project: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(SHIPPED / "schema.sql", project / "schema.sql")
    fx = project / "fx"
    fx.mkdir()
    orphan = "INSERT INTO orders (user_id, status, placed_at) VALUES (-1, 'paid', {{ now }});\n"
    (fx / "orphan.sql").write_text("-- sqlfix: expect-error 23503\n-- no such user\n" + orphan)
    (fx / "wrong_state.sql").write_text("-- sqlfix: expect-error 23505\n" + orphan)
    (fx / "loads.sql").write_text(
        "-- sqlfix: expect-error 23503\nINSERT INTO products (sku, name, price_cents) VALUES ('a', 'b', 1);\n")
    (fx / "below.sql").write_text(  # not in the header: not read
        "INSERT INTO products (sku, name, price_cents) VALUES ('a', 'b', 1);\n-- sqlfix: expect-error 23503\n")
    (project / "pyproject.toml").write_text(
        '[tool.sqlfix]\nfixtures_dir = "fx"\nschema = ["schema.sql"]\n', encoding="utf-8")
    code, out, _ = run(capsys, "check", "--dsn", dsn)
    assert code == 1
    lines = out.splitlines()
    assert lines[1].startswith("OK    below.sql")
    assert lines[2] == "FAIL  loads.sql"
    assert "fx/loads.sql:1:1: SQLF702 the fixture loaded, but its header says `-- sqlfix: expect-error 23503`" in lines[3]
    assert re.match(r"OK    orphan\.sql +failed as expected: server rejected the statement: 23503 ", lines[4])
    assert lines[5] == "FAIL  wrong_state.sql"
    assert "23503" in lines[6] and "(expected SQLSTATE 23505 from this file)" in lines[6]
    assert lines[-1].startswith("2 OK, 2 failed")


def test_check_reports_what_a_fixture_does_to_its_session_as_fail_and_goes_on(
    project: Path, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The guard refuses pg_terminate_backend and pg_sleep by name (SQLF104): a schema's own
    # SECURITY DEFINER function and a long query are what can still reach the server.
    (project / "schema.sql").write_text(
        "CREATE TABLE t (id int PRIMARY KEY);\n"
        "CREATE FUNCTION bye() RETURNS boolean LANGUAGE sql SECURITY DEFINER\n"
        "  AS 'SELECT pg_terminate_backend(pg_backend_pid())';\n", encoding="utf-8")
    (project / "fx").mkdir()
    (project / "fx" / "a_ends_its_session.sql").write_text(
        "INSERT INTO t VALUES (1);\nSELECT bye();\n", encoding="utf-8")
    (project / "fx" / "b_sleeps.sql").write_text(
        "SELECT count(*) FROM generate_series(1, 10000000000);\n", encoding="utf-8")
    (project / "fx" / "c_fine.sql").write_text("INSERT INTO t VALUES (2);\n", encoding="utf-8")
    (project / "pyproject.toml").write_text(
        '[tool.sqlfix]\nfixtures_dir = "fx"\nschema = ["schema.sql"]\n'
        'load_statement_timeout = "200ms"\n', encoding="utf-8")
    code, out, err = run(capsys, "check", "--dsn", dsn)
    assert code == 1 and "internal error" not in err, err
    lines = out.splitlines()
    assert lines[1] == "FAIL  a_ends_its_session.sql"
    assert "connection" in lines[2], out  # the backend ended under the load: named, not a crash
    assert "FAIL  b_sleeps.sql" in lines
    assert "57014 canceling statement due to statement timeout" in out
    assert any(line.startswith("OK    c_fine.sql") and "t +1" in line for line in lines)
    assert lines[-1] == "1 OK, 2 failed; every load was rolled back, nothing was committed."


CRASH_SCHEMA = (
    "CREATE TABLE t (id int PRIMARY KEY);\n"
    # SIGKILL to the postmaster (its pid is the first line of postmaster.pid) and to this
    # backend ($PPID of the shell COPY ... TO PROGRAM starts): the server is gone
    "CREATE FUNCTION crash() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN\n"
    "  EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'kill -9 $(head -1 '\n"
    "    || current_setting('data_directory') || '/postmaster.pid) $PPID');\n"
    "END $$;\n")


@pytest.mark.slow
def test_check_says_the_embedded_server_died_under_a_load_and_goes_on(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "schema.sql").write_text(CRASH_SCHEMA, encoding="utf-8")
    (project / "fx").mkdir()
    (project / "fx" / "a_fine.sql").write_text("INSERT INTO t VALUES (1);\n", encoding="utf-8")
    (project / "fx" / "b_crashes.sql").write_text(
        "INSERT INTO t VALUES (2);\nSELECT crash();\nINSERT INTO t VALUES (3);\n",
        encoding="utf-8")
    (project / "fx" / "c_fine.sql").write_text("INSERT INTO t VALUES (4);\n", encoding="utf-8")
    (project / "pyproject.toml").write_text(
        '[tool.sqlfix]\nfixtures_dir = "fx"\nschema = ["schema.sql"]\n', encoding="utf-8")
    code, out, err = run(capsys, "check")
    assert code == 1 and "internal error" not in err and "Traceback" not in err, err
    lines = out.splitlines()
    assert lines[1].startswith("OK    a_fine.sql"), out
    assert lines[2] == "FAIL  b_crashes.sql", out
    # the server's death in its own words, with its log; not the fixture's fault alone
    assert "the embedded PostgreSQL was killed by SIGKILL" in out and "its log" in out, out
    assert "a fixture must not end its own session" not in out, out
    assert "sqlfix starts it again for the next fixture" in out, out
    assert any(line.startswith("OK    c_fine.sql") and "t +1" in line for line in lines), out
    assert lines[-1] == "2 OK, 1 failed; every load was rolled back, nothing was committed."


@pytest.mark.slow
def test_check_stops_cleanly_when_a_dsn_server_dies_under_a_load(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "schema.sql").write_text(CRASH_SCHEMA, encoding="utf-8")
    (project / "fx").mkdir()
    (project / "fx" / "a_crashes.sql").write_text("SELECT crash();\n", encoding="utf-8")
    (project / "fx" / "b_fine.sql").write_text("INSERT INTO t VALUES (4);\n", encoding="utf-8")
    (project / "fx" / "c_fine.sql").write_text("INSERT INTO t VALUES (5);\n", encoding="utf-8")
    (project / "pyproject.toml").write_text(
        '[tool.sqlfix]\nfixtures_dir = "fx"\nschema = ["schema.sql"]\n', encoding="utf-8")
    with EmbeddedServer.start() as server:  # a server of this test alone: it is killed
        code, out, err = run(capsys, "check", "--dsn", server.dsn)
    assert code == 1 and "internal error" not in err and "Traceback" not in err, err
    lines = out.splitlines()
    assert lines[1] == "FAIL  a_crashes.sql", out
    assert lines[3].startswith("STOP  the database cannot be reached any more: "), out
    assert lines[4].strip() == "2 fixtures were not checked", out
    assert lines[-1] == "0 OK, 3 failed; every load was rolled back, nothing was committed."


def test_ctrl_c_during_check_exits_130_and_leaves_no_server(tmp_path: Path) -> None:
    # Interrupted while the setup_command runs: the shell's 130, one line, no traceback,
    # and the embedded server it had started is stopped (not left to the watchdog).
    (tmp_path / "fixtures_sql").mkdir()
    (tmp_path / "fixtures_sql" / "one.sql").write_text("SELECT 1;\n")
    reached = setup_command_that_waits(tmp_path)
    with sqlfix_command(tmp_path, "check") as proc:
        wait_for(reached, proc)
        postmasters = subprocess.run(["pgrep", "-P", str(proc.pid), "postgres"],
                                     capture_output=True, text=True).stdout.split()
        assert len(postmasters) == 1
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "sqlfix check: interrupted" and "Traceback" not in err
    with pytest.raises(ProcessLookupError):
        os.kill(int(postmasters[0]), 0)


@pytest.mark.parametrize("command", ["lint", "render", "check"])
def test_a_fixture_file_name_with_a_newline_is_refused_not_printed(
    capsys: pytest.CaptureFixture[str], project: Path, command: str
) -> None:
    # render's `-- sqlfix: NAME` header made the rest of the name a line of SQL for psql
    (project / "fixtures_sql").mkdir()
    name = "x\nSELECT 666 AS injected; --.sql"
    (project / "fixtures_sql" / name).write_text("SELECT 1;\n")
    code, out, err = run(capsys, command, *([name] if command == "render" else []))
    assert code == 2 and "666" not in out, out
    assert err == (f"sqlfix {command}: fixture name {name!r} holds a control character ('\\n'); "
                   "rename the file without it\n")


def test_a_closed_standard_output_is_said_not_a_crash(project: Path) -> None:
    # `>&-`: Python's sys.stdout is None, and the report's write was an AttributeError
    done = subprocess.run(["bash", "-c", f"{shlex.quote(sys.executable)} -m sqlfix lint >&-"],
                          cwd=project, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (
        2, "sqlfix lint: standard output is closed; give the command an output (a file, a "
           "pipe, /dev/null)\n")


# Syntax each major's next one brought (sqlfix.compiler.since)
NEXT_MAJORS_SYNTAX = {
    "14": "MERGE INTO users u USING users v ON u.id = v.id WHEN MATCHED THEN DO NOTHING;\n",
    "15": "SELECT 1_000;\n",
    "16": "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (a int PATH '$'));\n",
    "17": "UPDATE users SET email = email RETURNING WITH (OLD AS o) o.email;\n",
}


def test_check_leaves_the_version_to_the_server_it_loads_into(
    capsys: pytest.CaptureFixture[str], project: Path, pg_server: EmbeddedServer, fresh_dsn: str
) -> None:
    # lint's SQLF407 reads server_version; check's server may be another major (a DSN's),
    # and says the same per fixture
    major = pg_server.binaries.version.split(".")[0]
    if major not in NEXT_MAJORS_SYNTAX:
        pytest.skip(f"no syntax newer than PostgreSQL {major} is known")
    (project / "pyproject.toml").write_text(f'[tool.sqlfix]\nserver_version = "{major}"\n')
    (project / "fixtures_sql").mkdir()
    (project / "fixtures_sql" / "newer.sql").write_text(NEXT_MAJORS_SYNTAX[major])
    code, out, _ = run(capsys, "check", "--dsn", fresh_dsn)
    assert code == 1 and "SQLF407" not in out, out
    assert f"needs PostgreSQL {int(major) + 1} or later and this server is {major}" in out, out
