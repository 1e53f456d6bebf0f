"""COPY ... FROM stdin blocks in rendered fixture SQL: pg_dump's data format.

A block is a `COPY table (cols) FROM stdin;` statement, then rows (tab-separated
text format, or whatever its options say) up to a line holding only `\\.`. The
rows are data, not SQL: the guard must not read them (an apostrophe in a row
would open a string for it), so `find` cuts the blocks out and `blank` gives the
guard the text with each block replaced by spaces (newlines kept, so offsets,
lines and columns stay exact). The loader sends each block with psycopg's COPY
support. Any other COPY (to or from a file, a program or stdout) is left in the
text, where the guard refuses it (SQLF104 for a file or program, SQLF103 else).

Pure: text in, blocks and violations out. Offsets are 0-based into the text given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat

import pglast.parser as pg
from pglast import ast

from sqlfix.compiler import guard, pgdump
from sqlfix.errors import Severity

COPY_DATA = "SQLF405"
RULE = ("copy-data", "COPY ... FROM stdin rows that cannot load: no `\\.` end, wrong field "
        "count, a {{ }} value inside the rows, or a statement after COPY on its line")

_CANDIDATE = re.compile(r"^[ \t]*(COPY)\b", re.IGNORECASE | re.MULTILINE)
# Up to the first ';' outside quotes: a COPY statement has no strings but file names.
_STATEMENT = re.compile(r"""COPY\b(?:[^;"']|"[^"]*"|'[^']*')*;""", re.IGNORECASE)
_NAME = r'(?:"(?:[^"]|"")*"|[A-Za-z_\x80-\uffff][\w$\x80-\uffff]*)'
_PARTS = re.compile(
    rf"""COPY\s+(?P<table>{_NAME}(?:\s*\.\s*{_NAME})?)\s*
    (?:\((?P<cols>[^)]*)\))?\s*
    (?P<dir>FROM|TO)\s+(?P<src>PROGRAM\b|STDIN\b|STDOUT\b|'[^']*'|\S+)
    (?P<rest>.*);\Z""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
_END = re.compile(r"^\\\.[ \t]*\r?$", re.MULTILINE)
_SEMI, _COMMENTS = "ASCII_59", frozenset({"C_COMMENT", "SQL_COMMENT"})
# Rows not split by tabs: CSV, binary, or text with a DELIMITER of its own
_NOT_TAB_SEPARATED = re.compile(r"\b(?:(?:FORMAT\s+)?(?:CSV|BINARY)|DELIMITER)\b", re.IGNORECASE)


@dataclass(frozen=True)
class CopyBlock:
    """One COPY ... FROM stdin statement with its rows."""

    start: int  # offset of COPY
    statement: str  # "COPY t (a, b) FROM stdin;" as written, without the ';'
    data_start: int  # first character of the first row
    data_end: int  # end of the last row's newline: where `\.` starts (or the text's end)
    end: int  # after the `\.` line and its newline
    table: str
    columns: tuple[str, ...]  # the column list's names, unquoted; empty if there is none
    text_format: bool  # the default text format with its tab delimiter: fields split by tabs

    def data(self, sql: str) -> str:
        return sql[self.data_start : self.data_end]


@dataclass(frozen=True)
class Found:
    blocks: tuple[CopyBlock, ...]
    violations: tuple[guard.Violation, ...]
    # (start, end) of each psql `\restrict KEY` / `\unrestrict KEY` line outside the
    # blocks (pgdump.META): no-ops if they lie between statements, which the caller checks
    metas: tuple[tuple[int, int], ...] = ()


def may_hold_copy(sql: str) -> bool:
    """Cheap test: could `sql` have a COPY statement or a psql \\restrict line at a line start?"""
    return _CANDIDATE.search(sql) is not None or pgdump.may_hold_meta(sql)


def find(sql: str, expressions: Sequence[tuple[int, int]] = ()) -> Found:
    """The COPY blocks of `sql`, and what is wrong with them (one violation per block).

    `expressions` are the (start, end) offsets of `{{ }}` output: inside rows they
    would be SQL literals ('x', with quotes) in a format that is not SQL.
    """
    blocks: list[CopyBlock] = []
    found: list[guard.Violation] = []
    pos = 0
    match = _CANDIDATE.search(sql)
    while match is not None:
        start, after = match.start(1), match.end()
        statement = _STATEMENT.match(sql, start) if _at_statement_start(sql, pos, start) else None
        parts = _PARTS.match(statement.group()) if statement is not None else None
        # no ';' (the guard reports the unterminated statement), or no rows follow (the
        # guard classifies and refuses the statement): not a block
        if (statement is not None and parts is not None and parts["dir"].upper() == "FROM"
                and parts["src"].upper() == "STDIN"):
            block, problem = _block(sql, start, statement.end(), parts, expressions)
            blocks.append(block)
            if problem is not None:
                found.append(problem)
            pos = after = block.end
        match = _CANDIDATE.search(sql, after)  # from after the rows: they are not read
    return Found(tuple(blocks), tuple(found), _metas(sql, blocks))


def _metas(sql: str, blocks: Sequence[CopyBlock]) -> tuple[tuple[int, int], ...]:
    """The \\restrict / \\unrestrict lines outside COPY blocks (rows are data)."""
    if not pgdump.may_hold_meta(sql):
        return ()
    gaps = zip([0, *(b.end for b in blocks)], [*(b.start for b in blocks), len(sql)], strict=True)
    return tuple(m.span() for start, end in gaps for m in pgdump.META.finditer(sql, start, end))


def guard_scan(sql: str, found: Found) -> tuple[guard.GuardResult, str, int]:
    """The guard's verdict on `sql` outside `found`'s blocks and psql lines, and the text it read.

    A \\restrict line that turns out to lie inside a statement (in a string, a comment
    or mid-statement) is not psql's: it is read again as part of the text. Returns
    (result, text read, number of psql lines left out).
    """
    blocks = [(b.start, b.end) for b in found.blocks]
    metas = list(found.metas)
    text = blank(sql, blocks + metas) if blocks or metas else sql
    result = guard.scan(text)
    misread = pgdump.within_statements(metas, result.statements)
    if misread:
        metas = [m for m in metas if m not in misread]
        text = blank(sql, blocks + metas) if blocks or metas else sql
        result = guard.scan(text)
    return result, text, len(metas)


def blank(sql: str, spans: Iterable[tuple[int, int]]) -> str:
    """`sql` with each (start, end) span replaced by spaces, newlines kept."""
    out, pos = [], 0
    for start, end in sorted(spans):
        out.append(sql[pos:start])
        out.append("\n".join(map(" ".__mul__, map(len, sql[start:end].split("\n")))))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def _at_statement_start(sql: str, pos: int, start: int) -> bool:
    """`COPY` at `start` is a keyword token that begins a statement.

    PostgreSQL's own scanner reads sql[pos:] up to it: a COPY inside a string,
    quoted identifier or comment is no token, and one after an unfinished
    statement follows a token other than `;`.
    """
    text = sql[pos : start + 4]
    if "\\" in text:  # a \restrict line before it is no token (see pgdump.META)
        text = pgdump.META.sub(lambda m: " " * len(m.group()), text)
    try:
        tokens = pg.scan(text)
    except pg.ParseError:
        return False  # a literal or comment left open before it
    code = [t for t in tokens if t.name not in _COMMENTS]
    if not code or code[-1].name != "COPY" or code[-1].start != start - pos:
        return False
    return len(code) == 1 or code[-2].name == _SEMI


def _block(
    sql: str, start: int, statement_end: int, parts: re.Match[str],
    expressions: Sequence[tuple[int, int]],
) -> tuple[CopyBlock, guard.Violation | None]:
    newline = sql.find("\n", statement_end)
    data_start = len(sql) if newline < 0 else newline + 1
    end_mark = _end_mark(sql, data_start)
    data_end = len(sql) if end_mark is None else end_mark[0]
    end = len(sql) if end_mark is None else min(len(sql), end_mark[1] + 1)
    columns, text_format = _columns_and_format(sql[start:statement_end], parts)
    block = CopyBlock(
        start, sql[start:statement_end - 1], data_start, data_end, end,
        re.sub(r"\s+", "", parts["table"]), columns, text_format)
    if end_mark is None:
        return block, _violation(start, "its rows have no end: add a line holding only `\\.` "
                                 "after the last row")
    trailing = _after_statement(sql, statement_end, data_start)
    if trailing is not None:
        # psql runs it after the rows; cut out with them, it would never run here
        return block, _violation(
            trailing, "a statement after COPY ... FROM stdin; on the same line: psql runs "
            "it after the rows, which start on the next line; move it to a line of its own "
            "after `\\.`")
    inside = next((s for s, _e in expressions if data_start <= s < data_end), None)
    if inside is not None:
        return block, _violation(
            inside, "a {{ }} value inside COPY rows would be written as an SQL literal (with "
            "quotes) into data that is not SQL; write these rows as INSERT statements, or "
            "the value as plain text")
    return block, _field_count(sql, block)


def _columns_and_format(statement: str, parts: re.Match[str]) -> tuple[tuple[str, ...], bool]:
    """The column list (names as PostgreSQL reads them: `"a,b"` is one column, `a,b`)
    and whether the rows are the text format split by tabs, from PostgreSQL's parser;
    a statement it refuses (the load reports it) is read by the regular expression."""
    try:
        stmt = pg.parse_sql(statement)[0].stmt
    except pg.ParseError:
        stmt = None
    if not isinstance(stmt, ast.CopyStmt):
        return (tuple(c.strip() for c in (parts["cols"] or "").split(",") if c.strip()),
                not _NOT_TAB_SEPARATED.search(parts["rest"]))
    options = {o.defname: getattr(o.arg, "sval", None) for o in stmt.options or ()}
    text_format = ((options.get("format") or "text").lower() == "text"
                   and options.get("delimiter", "\t") == "\t")
    return tuple(a.sval for a in stmt.attlist or ()), text_format


def _after_statement(sql: str, statement_end: int, data_start: int) -> int | None:
    """The offset of SQL after the COPY statement's ';' on its line (comments are fine)."""
    rest = sql[statement_end:data_start]
    if not rest.strip():
        return None
    try:
        tokens = pg.scan(rest)
    except pg.ParseError:  # a comment or string left open: not blank either
        return statement_end + len(rest) - len(rest.lstrip())
    code = next((t for t in tokens if t.name not in _COMMENTS), None)
    # scan's offsets are in bytes of UTF-8
    return None if code is None else statement_end + len(rest.encode()[:code.start].decode())


def _end_mark(sql: str, data_start: int) -> tuple[int, int] | None:
    """(start, end) of the first line holding only `\\.` from `data_start` on.

    str.find for the candidate lines: a MULTILINE regex would try every position of the rows.
    """
    at = data_start
    while True:
        if sql.startswith("\\.", at):
            match = _END.match(sql, at)
            if match is not None:
                return match.span()
        newline = sql.find("\n\\.", at)
        if newline < 0:
            return None
        at = newline + 1


def _field_count(sql: str, block: CopyBlock) -> guard.Violation | None:
    """The first row whose tab-separated field count differs from the column list."""
    if not block.columns or not block.text_format:
        return None
    wanted, offset = len(block.columns), block.data_start
    rows = block.data(sql).split("\n")
    tabs = list(map(str.count, rows, repeat("\t")))  # no Python code per row on this path
    right = tabs.count(wanted - 1) + (rows.count("") if wanted > 1 else 0)
    if right == len(rows):
        return None
    for row, count in zip(rows, tabs, strict=True):
        if row and count + 1 != wanted:
            return _violation(
                offset, f"COPY row has {count + 1} field(s) but the column list names {wanted}; "
                "fields are separated by one tab (a tab inside a value is written \\t)")
        offset += len(row) + 1
    return None


def _violation(offset: int, message: str) -> guard.Violation:
    return guard.Violation(offset, COPY_DATA, RULE[0], message, Severity.ERROR)
