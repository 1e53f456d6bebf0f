"""Version-specific behaviour, as `check` reports it on whatever server the run uses.

CI runs this on PostgreSQL 14 to 18 (SQLFIX_PG_BINDIR per version): each branch asserts
what that version must do.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from sqlfix.cli.main import main

USERS = """\
INSERT INTO users (id, full_name) VALUES ({{ id('users', 'alice') }}, 'Alice');
"""
# (the words the error names, the major they need, the statement)
MERGES = {
    "plain": ("MERGE", 15, """\
MERGE INTO users AS u
USING (VALUES ({{ id('users', 'alice') }}, 'Alice Merged')) AS v(id, full_name)
ON u.id = v.id
WHEN MATCHED THEN UPDATE SET full_name = v.full_name;
"""),
    "with": ("MERGE", 15, """\
WITH v(id, full_name) AS (VALUES ({{ id('users', 'alice') }}, 'Alice Merged'))
MERGE INTO users AS u USING v ON u.id = v.id
WHEN MATCHED THEN UPDATE SET full_name = v.full_name;
"""),
    "returning": ("MERGE ... RETURNING", 17, """\
MERGE INTO users AS u
USING (VALUES ({{ id('users', 'alice') }}, 'Alice Merged')) AS v(id, full_name)
ON u.id = v.id
WHEN MATCHED THEN UPDATE SET full_name = v.full_name
RETURNING u.id;
"""),
    "by-source": ("MERGE ... WHEN NOT MATCHED BY SOURCE", 17, """\
MERGE INTO users AS u
USING (VALUES ({{ id('users', 'alice') }}, 'Alice Merged')) AS v(id, full_name)
ON u.id = v.id
WHEN MATCHED THEN UPDATE SET full_name = v.full_name
WHEN NOT MATCHED BY SOURCE THEN DO NOTHING;
"""),
}


@pytest.mark.parametrize("kind", list(MERGES))
def test_merge_loads_where_the_server_has_it_and_an_older_one_says_which_major_it_needs(
    fresh_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], kind: str,
) -> None:
    what, major, statement = MERGES[kind]
    (tmp_path / "fx").mkdir()
    (tmp_path / "fx" / "schema.sql").write_text("CREATE TABLE users (id bigint PRIMARY KEY, full_name text);\n")
    (tmp_path / "fx" / "users.sql").write_text(USERS)
    (tmp_path / "fx" / "merge.sql").write_text("-- requires: users.sql\n" + statement)
    (tmp_path / "pyproject.toml").write_text('[tool.sqlfix]\nfixtures_dir = "fx"\nschema = ["fx/schema.sql"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQLFIX_DSN", raising=False)
    with psycopg.connect(fresh_dsn) as conn:
        version = conn.info.server_version
    code = main(["check", "--dsn", fresh_dsn, "fx/merge.sql"])
    out = capsys.readouterr().out
    if version >= major * 10000:
        assert code == 0, out
        assert "OK    merge.sql" in out and "users +1" in out
    else:
        assert code == 1, out
        assert (f"SQLF701 server rejected the statement: {what} needs PostgreSQL {major} or "
                f"later and this server is {version // 10000}") in out
        assert f'server_version = "{major}"' in out and "SQLFIX_PG_BINDIR" in out
        assert "42601" in out
