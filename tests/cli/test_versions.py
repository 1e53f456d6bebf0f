"""Version-specific behaviour, as `check` reports it on whatever server the run uses.

CI runs this on PostgreSQL 14 to 18 (SQLFIX_PG_BINDIR per version): each branch asserts
what that version must do.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from sqlfix.cli.main import main

MERGE = """\
-- requires: users.sql
MERGE INTO users AS u
USING (VALUES ({{ id('users', 'alice') }}, 'Alice Merged')) AS v(id, full_name)
ON u.id = v.id
WHEN MATCHED THEN UPDATE SET full_name = v.full_name;
"""
USERS = """\
INSERT INTO users (id, full_name) VALUES ({{ id('users', 'alice') }}, 'Alice');
"""


def test_merge_loads_on_15_and_later_and_on_14_says_it_needs_15(
    fresh_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fx").mkdir()
    (tmp_path / "fx" / "schema.sql").write_text("CREATE TABLE users (id bigint PRIMARY KEY, full_name text);\n")
    (tmp_path / "fx" / "users.sql").write_text(USERS)
    (tmp_path / "fx" / "merge.sql").write_text(MERGE)
    (tmp_path / "pyproject.toml").write_text('[tool.sqlfix]\nfixtures_dir = "fx"\nschema = ["fx/schema.sql"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQLFIX_DSN", raising=False)
    with psycopg.connect(fresh_dsn) as conn:
        version = conn.info.server_version
    code = main(["check", "--dsn", fresh_dsn, "fx/merge.sql"])
    out = capsys.readouterr().out
    if version >= 150000:
        assert code == 0, out
        assert "OK    merge.sql" in out and "users +1" in out
    else:
        assert code == 1, out
        assert f"fx/merge.sql:2:1: SQLF701 server rejected the statement: MERGE needs PostgreSQL 15 or later and this server is {version // 10000}" in out
        assert 'server_version = "15"' in out and "42601" in out
