"""Statement guard: a fixture holds data statements only.

`scan` splits rendered fixture SQL into statements and reports what a fixture
must not contain: schema changes, transaction control, any other non-data
statement, unclosed literals, a missing final ';', an empty fixture, and
nondeterministic values. Offsets are 0-based character offsets into the text
given to `scan`; the caller maps them back to the source file.

The text is lexed by `sqlfix._sqlscan`, a small scanner that follows
PostgreSQL's and psql's rules (nested block comments, dollar quotes, backslashes
only in E'' strings, also across an E'a'<newline>'b' continuation, psql
meta-commands, no split inside parentheses), as the server must read the same
text the guard approved. sqlparse
is not used: its splitter does not nest block comments, treats a backslash as an
escape in standard strings (so `'a\\'); DROP TABLE x; --'` would hide a real
DROP) and does not know meta-commands; `sqlparse.split` alone also costs 5-10 us per
character where this scanner, splitting and all checks included, costs under 1.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from sqlfix.compiler._sqlscan import (
    DOLLAR,
    DOT,
    LPAREN,
    META,
    QIDENT,
    RPAREN,
    SEMI,
    STRING,
    WORD,
    Piece,
    Token,
    Unterminated,
    split,
    tokenize,
)
from sqlfix.errors import Severity


@dataclass(frozen=True)
class Statement:
    text: str  # as in the input, with its ';' if any; no leading whitespace or comments
    offset: int  # 0-based offset of its first token
    keyword: str  # first keyword, upper-case ("INSERT", "WITH", "\\i", "(" ...)


@dataclass(frozen=True)
class Violation:
    offset: int  # 0-based offset of the statement or of the offending token
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


DDL, TRANSACTION, DISALLOWED = "SQLF101", "SQLF102", "SQLF103"
UNTERMINATED, NO_SEMICOLON, EMPTY, NONDETERMINISTIC = "SQLF401", "SQLF402", "SQLF403", "SQLF501"


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

# Statements are classified by their first two words if listed, else by their first word;
# anything in neither table is SQLF103. _ALLOW marks the data statements.
_ALLOW = "allow"
_FIRST_TWO: dict[tuple[str, str], str] = {
    ("SET", "LOCAL"): _ALLOW,
    ("SET", "CONSTRAINTS"): _ALLOW,  # lasts until the end of the transaction, like SET LOCAL
    ("PREPARE", "TRANSACTION"): TRANSACTION,
    ("SECURITY", "LABEL"): DDL,
    ("REFRESH", "MATERIALIZED"): DDL,
    ("IMPORT", "FOREIGN"): DDL,
}
_FIRST: dict[str, str] = {
    **dict.fromkeys(_words("CREATE ALTER DROP TRUNCATE GRANT REVOKE COMMENT REINDEX CLUSTER"), DDL),
    **dict.fromkeys(_words("BEGIN START COMMIT END ROLLBACK ABORT SAVEPOINT RELEASE"), TRANSACTION),
    **dict.fromkeys(_words("INSERT UPDATE DELETE MERGE SELECT VALUES TABLE WITH"), _ALLOW),
}
_DATA_VERBS = frozenset(_words("INSERT UPDATE DELETE MERGE SELECT VALUES TABLE"))
_PAREN_FIRST = frozenset({"SELECT", "VALUES", "TABLE", "WITH"})  # allowed after "("
# Statements PostgreSQL knows that are not data statements, named as such in messages.
_KNOWN_OTHER = frozenset(
    _words(
        "CALL DO COPY SET RESET VACUUM ANALYZE ANALYSE LOCK DISCARD LOAD LISTEN NOTIFY UNLISTEN"
        " PREPARE EXECUTE DEALLOCATE EXPLAIN CHECKPOINT SHOW DECLARE FETCH MOVE CLOSE"
    )
)
_HINTS = {
    "SET": "use SET LOCAL (or SET CONSTRAINTS), which end with the test's transaction",
    "RESET": "use SET LOCAL (or SET CONSTRAINTS), which end with the test's transaction",
    "COPY": "write the rows as INSERT statements",
    "CALL": "write the data statements themselves",
    "DO": "write the data statements themselves",
    "\\": "sqlfix sends SQL to the server, not to psql: put the SQL itself in the fixture",
}
# A DDL or transaction statement is described by its first word and the words after it
# while they are in _HEAD_WORDS, up to one in _HEAD_END: "CREATE OR REPLACE FUNCTION".
_HEAD_END = frozenset(
    _words(
        "TABLE VIEW INDEX SEQUENCE FUNCTION PROCEDURE ROUTINE SCHEMA TYPE DOMAIN EXTENSION"
        " TRIGGER ROLE USER GROUP DATABASE POLICY RULE AGGREGATE CAST COLLATION CONVERSION SERVER"
        " WRAPPER PUBLICATION SUBSCRIPTION STATISTICS TABLESPACE LANGUAGE METHOD CONFIGURATION"
        " DICTIONARY PARSER TEMPLATE TRANSFORM PRIVILEGES COLUMN CONSTRAINT TRANSACTION WORK"
        " PREPARED SAVEPOINT"
    )
)
_HEAD_WORDS = _HEAD_END | frozenset(
    _words(
        "OR REPLACE TEMP TEMPORARY UNLOGGED UNIQUE MATERIALIZED FOREIGN DATA ACCESS EVENT TEXT"
        " SEARCH DEFAULT OPERATOR LABEL ON OWNED TO"
    )
)
# Nondeterministic values -> the template value to use instead.
_NONDET_CALLS = {
    **dict.fromkeys(
        ("NOW", "CLOCK_TIMESTAMP", "STATEMENT_TIMESTAMP", "TRANSACTION_TIMESTAMP", "TIMEOFDAY"),
        "now",
    ),
    **dict.fromkeys(("RANDOM", "RANDOM_NORMAL", "SETSEED"), "rng"),
    **dict.fromkeys(("GEN_RANDOM_UUID", "UUID_GENERATE_V4", "UUIDV4", "UUIDV7"), "fake"),
}
_NONDET_KEYWORDS = dict.fromkeys(
    ("CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "LOCALTIMESTAMP", "LOCALTIME"), "now"
)
_NOT_A_CALL_AFTER = frozenset({"INTO", "AS"})  # INSERT INTO random (...), AS now (...)


def scan(sql: str) -> GuardResult:
    """Split `sql` into statements and report every violation, in offset order."""
    tokens, unclosed = _lex(sql)
    pieces = split(tokens)
    statements = tuple(_statement(sql, piece) for piece in pieces)
    found: list[Violation] = []
    pairs = list(zip(pieces, statements, strict=True))
    for piece, statement in pairs:
        found.extend(_check_statement(sql, piece, statement))
    if unclosed is not None:
        found.append(_violation(UNTERMINATED, unclosed.offset, unclosed.what))
    # An unclosed literal swallowed the end of the text, so the end is not checked.
    found.extend(_unterminated(pairs[:-1] if unclosed is not None else pairs))
    if not statements and unclosed is None:
        found.append(_violation(EMPTY, 0))
    found.sort(key=lambda v: (v.offset, v.code))
    return GuardResult(statements, tuple(found))


def inside_string(sql: str, offset: int) -> bool:
    """`offset` is inside a string literal or dollar-quoted body of `sql`, after its opening.

    For a `{{ }}` placeholder written inside quotes. Quoted identifiers and
    comments do not count. Shares `scan`'s lexing of the same text.
    """
    starts, ends = _literal_spans(sql)
    i = bisect_right(starts, offset) - 1
    return i >= 0 and starts[i] < offset < ends[i]


@lru_cache(maxsize=16)
def _lex(sql: str) -> tuple[tuple[Token, ...], Unterminated | None]:
    tokens, unclosed = tokenize(sql)
    return tuple(tokens), unclosed


@lru_cache(maxsize=16)
def _literal_spans(sql: str) -> tuple[list[int], list[int]]:
    literals = [t for t in _lex(sql)[0] if t.kind in (STRING, DOLLAR)]
    return [t.start for t in literals], [t.end for t in literals]


def _violation(code: str, offset: int, what: str = "", hint: str = "") -> Violation:
    rule = _BY_CODE[code]
    message = rule.message.format(what=what, hint=hint)
    return Violation(offset, code, rule.name, message, rule.severity)


def _statement(sql: str, piece: Piece) -> Statement:
    first, last = piece.tokens[0], piece.tokens[-1]
    text = sql[first.start : last.end]
    if first.kind == META:
        keyword = first.value.split(maxsplit=1)[0]
        text = text.rstrip()
    elif first.kind == WORD:
        keyword = first.value
    else:
        keyword = first.value if len(first.value) <= 20 else first.value[:17] + "..."
    return Statement(text, first.start, keyword)


def _check_statement(sql: str, piece: Piece, statement: Statement) -> Iterator[Violation]:
    found = _check_kind(piece.tokens, statement)
    if found is not None:
        yield found
    else:
        yield from _nondeterministic(sql, piece.tokens)


def _check_kind(tokens: Sequence[Token], statement: Statement) -> Violation | None:
    """The violation of a statement's kind, or None for an allowed data statement."""
    word = statement.keyword
    if tokens[0].kind == META:
        what = f"psql meta-command ({word})"
        return _violation(DISALLOWED, statement.offset, what, _HINTS["\\"])
    if tokens[0].kind == LPAREN:
        inner = next((t for t in tokens if t.kind != LPAREN), None)
        if inner is None or inner.kind != WORD or inner.value not in _PAREN_FIRST:
            what = "parenthesised statement that is not a query"
            return _violation(DISALLOWED, statement.offset, what, "remove it")
        return _select_into(tokens)
    second = tokens[1].value if len(tokens) > 1 and tokens[1].kind == WORD else ""
    code = _FIRST_TWO.get((word, second)) or _FIRST.get(word, DISALLOWED)
    if code == _ALLOW:
        return _select_into(tokens)
    if code == DISALLOWED:
        return _disallowed(statement, word)
    return _violation(code, statement.offset, _describe(tokens))


