"""Statement guard: a fixture holds data statements only.

`scan` splits rendered fixture SQL into statements and reports what a fixture
must not contain: schema changes, transaction control, any other non-data
statement, calls that reach outside the database, syntax errors, unclosed
literals, a missing final ';', an empty fixture, and nondeterministic values.
Offsets are 0-based character offsets into the text given to `scan`; the caller
maps them back to the source file.

The text is read by PostgreSQL's own parser (libpg_query through `pglast`), so
the guard and the server agree on where a string, a comment and a statement
end; each statement is classified from its parse tree by an allowlist of node
types. The loader then sends each approved statement as its own protocol
message, which the server refuses if it holds more than one command: if the two
ever disagreed, the load would fail instead of running a hidden statement.
sqlparse is not used; docs/lint.md ("How the guard reads SQL") says why.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from pglast import parser as pg

from sqlfix.errors import Severity


@dataclass(frozen=True)
class Statement:
    text: str  # as in the input, with its ';' if any; no leading whitespace or comments
    offset: int  # 0-based character offset of its first token
    keyword: str  # first keyword, upper-case ("INSERT", "WITH", "(" ...)


@dataclass(frozen=True)
class Violation:
    offset: int  # 0-based character offset of the statement or of the offending token
    code: str
    name: str
    message: str
    severity: Severity


@dataclass(frozen=True)
class GuardResult:
    statements: tuple[Statement, ...]
    violations: tuple[Violation, ...]


@dataclass(frozen=True)
class _Rule:
    code: str
    name: str
    summary: str
    severity: Severity
    message: str  # format string; fields {what} and {hint}


DDL, TRANSACTION, DISALLOWED, OUTSIDE = "SQLF101", "SQLF102", "SQLF103", "SQLF104"
UNTERMINATED, NO_SEMICOLON, EMPTY, SYNTAX = "SQLF401", "SQLF402", "SQLF403", "SQLF404"
NONDETERMINISTIC = "SQLF501"


def _words(text: str) -> list[str]:
    return text.split()


_DATA_ONLY = "INSERT, UPDATE, DELETE, MERGE, SELECT, VALUES, TABLE, WITH, SET LOCAL"

_RULE_TABLE = (
    _Rule(
        DDL,
        "ddl-statement",
        "schema change (CREATE, ALTER, DROP, TRUNCATE, GRANT, SELECT ... INTO, ...)",
        Severity.ERROR,
        "DDL statement ({what}) in a fixture; fixtures hold data only: put schema changes"
        " in the schema files ([tool.sqlfix] schema) or your migrations",
    ),
    _Rule(
        TRANSACTION,
        "transaction-control",
        "transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...)",
        Severity.ERROR,
        "transaction control ({what}) in a fixture; sqlfix owns the transaction (each test"
        " runs inside one that is rolled back): remove this statement",
    ),
    _Rule(
        DISALLOWED,
        "disallowed-statement",
        "a statement that is not a data statement (CALL, DO, COPY, SET, psql \\i, ...)",
        Severity.ERROR,
        "{what} in a fixture; fixtures hold data statements only (" + _DATA_ONLY + "): {hint}",
    ),
    _Rule(
        OUTSIDE,
        "outside-reach",
        "a call that reaches outside the test's transaction (lo_export, pg_read_file, dblink,"
        " pg_terminate_backend, set_config, COPY ... PROGRAM, ...)",
        Severity.ERROR,
        "{what} reaches outside the test's transaction ({hint}); a fixture may only change"
        " rows: remove it",
    ),
    _Rule(
        UNTERMINATED,
        "unterminated-literal",
        "a string, quoted identifier, dollar quote or block comment is never closed",
        Severity.ERROR,
        "unterminated {what}: it runs to the end of the fixture; close it",
    ),
    _Rule(
        NO_SEMICOLON,
        "missing-semicolon",
        "a statement is not terminated by ';'",
        Severity.ERROR,
        "statement is not terminated by ';'; {hint}: sqlfix concatenates fixtures,"
        " so it would run into the next file",
    ),
    _Rule(
        EMPTY,
        "empty-fixture",
        "the fixture holds no statement",
        Severity.WARNING,
        "fixture holds no statement (only whitespace or comments); add data or delete it",
    ),
    _Rule(
        SYNTAX,
        "syntax-error",
        "PostgreSQL's parser rejects the statement (found without a database)",
        Severity.ERROR,
        "{what} (PostgreSQL's parser); {hint}",
    ),
    _Rule(
        NONDETERMINISTIC,
        "nondeterministic-function",
        "now(), random(), gen_random_uuid(), CURRENT_TIMESTAMP, ... in a fixture",
        Severity.WARNING,
        "nondeterministic {what} in a fixture; rows would differ between runs: use the"
        " template's `{hint}` value instead",
    ),
)
_BY_CODE = {rule.code: rule for rule in _RULE_TABLE}
RULES: dict[str, tuple[str, str]] = {r.code: (r.name, r.summary) for r in _RULE_TABLE}
SEVERITY: dict[str, Severity] = {r.code: r.severity for r in _RULE_TABLE}

# Parse-tree node types of the statements a fixture may hold (SELECT ... INTO and
# SET/SET LOCAL are looked at more closely).
_DATA_NODES = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "SelectStmt"})
_DDL_NODES = frozenset(
    {
        "TruncateStmt", "GrantStmt", "GrantRoleStmt", "CommentStmt", "SecLabelStmt",
        "ReindexStmt", "ClusterStmt", "RefreshMatViewStmt", "ImportForeignSchemaStmt",
        "RenameStmt", "DefineStmt", "IndexStmt", "ViewStmt", "RuleStmt", "CompositeTypeStmt",
        "ReassignOwnedStmt", "CreatedbStmt", "DropdbStmt", "DropOwnedStmt", "DropRoleStmt",
    }
)  # fmt: skip
_DDL_PREFIXES = ("Create", "Alter", "Drop")
# SET LOCAL may change these settings only. Never the ones that change how the server
# reads text (standard_conforming_strings, client_encoding, backslash_quote, ...) or who
# the session is (role, session_authorization), nor the timeouts sqlfix sets itself.
SET_LOCAL_ALLOWED = frozenset(
    {
        "search_path", "timezone", "datestyle", "intervalstyle", "extra_float_digits",
        "default_text_search_config", "session_replication_role", "row_security",
        "constraint_exclusion", "work_mem", "lc_monetary", "lc_numeric", "lc_time",
    }
)  # fmt: skip
# Custom settings ("app.tenant_id", read back with current_setting) are allowed too.
_CUSTOM_SETTING = re.compile(r"[a-z_][a-z0-9_$]*\.[a-z0-9_$.]+")
_HINTS = {
    "SET": "use SET LOCAL (or SET CONSTRAINTS), which end with the test's transaction",
    "RESET": "use SET LOCAL (or SET CONSTRAINTS), which end with the test's transaction",
    "COPY": "write the rows as INSERT statements, or as COPY ... FROM stdin; then the rows "
    "and a line `\\.` (pg_dump's format)",
    "CALL": "write the data statements themselves",
    "DO": "write the data statements themselves",
    "\\": "sqlfix sends SQL to the server, not to psql: put the SQL itself in the fixture",
}
# A DDL or transaction statement is described by its first word and the words after it
# while they are in _HEAD_WORDS, up to one in _HEAD_END: "CREATE OR REPLACE FUNCTION".
_HEAD_END = frozenset(
    _words(
        """TABLE VIEW INDEX SEQUENCE FUNCTION PROCEDURE ROUTINE SCHEMA TYPE DOMAIN EXTENSION
    TRIGGER ROLE USER GROUP DATABASE POLICY RULE AGGREGATE CAST COLLATION CONVERSION SERVER
    WRAPPER PUBLICATION SUBSCRIPTION STATISTICS TABLESPACE LANGUAGE METHOD CONFIGURATION
    DICTIONARY PARSER TEMPLATE TRANSFORM PRIVILEGES COLUMN CONSTRAINT TRANSACTION WORK
    PREPARED SAVEPOINT"""
    )
)
_HEAD_WORDS = _HEAD_END | frozenset(
    _words(
        """OR REPLACE TEMP TEMPORARY UNLOGGED UNIQUE MATERIALIZED FOREIGN DATA ACCESS EVENT TEXT
    SEARCH DEFAULT OPERATOR LABEL ON OWNED TO"""
    )
)
# Nondeterministic values -> the template value to use instead.
_NONDET_CALLS = {
    **dict.fromkeys(
        ("now", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday"),
        "now",
    ),
    **dict.fromkeys(("random", "random_normal", "setseed"), "rng"),
    **dict.fromkeys(("gen_random_uuid", "uuid_generate_v4", "uuidv4", "uuidv7"), "fake"),
}
_NONDET_VALUES = frozenset(
    f"SVFOP_{name}{n}"
    for name in ("CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "LOCALTIME", "LOCALTIMESTAMP")
    for n in ("", "_N")
)
# Functions with effects outside the test's transaction, by what they reach. Matched on
# the last part of the name, so pg_catalog.lo_export and "lo_export" are caught alike.
_FILES = "the server's files"
_SESSIONS = "other sessions or the server"
_OUTSIDE_CALLS: dict[str, str] = {
    **dict.fromkeys(
        ("pg_read_file", "pg_read_binary_file", "pg_stat_file", "pg_logdir_ls",
         "pg_current_logfile"),
        _FILES,
    ),
    **dict.fromkeys(
        ("pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
         "pg_logfile_rotate", "pg_promote", "pg_switch_wal", "pg_create_restore_point",
         "pg_backup_start", "pg_backup_stop", "pg_start_backup", "pg_stop_backup",
         "pg_log_backend_memory_contexts", "pg_notify", "pg_import_system_collations",
         "pg_wal_replay_pause", "pg_wal_replay_resume", "pg_signal_backend"),
        _SESSIONS,
    ),
    "set_config": "settings beyond the statement; use SET LOCAL",
    **dict.fromkeys(
        ("pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
         "pg_try_advisory_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_shared",
         "pg_advisory_unlock_all"),
        "a session-level lock that outlives the transaction; pg_advisory_xact_lock does not",
    ),
    **dict.fromkeys(
        ("pg_sleep", "pg_sleep_for", "pg_sleep_until"), "the test's time: it holds the session"
    ),
    **dict.fromkeys(
        ("lowrite", "loread", "lo_put", "lo_get"),
        "large objects, incl. the server's files (lo_import, lo_export)",
    ),
    **dict.fromkeys(
        ("query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
         "cursor_to_xmlschema", "ts_stat"),
        "SQL text the guard cannot read: it runs a query given as a string",
    ),
}  # fmt: skip
_OUTSIDE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("lo_", "large objects, incl. the server's files (lo_import, lo_export)"),
    ("pg_ls_", _FILES),
    ("pg_file_", _FILES),
    ("dblink", "other databases (dblink)"),
    ("pg_stat_reset", "server statistics"),
    ("pg_replication_origin_", "replication state"),
    ("pg_create_", "replication slots"),
    ("pg_drop_replication_slot", "replication slots"),
    ("pg_replication_slot_", "replication slots"),
    ("pg_copy_", "replication slots"),
    ("pg_logical_", "the write-ahead log (a logical message is not rolled back)"),
)
# A statement whose text has none of these cannot call a watched function nor use a
# CURRENT_* value, so its tree is not walked (the common case: plain INSERTs). Names are
# matched anywhere, in any case, quoted or not; U& identifiers can spell them with
# escapes, so any U& means a walk.
_MAY_CALL = (
    "u&", "current_", "localtime",
    *_NONDET_CALLS, *_OUTSIDE_CALLS, *(prefix for prefix, _ in _OUTSIDE_PREFIXES),
)  # fmt: skip


_MAY_CALL_RE = re.compile("|".join(re.escape(name) for name in _MAY_CALL))


def _may_call(text: str) -> bool:
    return _MAY_CALL_RE.search(text.lower()) is not None


# The statement pg_dump --inserts / --column-inserts writes, one per row (and sqlfix's
# own literals): INSERT INTO name [(columns)] [OVERRIDING ... VALUE] VALUES (constants),
# ... [ON CONFLICT DO NOTHING];  with constants '...' (standard strings), numbers, NULL,
# TRUE, FALSE, DEFAULT, each optionally cast (::name[]). Its parse tree has no call, no
# CURRENT_* value and no INTO clause: the guard approves it without walking the tree, so
# a large dump needs no JSON tree at all. Anything else (E'', U&'', $$, comments, an
# expression, a subquery) does not match and takes the full path: fail closed.
_WS = r"[ \t\n\r\f]*"
_WS1 = r"[ \t\n\r\f]+"
_END = r"(?![A-Za-z0-9_$])"  # a keyword or name ends here
_NAME = r'(?:[A-Za-z_][A-Za-z0-9_$]*' + _END + r'|"[^"]*(?:""[^"]*)*")'
_STRING = r"'[^']*(?:''[^']*)*'"
_NUMBER = r"-?" + _WS + r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?" + _END
_CONST = (rf"(?:{_STRING}|{_NUMBER}|(?:NULL|TRUE|FALSE|DEFAULT){_END})"
          rf"(?:{_WS}::{_WS}{_NAME}(?:{_WS}\[{_WS}\])?)?")
_ROW = rf"\({_WS}{_CONST}(?:{_WS},{_WS}{_CONST})*{_WS}\)"
_PLAIN_INSERT = re.compile(
    rf"INSERT{_WS1}INTO{_WS1}{_NAME}(?:{_WS}\.{_WS}{_NAME}){{0,2}}{_WS}"
    rf"(?:\({_WS}{_NAME}(?:{_WS},{_WS}{_NAME})*{_WS}\){_WS})?"
    rf"(?:OVERRIDING{_WS1}(?:SYSTEM|USER){_WS1}VALUE{_WS1})?"
    rf"VALUES{_WS}{_ROW}(?:{_WS},{_WS}{_ROW})*{_WS}"
    rf"(?:ON{_WS1}CONFLICT{_WS1}DO{_WS1}NOTHING{_WS})?;",
    re.IGNORECASE | re.ASCII,
)


def _plain_insert(chunk: str, part: slice) -> str | None:
    """The statement's text if the parser's statement `part` is a constants-only INSERT.

    Both must agree on where it ends: the parser's statement stops at the ';' the
    pattern ends with (whitespace between); else None, and the full path decides.
    """
    if chunk[part.start] not in "iI":
        return None
    match = _PLAIN_INSERT.match(chunk, part.start)
    if match is None:
        return None
    semi = match.end() - 1
    if semi < part.stop or chunk[part.stop : semi].strip(" \t\n\r\f"):
        return None
    return chunk[part.start : match.end()]


_STATEMENT_WORDS = frozenset(
    _words("INSERT UPDATE DELETE MERGE SELECT VALUES TABLE WITH SET CREATE ALTER DROP")
)
_STRING_TOKENS = frozenset({"SCONST", "USCONST", "BCONST", "XCONST"})
_SEMI, _COMMENTS = "ASCII_59", frozenset({"C_COMMENT", "SQL_COMMENT"})


def scan(sql: str) -> GuardResult:
    """Split `sql` into statements and report every violation, in offset order.

    Never raises for any input text: what PostgreSQL's parser rejects becomes an
    SQLF401 (unclosed literal or comment) or SQLF404 (syntax error) violation.
    """
    return _scan(sql)


@lru_cache(maxsize=16)
def _scan(sql: str) -> GuardResult:
    nul = sql.find("\x00")
    if nul >= 0:
        # libpg_query reads C strings: it would stop at the NUL and approve only the text
        # before it. PostgreSQL cannot take NUL in SQL text at all: refuse it.
        result = _scan(sql.replace("\x00", " "))
        what = "NUL character (U+0000) in the SQL text, which PostgreSQL cannot read"
        refused = (*result.violations, _violation(SYNTAX, nul, what, "remove it"))
        ordered = sorted(refused, key=lambda v: (v.offset, v.code))
        return GuardResult(result.statements, tuple(ordered))
    found: list[Violation] = []
    whole = _parse(sql, 0, len(sql))
    if not isinstance(whole, _Failure):  # the common case: one parse, nothing open
        found = [v for piece in whole for v in piece.violations]
        if not whole:
            found.append(_violation(EMPTY, 0))
        found.sort(key=lambda v: (v.offset, v.code))
        return GuardResult(tuple(p.statement for p in whole), tuple(found))
    unclosed = _unclosed(sql)
    end = len(sql)
    if unclosed is not None:  # statements before the one the open literal runs in
        semis = [t.start for t in _tokens(sql[: unclosed[0]]) if t.name == _SEMI]
        end = semis[-1] + 1 if semis else 0
    pieces = list(_pieces(sql, 0, end))
    if unclosed is not None:
        found.append(_violation(UNTERMINATED, unclosed[0], unclosed[1]))
        tail = _tail(sql, pieces, unclosed)
        if tail is not None:
            pieces.append(tail)  # runs to the end of the text: not checked further
    statements = tuple(p.statement for p in pieces)
    for piece in pieces:
        found.extend(piece.violations)
    if not statements and unclosed is None:
        found.append(_violation(EMPTY, 0))
    found.sort(key=lambda v: (v.offset, v.code))
    return GuardResult(statements, tuple(found))


def inside_string(sql: str, offset: int) -> bool:
    """`offset` is inside a string literal or dollar-quoted body of `sql`, after its opening.

    For a `{{ }}` placeholder written inside quotes. Quoted identifiers and
    comments do not count; an unclosed string runs to the end of the text.
    """
    starts, ends = _literal_spans(sql)
    i = bisect_right(starts, offset) - 1
    return i >= 0 and starts[i] < offset < ends[i]


@lru_cache(maxsize=16)
def _literal_spans(sql: str) -> tuple[list[int], list[int]]:
    unclosed = _unclosed(sql)
    cut = len(sql) if unclosed is None else unclosed[0]
    spans = [(t.start, t.end + 1) for t in _tokens(sql[:cut]) if t.name in _STRING_TOKENS]
    if unclosed is not None and unclosed[2]:
        spans.append((cut, len(sql)))
    return [s for s, _ in spans], [e for _, e in spans]


def _tokens(sql: str) -> list[Any]:
    """pglast's scanner tokens (character offsets, `end` inclusive); [] if it fails."""
    try:
        return list(pg.scan(sql))
    except pg.ParseError:
        return []


