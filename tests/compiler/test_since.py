"""compiler.since: the major a statement's syntax needs, read by pglast."""

from __future__ import annotations

import pytest

from sqlfix.compiler.since import needed_version


@pytest.mark.parametrize(("text", "needed"), [
    ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", (150000, "MERGE")),
    ("merge into t using s on true when not matched then insert values (1)", (150000, "MERGE")),
    ("WITH s AS (SELECT 1 AS a) MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE",
     (150000, "MERGE")),
    ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE RETURNING *",
     (170000, "MERGE ... RETURNING")),
    ("MERGE INTO t USING s ON t.a = s.a WHEN NOT MATCHED BY SOURCE THEN DELETE",
     (170000, "MERGE ... WHEN NOT MATCHED BY SOURCE")),
    ("WITH m AS (MERGE INTO t USING s ON t.a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.a) "
     "RETURNING t.a) INSERT INTO s SELECT a FROM m", (170000, "MERGE ... RETURNING")),
    ("INSERT INTO t SELECT a FROM JSON_TABLE('[]'::jsonb, '$[*]' COLUMNS (a int PATH '$.a')) j",
     (170000, "JSON_TABLE")),
    ("INSERT INTO t SELECT 1 WHERE '1' IS JSON", (160000, "IS JSON")),
    ("INSERT INTO merge VALUES (1)", None),  # a table named merge
    ("UPDATE t SET note = 'MERGE INTO x' WHERE id = 1", None),
    ("MERGE INTO (", None),  # not parsed: the server's own message says what is wrong
])
def test_the_major_a_statement_needs(text, needed):
    assert needed_version(text) == needed