def _disallowed(statement: Statement, word: str) -> Violation:
    if word in _KNOWN_OTHER:
        what = f"{word} statement"
    else:
        what = f"unknown statement ({statement.keyword})"
    return _violation(DISALLOWED, statement.offset, what, _HINTS.get(word, "remove it"))


def _describe(tokens: Sequence[Token]) -> str:
    """The statement's leading keywords, as "CREATE UNIQUE INDEX" or "START TRANSACTION"."""
    words = [tokens[0].value]
    for tok in tokens[1:5]:
        if tok.kind != WORD or tok.value not in _HEAD_WORDS:
            break
        words.append(tok.value)
        if tok.value in _HEAD_END:
            break
    return " ".join(words)


def _select_into(tokens: Sequence[Token]) -> Violation | None:
    """SELECT ... INTO at the level of the statement's main verb, which creates a table.

    The main verb is the first data verb at the lowest parenthesis depth, so
    `WITH x AS (SELECT ...) INSERT INTO ...` is an INSERT and `(SELECT ...)` a SELECT.
    """
    depth, verb, verb_depth = 0, "", 1 << 30
    intos: list[Token] = []
    for tok in tokens:
        if tok.kind == LPAREN:
            depth += 1
        elif tok.kind == RPAREN:
            depth -= 1
        elif tok.kind == WORD:
            if tok.value in _DATA_VERBS and depth < verb_depth:
                verb, verb_depth, intos = tok.value, depth, []
            elif tok.value == "INTO" and depth == verb_depth:
                intos.append(tok)
    if verb != "SELECT" or not intos:
        return None
    what = "SELECT ... INTO, which creates a table; to add rows use INSERT INTO ... SELECT"
    return _violation(DDL, intos[0].start, what)


