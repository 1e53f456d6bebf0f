"""The guard's fast path for constants-only INSERTs says exactly what the tree path says.

`guard._plain_insert` approves pg_dump's `INSERT ... VALUES (constants);` from its text
(no JSON tree); everything else goes through the parse tree. Each case here is scanned
both ways (the fast path switched off by patching `_plain_insert`) and must give the
same statements and violations; Hypothesis mixes near-misses (E'', U&'', $$, comments,
calls, CURRENT_*, casts, missing ';') with plain rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlfix.compiler import guard
from sqlfix.compiler.guard import GuardResult, scan

DATA = Path(__file__).parent.parent / "data"


def both_ways(sql: str) -> tuple[GuardResult, GuardResult]:
    guard._scan.cache_clear()
    fast = scan(sql)
    saved = guard._plain_insert
    guard._plain_insert = lambda chunk, part: None  # type: ignore[assignment]
    try:
        guard._scan.cache_clear()
        slow = scan(sql)
    finally:
        guard._plain_insert = saved
        guard._scan.cache_clear()
    return fast, slow


PLAIN = [
    "INSERT INTO t VALUES (1, 'a');",
    "insert into public.item (id, sku) values (-1, 'it''s; -- not a comment /* */ $$');",
    'INSERT INTO "My Table" ("a b", c) VALUES (1.5e3, NULL), (.5, TRUE), (- 2, DEFAULT) ;',
    "INSERT INTO t OVERRIDING SYSTEM VALUE VALUES (1, 'x'::text, '{1,2}'::int8[]);",
    "INSERT INTO s.t (a) VALUES ('x') ON CONFLICT DO NOTHING;",
    "INSERT INTO t VALUES ('é ü \\ backslash is plain');",
]
NOT_PLAIN = [
    "INSERT INTO t VALUES (now());",
    "INSERT INTO t VALUES (CURRENT_DATE);",
    "INSERT INTO t VALUES (lo_export(1, '/tmp/x'));",
    "INSERT INTO t VALUES (E'\\'); DROP TABLE t; --');",
    "INSERT INTO t VALUES (U&'\\0041');",
    "INSERT INTO t VALUES ($$x$$);",
    "INSERT INTO t VALUES (1 /* c */);",
    "INSERT INTO t VALUES ('a'\n'b');",
    "INSERT INTO t VALUES (1) RETURNING id;",
    "INSERT INTO t SELECT pg_read_file('x');",
    "INSERT INTO t VALUES (1)",  # no ';'
    "INSERT INTO t VALUES ('x'::text(3));",
    "INSERT INTO t VALUES (0x1F);",
    "INSERT INTO t VALUES (1_000);",
    "INSERT INTO t VALUES ((SELECT set_config('a', 'b', false)));",
    "UPDATE t SET a = 1;",
    "SET standard_conforming_strings = off;",
    "CREATE TABLE x (a int);",
    "INSERT INTO t VALUES (1;",
    "INSERT INTO t VALUES ('unclosed);",
]


@pytest.mark.parametrize("sql", PLAIN + NOT_PLAIN)
def test_same_result_both_ways(sql: str) -> None:
    fast, slow = both_ways(sql)
    assert fast == slow


@pytest.mark.parametrize("sql", PLAIN)
def test_plain_inserts_take_the_fast_path(sql: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_tree(*args: object) -> None:
        raise AssertionError("the tree path ran for a constants-only INSERT")

    guard._scan.cache_clear()
    monkeypatch.setattr(guard, "_parse_tree", no_tree)
    result = scan("-- header\n" + sql + "\n" + sql + "\n")
    guard._scan.cache_clear()
    assert len(result.statements) == 2 and result.violations == ()
    assert {s.keyword for s in result.statements} == {"INSERT"}


@pytest.mark.parametrize("sql", NOT_PLAIN)
def test_everything_else_takes_the_tree_path(sql: str) -> None:
    # Between plain rows, the statement is still found and judged.
    text = f"{PLAIN[0]}\n{sql}\n{PLAIN[1]}\n"
    fast, slow = both_ways(text)
    assert fast == slow


def test_calls_between_plain_rows_are_still_refused() -> None:
    rows = "INSERT INTO t VALUES (1, 'a');\n" * 50
    result = scan(rows + "INSERT INTO t VALUES (2, pg_read_file('/etc/passwd'));\n" + rows)
    assert [v.code for v in result.violations] == ["SQLF104"]
    assert len(result.statements) == 101


@pytest.mark.parametrize("path", sorted(
    p for p in DATA.rglob("*.sql") if p.stat().st_size < 2_000_000), ids=lambda p: p.name)
def test_corpus_files_same_both_ways(path: Path) -> None:
    fast, slow = both_ways(path.read_text(encoding="utf-8", errors="replace"))
    assert fast == slow


FRAGMENTS = ["a", "é", " ", "\n", ";", "'", "''", '"', "\\", "$", "$$", "--", "/*", "*/",
             "E", "U&", "::", "now()", "current_date", "lo_", ")", "(", ",", "1", "-", "."]
content = st.lists(st.sampled_from(FRAGMENTS), max_size=6).map("".join)
name = st.sampled_from(["t", "public.t", '"T x"', 'a."b""c"', "values", "t$1", "_t"])
constant = st.one_of(
    content.map(lambda t: "'" + t.replace("'", "''") + "'"),
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NULL", "true", "FALSE", "DEFAULT", "'x'::text", "'{}'::jsonb",
                     "- 1", "1e5", ".5", "now()", "E'\\''", "$$x$$", "1 /* c */",
                     "CURRENT_TIMESTAMP", "lo_import('x')", "'a'\n'b'", "0x10"]),
    content,  # anything, mostly a syntax error
)
row = st.lists(constant, min_size=1, max_size=4).map(lambda c: "(" + ", ".join(c) + ")")


@st.composite
def insert(draw: st.DrawFn) -> str:
    columns = draw(st.one_of(st.just(""), st.lists(name, min_size=1, max_size=3).map(
        lambda n: " (" + ", ".join(n) + ")")))
    rows = ", ".join(draw(st.lists(row, min_size=1, max_size=3)))
    tail = draw(st.sampled_from([";", " ;", "", " ON CONFLICT DO NOTHING;", "\n;"]))
    overriding = draw(st.sampled_from(["", " OVERRIDING SYSTEM VALUE"]))
    return f"INSERT INTO {draw(name)}{columns}{overriding} VALUES {rows}{tail}"


piece = st.one_of(insert(), insert(), st.sampled_from(
    ["-- c\n", "/* c; */", "UPDATE t SET a = 1;", "SELECT now();", "SET x = 1;", ";", "\n"]),
    content)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(piece, min_size=1, max_size=6).map("\n".join))
def test_generated_fixtures_same_both_ways(sql: str) -> None:
    fast, slow = both_ways(sql)
    assert fast == slow
