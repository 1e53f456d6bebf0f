"""#8: hostile fixtures on the real server. Each is refused at file:line:col with its code,
`check` never ends in "internal error", and the database (and the server's disk) is unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import psycopg
import pytest

from sqlfix.cli.main import main
from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.guard import Statement
from sqlfix.compiler.library import FixtureLibrary, LoadPlan
from sqlfix.database.loader import load, send_one
from sqlfix.errors import LoadError

SCHEMA = "CREATE TABLE t (id int PRIMARY KEY, note text);\n"
# (id, fixture text, expected "line:col CODE" findings; {out} is a path on the server's disk)
HOSTILE: list[tuple[str, str, list[str]]] = [
    # --- item 1: settings that change how the server reads the text that follows
    ("scs-off-then-backslash",
     "SET LOCAL standard_conforming_strings = off;\nSELECT 'x\\''; DROP TABLE t; --';\n",
     ["1:1 SQLF103"]),
    ("scs-off-to-false",
     "INSERT INTO t VALUES (1, 'a');\nSET LOCAL STANDARD_CONFORMING_STRINGS TO false;\n"
     "INSERT INTO t VALUES (2, 'a\\'); DROP TABLE t; --');\n",
     ["2:1 SQLF103", "3:33 SQLF101"]),  # with standard strings the DROP is real: refused too
    ("scs-session", "SET standard_conforming_strings = off;\n", ["1:1 SQLF103"]),
    ("scs-set-config",
     "SELECT set_config('standard_conforming_strings', 'off', true);\n"
     "SELECT 'x\\''; DROP TABLE t; --';\n",
     ["1:8 SQLF104"]),
    ("scs-set-config-qualified",
     "SELECT 1 FROM pg_catalog.set_config('standard_conforming_strings', 'off', false);\n",
     ["1:15 SQLF104"]),
    ("client-encoding", "SET LOCAL client_encoding = 'SJIS';\nSELECT 1;\n", ["1:1 SQLF103"]),
    ("client-encoding-names", "SET LOCAL NAMES 'GBK';\n", ["1:1 SQLF103"]),
    ("backslash-quote", "SET LOCAL backslash_quote = on;\n", ["1:1 SQLF103"]),
    ("role", "SET LOCAL ROLE postgres;\n", ["1:1 SQLF103"]),
    ("session-authorization", "SET SESSION AUTHORIZATION DEFAULT;\n", ["1:1 SQLF103"]),
    ("reset-all", "RESET ALL;\n", ["1:1 SQLF103"]),
    # the backslash trick alone: one string to the guard as to the server, nothing hidden
    ("e-string-trick", "SELECT E'x\\''; DROP TABLE t; --';\n", ["1:16 SQLF101"]),
    # --- item 6: reach outside the database
    ("lo-export", "SELECT lo_export(lo_from_bytea(0, 'pwned'), '{out}');\n",
     ["1:8 SQLF104", "1:18 SQLF104"]),
    ("lo-export-qualified",
     "INSERT INTO t VALUES (1, 'x');\nSELECT pg_catalog.lo_export(16384, '{out}');\n",
     ["2:8 SQLF104"]),
    ("lo-import", "INSERT INTO t SELECT 1, lo_import('/etc/hostname')::text;\n", ["1:25 SQLF104"]),
    ("copy-to-file", "COPY (SELECT 'pwned') TO '{out}';\n", ["1:1 SQLF104"]),
    ("copy-program", "COPY t FROM PROGRAM 'touch {out}';\n", ["1:1 SQLF104"]),
    ("file-write-like", "SELECT pg_file_write('{out}', 'pwned', false);\n", ["1:8 SQLF104"]),
    ("read-file", "INSERT INTO t SELECT 1, pg_read_file('/etc/hostname');\n", ["1:25 SQLF104"]),
    ("ls-dir", "INSERT INTO t SELECT 1, f FROM pg_ls_dir('.') AS f;\n", ["1:32 SQLF104"]),
    ("terminate-backend", "SELECT pg_terminate_backend(pg_backend_pid());\n", ["1:8 SQLF104"]),
    ("terminate-in-cte",
     "WITH k AS (SELECT pg_terminate_backend(pid) FROM pg_stat_activity)\n"
     "INSERT INTO t SELECT 1, 'x' FROM k;\n",
     ["1:19 SQLF104"]),
    ("cancel-backend", "SELECT pg_cancel_backend(pg_backend_pid());\n", ["1:8 SQLF104"]),
    ("reload-conf", "SELECT pg_reload_conf();\n", ["1:8 SQLF104"]),
    ("advisory-lock", "SELECT pg_advisory_lock(42);\n", ["1:8 SQLF104"]),
    ("dblink", "SELECT dblink_exec('dbname=postgres', 'DROP TABLE t');\n", ["1:8 SQLF104"]),
    ("query-to-xml", "SELECT query_to_xml('DELETE FROM t', true, true, '');\n", ["1:8 SQLF104"]),
    ("do-block", "DO $$ BEGIN DROP TABLE t; END $$;\n", ["1:1 SQLF103"]),
]  # fmt: skip


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_dsn: str) -> Path:
    (tmp_path / "fx").mkdir()
    (tmp_path / "schema.sql").write_text(SCHEMA, encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sqlfix]\nfixtures_dir = "fx"\nschema = ["schema.sql"]\n', encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQLFIX_DSN", raising=False)
    (tmp_path / "fx" / "ok.sql").write_text("INSERT INTO t VALUES (7, 'ok');\n", encoding="utf-8")
    assert main(["check", "--dsn", fresh_dsn]) == 0  # applies the schema
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute(b"INSERT INTO t VALUES (1, 'sentinel')")
    (tmp_path / "fx" / "ok.sql").unlink()
    return tmp_path


def state(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(b"SELECT id, note FROM t ORDER BY id").fetchall()
        objects = conn.execute(b"SELECT count(*) FROM pg_largeobject_metadata").fetchall()
        return [*rows, *objects]


@pytest.mark.parametrize(("sql", "found"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_check_refuses_it_at_file_line_col_and_changes_nothing(
    project: Path, fresh_dsn: str, capsys: pytest.CaptureFixture[str], sql: str, found: list[str]
) -> None:
    out_file = project / "written-by-the-server"
    (project / "fx" / "hostile.sql").write_text(sql.format(out=out_file), encoding="utf-8")
    before = state(fresh_dsn)
    capsys.readouterr()

    code = main(["check", "--dsn", fresh_dsn])

    out, err = capsys.readouterr()
    assert code == 1
    assert "internal error" not in (out + err).lower()
    reported = re.findall(r"^fx/hostile\.sql:(\d+:\d+): (SQLF\d+) ", out, re.MULTILINE)
    assert [f"{pos} {c}" for pos, c in reported] == found, out
    assert state(fresh_dsn) == before
    assert not out_file.exists()


def test_the_server_refuses_two_commands_in_one_message(project: Path, fresh_dsn: str) -> None:
    """The loader's own path: a string holding two commands never runs either of them."""
    with psycopg.connect(fresh_dsn) as conn:
        with pytest.raises(psycopg.errors.SyntaxError, match="multiple commands"):
            send_one(conn, "INSERT INTO t VALUES (2, 'x'); DROP TABLE t;")
        conn.rollback()
        with pytest.raises(psycopg.errors.SyntaxError, match="multiple commands"), conn.pipeline():
            send_one(conn, "SELECT 1")
            send_one(conn, "SELECT 'a;b';\nDELETE FROM t;")
    assert state(fresh_dsn) == [(1, "sentinel"), (0,)]


def test_a_load_fails_closed_if_guard_and_server_disagree(project: Path, fresh_dsn: str) -> None:
    """Were the guard ever to approve text that holds two commands, the load refuses it whole."""
    (project / "fx" / "a.sql").write_text("INSERT INTO t VALUES (2, 'a');\n", encoding="utf-8")
    library = FixtureLibrary(FixtureDir(project / "fx"))
    fixture = library.compile("a.sql")
    smuggled = Statement("INSERT INTO t VALUES (3, 'b'); DELETE FROM t;", 0, "INSERT")
    plan = LoadPlan((dataclasses.replace(fixture, statements=(*fixture.statements, smuggled)),))
    with psycopg.connect(fresh_dsn) as conn:
        with pytest.raises(LoadError) as info:
            load(conn, plan)
        assert "multiple commands" in info.value.finding.message
        assert info.value.finding.path.endswith("a.sql")
        assert conn.execute(b"SELECT count(*) FROM t").fetchone() == (1,)  # usable, as it was
        load(conn, LoadPlan((fixture,)))  # and the connection still loads
        assert conn.execute(b"SELECT count(*) FROM t").fetchone() == (2,)
        conn.rollback()
    assert state(fresh_dsn) == [(1, "sentinel"), (0,)]