def _nondeterministic(sql: str, tokens: Sequence[Token]) -> Iterator[Violation]:
    for i, tok in enumerate(tokens):
        if tok.kind != WORD:
            continue
        text = sql[tok.start : tok.end]
        if tok.value in _NONDET_CALLS and _is_call(tokens, i):
            yield _violation(NONDETERMINISTIC, tok.start, text + "()", _NONDET_CALLS[tok.value])
        elif tok.value in _NONDET_KEYWORDS and _is_value(tokens, i):
            yield _violation(NONDETERMINISTIC, tok.start, text, _NONDET_KEYWORDS[tok.value])


def _is_call(tokens: Sequence[Token], i: int) -> bool:
    """tokens[i] is a function name followed by '(' and not a table or alias name."""
    if i + 1 >= len(tokens) or tokens[i + 1].kind != LPAREN:
        return False
    while i >= 2 and tokens[i - 1].kind == DOT and tokens[i - 2].kind in (WORD, QIDENT):
        i -= 2  # walk back over a qualified name: schema.now
    return i == 0 or tokens[i - 1].value not in _NOT_A_CALL_AFTER


def _is_value(tokens: Sequence[Token], i: int) -> bool:
    """A CURRENT_DATE-like keyword, not a column name after '.' or a label after AS."""
    return i == 0 or (tokens[i - 1].kind != DOT and tokens[i - 1].value != "AS")


def _unterminated(pairs: Sequence[tuple[Piece, Statement]]) -> Iterator[Violation]:
    """SQLF402 for the last statement, or one cut short by a meta-command, that lacks ';'."""
    for piece, statement in pairs:
        if piece.terminated:
            continue
        hidden = any(t.kind == SEMI for t in piece.tokens)
        hint = "its ';' is inside an unclosed '(' or BEGIN, close that" if hidden else "add one"
        yield _violation(NO_SEMICOLON, statement.offset, hint=hint)
