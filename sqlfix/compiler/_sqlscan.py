"""Lexer and statement splitter for PostgreSQL text, following psql's rules.

Private helper of `sqlfix.guard`. It knows where strings, quoted identifiers,
dollar-quoted bodies, comments and psql meta-commands begin and end, so that
keywords inside them are never mistaken for statements, and it splits the text
into statements the way psql does: at a ';' outside parentheses and outside the
BEGIN ... END body of a CREATE FUNCTION/PROCEDURE.

Lexing assumes `standard_conforming_strings = on` (the default since
PostgreSQL 9.1): a backslash escapes a quote only in E'' strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

# Token kinds. Whitespace and comments are not tokens.
WORD = "word"  # identifier or keyword; value is upper-cased
QIDENT = "qident"  # "quoted identifier"
STRING = "string"  # '...', E'...', U&'...', B'...', X'...', N'...'
DOLLAR = "dollar"  # $$...$$ or $tag$...$tag$
NUMBER = "number"
META = "meta"  # psql meta-command: a backslash up to the end of its line
SEMI = ";"
LPAREN = "("
RPAREN = ")"
DOT = "."
OTHER = "other"  # operators, commas, parameters ($1), anything else

_LETTER = r"A-Za-z_\x80-\U0010ffff"
# One token after any whitespace and line comments; `end` matches only at the end of text.
_LEX = re.compile(
    rf"""
    (?:[ \t\n\r\f\v]+|--[^\n\r]*)*
    (?:
      (?P<punct>[;(),]|\.(?![0-9]))
    | (?P<estring>[eE]')
    | (?P<string>(?:[uU]&|[bBxXnN])?'[^']*(?:''[^']*)*')
    | (?P<open_string>(?:[uU]&|[bBxXnN])?')
    | (?P<qident>(?:[uU]&)?"[^"]*(?:""[^"]*)*")
    | (?P<open_qident>(?:[uU]&)?")
    | (?P<word>[{_LETTER}][{_LETTER}0-9$]*)
    | (?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<block_comment>/\*)
    | (?P<dollar>\$(?:[{_LETTER}][{_LETTER}0-9]*)?\$)
    | (?P<param>\$[0-9]+)
    | (?P<meta>\\[^\n\r]*)
    | (?P<end>\Z)
    | (?P<other>.)
    )
    """,
    re.VERBOSE | re.DOTALL,
)
_BLOCK_EDGE = re.compile(r"/\*|\*/")
_E_BODY = re.compile(r"[^'\\]*(?:(?:\\[\s\S]|'')[^'\\]*)*'")
# PostgreSQL's quotecontinue: 'a'<newline>'b' is one string, and after E'a' still an E'' one.
_CONTINUE = re.compile(
    r"(?:[ \t\f]|--[^\n\r]*(?![^\n\r]))*[\n\r](?:[ \t\n\r\f\v]|--[^\n\r]*[\n\r])*'"
)
# Token kind of each group whose match is a whole token.
_KIND = {
    "string": STRING,
    "qident": QIDENT,
    "number": NUMBER,
    "param": OTHER,
    "meta": META,
    "other": OTHER,
}
# What an opening that is never closed is called, by group.
_OPEN = {
    "estring": "escape string (E'...')",
    "open_string": "string literal ('...')",
    "open_qident": 'quoted identifier ("...")',
    "dollar": "dollar-quoted string ({tag} ... {tag})",
    "block_comment": "block comment (/* ... */ comments nest: each /* needs its own */)",
}


class Token(NamedTuple):
    kind: str
    start: int
    end: int
    value: str  # the text; upper-cased for WORD


class Unterminated(NamedTuple):
    """A literal or comment opened at `offset` and never closed: it runs to the end."""

    offset: int
    what: str


class Piece(NamedTuple):
    """The tokens of one statement. `terminated`: it ended at a ';' (or is a meta-command)."""

    tokens: Sequence[Token]
    terminated: bool


def tokenize(sql: str) -> tuple[list[Token], Unterminated | None]:
    """Tokens of `sql` without whitespace and comments, and the unclosed literal if any.

    An unclosed string, identifier or dollar body becomes a last token that runs
    to the end of the text; an unclosed block comment just ends the tokens.
    """
    tokens: list[Token] = []
    append, match, pos = tokens.append, _LEX.match, 0
    while True:
        m = match(sql, pos)
        assert m is not None  # `end` or `other` always matches
        group = m.lastgroup or "end"
        start, pos = m.start(group), m.end()
        if group == "word":
            append(Token(WORD, start, pos, sql[start:pos].upper()))
        elif group == "punct":
            append(Token(sql[start], start, pos, sql[start]))
        elif group in _KIND:
            append(Token(_KIND[group], start, pos, sql[start:pos]))
        elif group == "end":
            return tokens, None
        else:  # an opening whose end is found by code
            kind, find_end = _SPANS[group]
            pos = find_end(sql, start, pos)
            if pos < 0:
                return _unclosed(sql, tokens, start, kind, _OPEN[group].format(tag=m[group]))
            if kind:
                append(Token(kind, start, pos, sql[start:pos]))


def _unclosed(
    sql: str, tokens: list[Token], start: int, kind: str, what: str
) -> tuple[list[Token], Unterminated]:
    """Ends the tokens with a literal opened at `start` that runs to the end of the text."""
    if kind:
        tokens.append(Token(kind, start, len(sql), sql[start:]))
    return tokens, Unterminated(start, what)


def _block_comment_end(sql: str, start: int, pos: int) -> int:
    """End offset of the block comment opening at `start` (they nest), or -1 if unclosed."""
    depth = 1
    while depth:
        m = _BLOCK_EDGE.search(sql, pos)
        if m is None:
            return -1
        depth += 1 if m.group() == "/*" else -1
        pos = m.end()
    return pos


def _dollar_end(sql: str, start: int, pos: int) -> int:
    tag = sql[start:pos]
    close = sql.find(tag, pos)
    return close + len(tag) if close >= 0 else -1


def _estring_end(sql: str, start: int, pos: int) -> int:
    """End of an E'' string, with its continuations on following lines; -1 if unclosed."""
    while True:
        body = _E_BODY.match(sql, pos)
        if body is None:
            return -1
        more = _CONTINUE.match(sql, body.end())
        if more is None:
            return body.end()
        pos = more.end()


def _never(sql: str, start: int, pos: int) -> int:
    return -1  # the regex matched only an opening quote: no closing one follows


# Group -> (token kind, "" for none; the function finding the end from the opening's end).
_SPANS: dict[str, tuple[str, Callable[[str, int, int], int]]] = {
    "estring": (STRING, _estring_end),
    "dollar": (DOLLAR, _dollar_end),
    "block_comment": ("", _block_comment_end),
    "open_string": (STRING, _never),
    "open_qident": (QIDENT, _never),
}


class _StatementEnd:
    """psql's test for a ';' that ends the statement it is reading."""

    def __init__(self) -> None:
        self.parens = 0
        self.blocks = 0  # BEGIN/CASE ... END nesting in a CREATE FUNCTION/PROCEDURE body
        self.head: list[str] = []  # the statement's first words, up to four

    def ends_at(self, tok: Token) -> bool:
        kind = tok.kind
        if kind == SEMI:
            return self.parens == 0 and self.blocks == 0
        if kind == LPAREN:
            self.parens += 1
        elif kind == RPAREN:
            self.parens = max(0, self.parens - 1)
        elif kind == WORD:
            self._word(tok.value)
        return False

    def _word(self, word: str) -> None:
        if len(self.head) < 4:
            self.head.append(word)
        if self.parens or not _is_routine(self.head):
            return
        if word == "BEGIN" or (word == "CASE" and self.blocks):
            self.blocks += 1
        elif word == "END" and self.blocks:
            self.blocks -= 1


def _is_routine(head: list[str]) -> bool:
    """The statement starts CREATE [OR REPLACE] FUNCTION|PROCEDURE."""
    if head[:1] != ["CREATE"]:
        return False
    kind = head[3:4] if head[1:3] == ["OR", "REPLACE"] else head[1:2]
    return kind in (["FUNCTION"], ["PROCEDURE"])


def split(tokens: Sequence[Token]) -> list[Piece]:
    """Statements of a token list; a ';' alone makes no statement.

    A meta-command is a statement of its own and ends the statement before it,
    as psql sends its query buffer when it meets one.
    """
    pieces: list[Piece] = []
    start, end_test = 0, _StatementEnd()
    for i, tok in enumerate(tokens):
        if tok.kind == META:
            if i > start:
                pieces.append(Piece(tokens[start:i], False))
            pieces.append(Piece(tokens[i : i + 1], True))
        elif end_test.ends_at(tok):
            if i > start:
                pieces.append(Piece(tokens[start : i + 1], True))
        else:
            continue
        start, end_test = i + 1, _StatementEnd()
    if start < len(tokens):
        pieces.append(Piece(tokens[start:], False))
    return pieces