def _unclosed(sql: str) -> tuple[int, str, bool] | None:
    """(offset, description, is a string) of a literal or comment the scanner finds open."""
    try:
        pg.scan(sql)
    except pg.ParseError as exc:
        message, location = _error(exc)
        if location is None or not message.startswith("unterminated"):
            return None  # another lexical error: the parser reports it as a syntax error
        if "comment" in message:
            what = "block comment (/* ... */ comments nest: each /* needs its own */)"
            return location, what, False
        if "identifier" in message:
            return location, 'quoted identifier ("...")', False
        if "dollar" in message:
            tag = re.match(r"\$[^$]*\$", sql[location:])
            shown = tag.group() if tag else "$$"
            return location, f"dollar-quoted string ({shown} ... {shown})", True
        opening = sql[location : location + 3].upper()
        if opening.startswith("E'"):
            return location, "escape string (E'...')", True
        if opening.startswith("B'") or opening.startswith("X'"):
            return location, f"bit-string literal ({opening[0]}'...')", True
        return location, "string literal ('...')", True
    return None


def _error(exc: pg.ParseError) -> tuple[str, int | None]:
    message = str(exc.args[0]) if exc.args else str(exc)
    location = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
    return message, location


def _violation(code: str, offset: int, what: str = "", hint: str = "") -> Violation:
    rule = _BY_CODE[code]
    message = rule.message.format(what=what, hint=hint)
    return Violation(offset, code, rule.name, message, rule.severity)


