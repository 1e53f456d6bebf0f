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
    ("INSERT INTO t VALUES (1_000)", (160000, "the numeric literal 1_000")),
    ("INSERT INTO t VALUES (0X1F)", (160000, "the numeric literal 0X1F")),
    ("INSERT INTO t VALUES (0o17), (0b101)", (160000, "the numeric literal 0o17")),
    ("INSERT INTO t VALUES (1.5e3, 10, 'a_1', x_1, 0.5)", None),  # plain numbers, a name, a string
    ("INSERT INTO t SELECT JSON_OBJECT('a': 1)", (160000, "JSON_OBJECT")),
    ("INSERT INTO t SELECT JSON_ARRAY(1, 2)", (160000, "JSON_ARRAY")),
    ("INSERT INTO t SELECT JSON_ARRAYAGG(a) FROM s", (160000, "JSON_ARRAYAGG")),
    ("INSERT INTO t SELECT JSON_OBJECTAGG(k: v) FROM s", (160000, "JSON_OBJECTAGG")),
    ("INSERT INTO t SELECT JSON_VALUE('{}', '$.a')", (170000, "JSON_QUERY, JSON_VALUE or JSON_EXISTS")),
    ("INSERT INTO t SELECT JSON('{}')", (170000, "JSON()")),
    ("INSERT INTO t SELECT JSON_SCALAR(1)", (170000, "JSON_SCALAR")),
    ("INSERT INTO t SELECT JSON_SERIALIZE('{}')", (170000, "JSON_SERIALIZE")),
    ("UPDATE t SET a = 1 RETURNING WITH (OLD AS o) o.a", (180000, "RETURNING WITH (OLD/NEW AS ...)")),
    ("UPDATE t SET a = 1 RETURNING a", None),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SEARCH DEPTH FIRST BY n "
     "SET o INSERT INTO t SELECT n FROM r LIMIT 3", (140000, "SEARCH in a recursive WITH")),
    # the newest wins
    ("INSERT INTO t SELECT JSON_SCALAR(1_000)", (170000, "JSON_SCALAR")),
    ("INSERT INTO merge VALUES (1)", None),  # a table named merge
    ("UPDATE t SET note = 'MERGE INTO x' WHERE id = 1", None),
    ("MERGE INTO (", None),  # not parsed: the server's own message says what is wrong
    # inside VALUES rows (a tuple of tuples in the tree): the walk stopped a level short
    ("INSERT INTO t (id, j) VALUES (2, JSON_OBJECT('a': 1))", (160000, "JSON_OBJECT")),
    ("INSERT INTO t VALUES (2, ('{}' IS JSON)::text)", (160000, "IS JSON")),
    ("INSERT INTO t VALUES (1, 'a'), (2, JSON_VALUE('{}'::jsonb, '$.a'))",
     (170000, "JSON_QUERY, JSON_VALUE or JSON_EXISTS")),
    ("INSERT INTO t VALUES (JSON_ARRAY(1)), (JSON('1'))", (170000, "JSON()")),
    ("INSERT INTO t SELECT * FROM (VALUES (JSON_SERIALIZE('{}'))) v",
     (170000, "JSON_SERIALIZE")),
])
def test_the_major_a_statement_needs(text, needed):
    assert needed_version(text) == needed
