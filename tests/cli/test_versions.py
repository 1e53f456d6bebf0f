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
NEWER = {
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
    "json-object": ("JSON_OBJECT", 16, """\
UPDATE users SET full_name = JSON_OBJECT('name': 'Alice')::text
WHERE id = {{ id('users', 'alice') }};
"""),
    # An older scanner reads `1_000` as 1 and then the name _000: here a syntax error.
    "literal": ("the numeric literal 1_000", 16, """\
INSERT INTO users (id, full_name) VALUES ({{ id('users', 'alice') }} + 1_000, 'Bob');
"""),
    "json-value": ("JSON_QUERY, JSON_VALUE or JSON_EXISTS", 17, """\
UPDATE users SET full_name = JSON_VALUE('{"n": "Alice Merged"}', '$.n')
WHERE id = {{ id('users', 'alice') }};
"""),
    "returning-old": ("RETURNING WITH (OLD/NEW AS ...)", 18, """\
UPDATE users SET full_name = 'Alice Merged' WHERE id = {{ id('users', 'alice') }}
RETURNING WITH (OLD AS before) before.full_name;
"""),
}


@pytest.mark.parametrize("kind", list(NEWER))
def test_newer_syntax_loads_where_the_server_has_it_and_an_older_one_says_which_major_it_needs(
    fresh_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], kind: str,
) -> None:
    what, major, statement = NEWER[kind]
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
        assert "OK    merge.sql" in out and "users +" in out
    else:
        assert code == 1, out
        assert (f"SQLF701 server rejected the statement: {what} needs PostgreSQL {major} or "
                f"later and this server is {version // 10000}") in out
        assert f'server_version = "{major}"' in out and "SQLFIX_PG_BINDIR" in out
        # a syntax error, or (JSON_VALUE read as a call) a function the server lacks
        assert ("42883" if kind == "json-value" else "42601") in out