class _Piece(NamedTuple):
    statement: Statement
    violations: list[Violation]


class _Chars:
    """Byte offsets of the UTF-8 form of `text` (the parser's locations) to characters."""

    def __init__(self, text: str) -> None:
        self._ascii = text.isascii()
        self._data = b"" if self._ascii else text.encode()
        self._last = (0, 0)  # (byte, char) of the last answer: locations come mostly in order

    def __call__(self, byte: int) -> int:
        if self._ascii:
            return byte
        last_byte, last_char = self._last if byte >= self._last[0] else (0, 0)
        char = last_char + len(self._data[last_byte:byte].decode("utf-8", "replace"))
        self._last = (byte, char)
        return char


def _pieces(sql: str, start: int, end: int) -> Iterator[_Piece]:
    """Statements of sql[start:end], parsed; a syntax error is a piece of its own.

    The whole range is parsed at once. If the parser fails, the statements up
    to the last ';' before the error are parsed again, the statement holding the
    error (up to the next ';') is reported, and parsing resumes after it, so one
    mistake does not hide the rest of the file.
    """
    while start < end:
        parsed = _parse(sql, start, end)
        if not isinstance(parsed, _Failure):
            yield from parsed
            return
        chunk_len = end - start
        semis = [start + t.start for t in _tokens(sql[start:end]) if t.name == _SEMI]
        i = bisect_left(semis, parsed.at)
        before = semis[i - 1] if i else start - 1
        if before + 1 >= end:  # the ';' ending the range: no progress from there
            before = semis[i - 2] if i >= 2 else start - 1
        after = semis[i] if i < len(semis) else start + chunk_len - 1
        if before >= start:
            yield from _statements_of(sql, start, before + 1, semis)
        yield _syntax_piece(sql, before + 1, after + 1, parsed)
        start = after + 1


