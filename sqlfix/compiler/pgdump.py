"""pg_dump's own lines in a data dump used as a fixture: recognised exactly, then left out.

A `pg_dump --data-only` file (COPY or `--inserts` form) opens with session settings
and psql's `\\restrict KEY` line, and ends with `setval()` calls and `\\unrestrict KEY`.
The guard refuses SET and set_config() in fixtures: a fixture runs inside the test's
transaction, and a session setting would outlive the test (SET LOCAL would still
reach the test's own statements, which run in the same transaction). So the preamble
pg_dump writes is matched statement by statement against the exact text pg_dump
emits, and each line it recognises is left out of the load, for a reason that holds
inside sqlfix:

- `statement_timeout`, `lock_timeout`, `idle_in_transaction_session_timeout`,
  `transaction_timeout` = 0: sqlfix's own load timeouts stand (a hung load still fails).
- `client_encoding = 'UTF8'`, `standard_conforming_strings = on`: sqlfix always loads
  with these (loader.py sets them for every load; the file is read as UTF-8).
- `set_config('search_path', '', false)`: the dump names every table with its schema;
  the test keeps its search_path.
- `check_function_bodies = false`: it only affects CREATE FUNCTION, which a fixture
  cannot hold. `client_min_messages = warning`: notices only.
- `xmloption = content`, `row_security = off`: PostgreSQL's defaults (content) or
  stricter than needed (off turns a row-level-security filter into an error; RLS on
  an INSERT fails loudly either way).

Anything else (another value, another setting, `SET LOCAL`, `set_config(..., true)` of
another setting, lower-case `set`) is not pg_dump's form and stays refused by the guard
with its usual message. `SELECT pg_catalog.setval(...)` needs nothing here: the guard
allows it, and the boundary puts every sequence back after each test.

`\\restrict` / `\\unrestrict` (pg_dump 17.6, 16.10, 15.14, ... and later) are psql
meta-commands: a whole line `\\restrict KEY` at the top level (between statements, never
inside COPY rows, a string or a statement) is a no-op; copy_blocks finds them, and the
library blanks them (spaces, so offsets, lines and columns stay exact).

A file that starts with pg_dump's header (`-- PostgreSQL database dump`) is read as
plain SQL, not as a template: a dump's rows may hold `{{`, which is data.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence

from sqlfix.compiler.guard import Statement

# psql's \restrict / \unrestrict line as pg_dump writes it: the key is alphanumeric
# (pg_dump refuses any other --restrict-key).
META = re.compile(r"^\\(?:un)?restrict[ \t]+[A-Za-z0-9]+[ \t]*(?=\r?$)", re.MULTILINE)

# The statements of pg_dump's preamble (pg_dump.c, setup_connection / _doSetFixedOutputState),
# byte for byte, that sqlfix leaves out of a load (see the module docstring for why).
PREAMBLE = frozenset(
    {
        "SET statement_timeout = 0;",
        "SET lock_timeout = 0;",
        "SET idle_in_transaction_session_timeout = 0;",
        "SET transaction_timeout = 0;",
        "SET client_encoding = 'UTF8';",
        "SET standard_conforming_strings = on;",
        "SELECT pg_catalog.set_config('search_path', '', false);",
        "SET check_function_bodies = false;",
        "SET xmloption = content;",
        "SET client_min_messages = warning;",
        "SET row_security = off;",
    }
)
_HEADER = re.compile(r"\A\ufeff?--\r?\n-- PostgreSQL database dump\r?\n")


def is_dump(source: str) -> bool:
    """`source` starts with pg_dump's header comment: plain SQL, not a template."""
    return _HEADER.match(source) is not None


def may_hold_meta(sql: str) -> bool:
    # str searches first: a MULTILINE regex would try every line of a large dump
    return "restrict" in sql and "\\" in sql and META.search(sql) is not None


def is_preamble(statement: Statement) -> bool:
    """The statement is one of pg_dump's preamble lines, exactly as pg_dump writes it."""
    return statement.keyword in ("SET", "SELECT") and statement.text in PREAMBLE


def split_preamble(
    statements: Sequence[Statement],
) -> tuple[tuple[Statement, ...], list[tuple[int, int]]]:
    """(statements to load, sorted (start, end) spans of the preamble statements left out)."""
    spans = [(s.offset, s.offset + len(s.text)) for s in statements if is_preamble(s)]
    if not spans:
        return tuple(statements), []
    return tuple(s for s in statements if not is_preamble(s)), spans


def inside(spans: Sequence[tuple[int, int]], offset: int) -> bool:
    """`offset` lies in one of the sorted, disjoint (start, end) `spans`."""
    i = bisect_right([s for s, _ in spans], offset) - 1
    return i >= 0 and offset < spans[i][1]


def within_statements(metas: Iterable[tuple[int, int]],
                      statements: Sequence[Statement]) -> list[tuple[int, int]]:
    """The meta lines that lie inside a statement (in a string, a comment or mid-statement).

    Those are not psql's: they must stay in the text the guard and the server read.
    """
    spans = [(s.offset, s.offset + len(s.text)) for s in statements]
    return [m for m in metas if inside(spans, m[0])]