class _Failure(NamedTuple):
    at: int  # offset in the whole text
    message: str


def _parse(sql: str, start: int, end: int) -> list[_Piece] | _Failure:
    """The statements of sql[start:end], or where the parser fails.

    PostgreSQL's parser splits the text (without building a tree for Python);
    constants-only INSERTs (see _PLAIN_INSERT) are approved from their text, runs of
    other statements are parsed into trees and checked one by one (_parse_tree).
    """
    chunk = sql[start:end]
    try:
        parts = pg.split(chunk, with_parser=True, only_slices=True)
    except pg.ParseError:
        return _parse_tree(sql, start, end)  # the parser's own error, as the tree path says it
    pieces: list[_Piece] = []
    pending: int | None = None  # where a run of statements for the tree path starts
    for part in parts:
        text = _plain_insert(chunk, part)
        if text is None:
            pending = part.start if pending is None else pending
            continue
        if pending is not None:
            run = _parse_tree(sql, start + pending, start + part.start)
            if isinstance(run, _Failure):
                return _parse_tree(sql, start, end)
            pieces.extend(run)
            pending = None
        pieces.append(_Piece(Statement(text, start + part.start, "INSERT"), []))
    if pending is not None:
        if not pieces:  # nothing plain: the whole range as before
            return _parse_tree(sql, start, end)
        run = _parse_tree(sql, start + pending, end)
        if isinstance(run, _Failure):
            return _parse_tree(sql, start, end)
        pieces.extend(run)
    return pieces


def _parse_tree(sql: str, start: int, end: int) -> list[_Piece] | _Failure:
    """sql[start:end] through the parser's JSON tree: every statement checked by kind."""
    chunk = sql[start:end]
    try:
        text = pg.parse_sql_json(chunk)
    except pg.ParseError as exc:
        message, location = _error(exc)
        return _Failure(start + (len(chunk) if location is None else location), message)
    try:
        tree = json.loads(text)
        chars = _Chars(chunk)
        into = '"intoClause"' in text  # SELECT ... INTO is rare: skip the search without it
        return [_parsed_piece(chunk, start, chars, raw, into) for raw in tree["stmts"]]
    except RecursionError:
        # PostgreSQL parses it, but its tree is deeper than Python's recursion limit (e.g.
        # 'a' || 'a' || ... 600 times): fail closed, with the place and what to do.
        return _Failure(start, "a statement nested too deeply for sqlfix to check (an "
                        "expression of hundreds of operators or nested brackets): split it, "
                        "or build the value with a function such as repeat() or string_agg()")


def _statements_of(sql: str, start: int, end: int, semis: list[int]) -> Iterator[_Piece]:
    """sql[start:end], which parses alone or else one ';'-separated part at a time.

    The fallback splits at every ';' (wrongly inside BEGIN ATOMIC bodies): it is
    used only for a file that already has a syntax error, to keep parsing linear.
    """
    parsed = _parse(sql, start, end)
    if not isinstance(parsed, _Failure):
        yield from parsed
        return
    edges = [start - 1, *(s for s in semis if start <= s < end - 1), end - 1]
    for left, right in zip(edges, edges[1:], strict=False):
        part = _parse(sql, left + 1, right + 1)
        if isinstance(part, _Failure):
            yield _syntax_piece(sql, left + 1, right + 1, part)
        else:
            yield from part


def _syntax_piece(sql: str, start: int, end: int, failure: _Failure) -> _Piece:
    """The statement in sql[start:end] (a ';' included) that the parser rejects."""
    tokens = [t for t in _tokens(sql[start:end]) if t.name not in _COMMENTS]
    first = start + tokens[0].start if tokens else start
    last = start + tokens[-1].end + 1 if tokens else end
    text = sql[first:last]
    statement = Statement(text, first, _keyword(text))
    at = failure.at
    if sql.startswith("\\", at):
        what = f"psql meta-command ({sql[at:].split(maxsplit=1)[0]})"
        return _Piece(statement, [_violation(DISALLOWED, at, what, _HINTS["\\"])])
    if at >= len(sql):
        hint = "the statement is cut short; complete it"
    elif _keyword(sql[at:]) in _STATEMENT_WORDS:
        hint = "is a ';' missing before it?"
    else:
        hint = "fix the statement"
    at = min(at, max(len(sql) - 1, 0))
    return _Piece(statement, [_violation(SYNTAX, at, failure.message, hint)])


def _parsed_piece(chunk: str, base: int, chars: _Chars, raw: dict[str, Any], into: bool) -> _Piece:
    begin = chars(raw.get("stmt_location", 0))
    length = raw.get("stmt_len", 0)
    stop = chars(raw.get("stmt_location", 0) + length) if length else len(chunk)
    terminated = chunk.startswith(";", stop)
    text = chunk[begin : stop + 1] if terminated else chunk[begin:stop].rstrip()
    text = _strip_trailing_comments(text) if not terminated else text
    offset = base + begin
    statement = Statement(text, offset, _keyword(text))
    ((kind, node),) = raw["stmt"].items()
    violations: list[Violation] = []
    refused = _check_kind(kind, node, statement, chars, base, into)
    if refused is not None:
        violations.append(refused)
    elif _may_call(text):
        violations.extend(_calls(node, chunk, chars, base))
    if not terminated:
        violations.append(_violation(NO_SEMICOLON, offset, hint="add one"))
    return _Piece(statement, violations)


def _strip_trailing_comments(text: str) -> str:
    tokens = [t for t in _tokens(text) if t.name not in _COMMENTS]
    return text[: tokens[-1].end + 1] if tokens else text


def _keyword(text: str) -> str:
    match = re.match(r"[A-Za-z_]+|\S", text)
    return match.group().upper() if match else ""


def _tail(sql: str, pieces: list[_Piece], unclosed: tuple[int, str, bool]) -> _Piece | None:
    """The statement an unclosed literal runs in: from after the last piece to the end."""
    start = 0
    if pieces:
        last = pieces[-1].statement
        start = last.offset + len(last.text)
    opened, _, literal = unclosed
    tokens = [t for t in _tokens(sql[start:opened]) if t.name not in _COMMENTS | {_SEMI}]
    if tokens:
        first = start + tokens[0].start
    elif literal or sql[opened] == '"' or sql.startswith(('U&"', 'u&"'), opened):
        first = opened
    else:
        return None  # only an open comment: no statement
    text = sql[first:]
    return _Piece(Statement(text, first, _keyword(text)), [])


def _check_kind(
    kind: str, node: dict[str, Any], statement: Statement, chars: _Chars, base: int, into: bool
) -> Violation | None:
    """The violation of a statement's kind, or None for an allowed data statement."""
    offset, word = statement.offset, statement.keyword
    if kind in _DATA_NODES:
        clause = _find_key(node, "intoClause") if into else None
        if clause is None:
            return None
        what = "SELECT ... INTO, which creates a table; to add rows use INSERT INTO ... SELECT"
        return _violation(DDL, _into_offset(statement, clause, chars, base), what)
    if kind == "ConstraintsSetStmt":
        return None
    if kind == "VariableSetStmt":
        return _check_set(node, statement)
    if kind == "TransactionStmt":
        return _violation(TRANSACTION, offset, _describe(statement.text))
    if kind in _DDL_NODES or kind.startswith(_DDL_PREFIXES) or kind == "CreateTableAsStmt":
        return _violation(DDL, offset, _describe(statement.text))
    if kind == "CopyStmt" and ("filename" in node or node.get("is_program")):
        where = "a program on the server" if node.get("is_program") else _FILES
        return _violation(OUTSIDE, offset, "COPY with a file or PROGRAM", where)
    if kind == "CopyStmt" and node.get("is_from"):
        # FROM stdin, but not cut out as a block of rows: something precedes it on its line
        return _violation(DISALLOWED, offset, "COPY ... FROM stdin not at the start of its line",
                          "put it on a line of its own (nothing before COPY, not even a "
                          "comment), its rows on the lines after it, then a line `\\.`")
    return _violation(DISALLOWED, offset, f"{word} statement", _HINTS.get(word, "remove it"))


def _check_set(node: dict[str, Any], statement: Statement) -> Violation | None:
    name = str(node.get("name", ""))
    allowed_kind = node.get("kind") in ("VAR_SET_VALUE", "VAR_SET_DEFAULT")
    if node.get("is_local") and allowed_kind:
        if name in SET_LOCAL_ALLOWED or _CUSTOM_SETTING.fullmatch(name):
            return None
        what = f"SET LOCAL {name}"
        hint = (
            "this setting may change how the server reads the text that follows or who the"
            " session is; SET LOCAL may change "
            + ", ".join(sorted(SET_LOCAL_ALLOWED))
            + " and custom settings (app.x)"
        )
        return _violation(DISALLOWED, statement.offset, what, hint)
    word = statement.keyword
    what = f"SET LOCAL {name}" if node.get("is_local") else f"{word} statement"
    return _violation(DISALLOWED, statement.offset, what, _HINTS.get(word, "remove it"))


def _find_key(node: Any, key: str) -> Any:
    """The first value under `key` anywhere in a JSON parse tree, or None."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if key in item:
                return item[key]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _into_offset(statement: Statement, into: dict[str, Any], chars: _Chars, base: int) -> int:
    """The INTO keyword before the new table's name (the parse tree locates the name)."""
    location = into.get("rel", {}).get("location", -1)
    if location < 0:
        return statement.offset
    name_at = base + chars(location) - statement.offset
    intos = [t.start for t in _tokens(statement.text) if t.name == "INTO" and t.start < name_at]
    return statement.offset + (intos[-1] if intos else max(name_at, 0))


def _describe(text: str) -> str:
    """The statement's leading keywords, as "CREATE UNIQUE INDEX" or "START TRANSACTION"."""
    tokens = [t for t in _tokens(text)[:6] if t.name not in _COMMENTS]
    words = [text[t.start : t.end + 1].upper() for t in tokens]
    if not words:
        return _keyword(text)
    described = [words[0]]
    for word in words[1:5]:
        if word not in _HEAD_WORDS:
            break
        described.append(word)
        if word in _HEAD_END:
            break
    return " ".join(described)


def _calls(node: Any, chunk: str, chars: _Chars, base: int) -> Iterator[Violation]:
    """SQLF104 and SQLF501 for the function calls and CURRENT_* values in a parse tree."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        if not isinstance(item, dict):
            continue
        call = item.get("FuncCall")
        if isinstance(call, dict):
            found = _check_call(call, chunk, chars, base)
            if found is not None:
                yield found
        value = item.get("SQLValueFunction")
        if isinstance(value, dict) and value.get("op") in _NONDET_VALUES:
            at = chars(value.get("location", 0))
            word = re.match(r"\w+", chunk[at:])
            yield _violation(NONDETERMINISTIC, base + at, word.group() if word else "", "now")
        stack.extend(reversed(list(item.values())))


def _check_call(call: dict[str, Any], chunk: str, chars: _Chars, base: int) -> Violation | None:
    names = [n.get("String", {}).get("sval", "") for n in call.get("funcname", [])]
    if not names:
        return None
    name = str(names[-1]).lower()
    at = chars(call.get("location", 0))
    offset = base + at
    reach = _OUTSIDE_CALLS.get(name) or next(
        (what for prefix, what in _OUTSIDE_PREFIXES if name.startswith(prefix)), None
    )
    if reach is not None:
        return _violation(OUTSIDE, offset, f"{'.'.join(names)}()", reach)
    if name in _NONDET_CALLS:
        written = re.match(r"[\w$]+", chunk[at:])
        shown = written.group() if written and written.group().lower() == name else names[-1]
        return _violation(NONDETERMINISTIC, offset, shown + "()", _NONDET_CALLS[name])
    return None
