"""Render a fixture template to SQL: sandboxed Jinja, quoted values, a source map.

Pure: text in, text out. Every `{{ }}` output passes through `to_sql_literal`,
so raw SQL can only come from the template's own text.
"""

from __future__ import annotations

import datetime as dt
import random
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.sandbox import SandboxedEnvironment

from sqlfix.compiler.context import SeededFaker, TemplateContext
from sqlfix.compiler.literals import LiteralError, to_sql_literal
from sqlfix.compiler.sourcemap import (
    EXPR_CLOSE,
    EXPR_OPEN,
    MARK,
    SourceMap,
    mark_data,
    strip_markers,
)
from sqlfix.errors import Finding, FixtureError

_CLOCK_ATTRS = frozenset({"now", "today", "utcnow", "fromtimestamp", "utcfromtimestamp"})
_RNG_ATTRS = frozenset({"seed", "setstate", "getstate"})
_FAKER_ATTRS = frozenset({"random", "seed", "seed_instance", "seed_locale", "unique"})


@dataclass(frozen=True)
class RenderedFixture:
    name: str
    path: str
    seed: int
    sql: str
    source_map: SourceMap
    expressions: tuple[tuple[int, int], ...]
    ids: tuple[tuple[str, str, int], ...]  # (table, label, id) asked for with id()

    def locate(self, offset: int) -> tuple[int, int]:
        return self.source_map.locate(offset)


def _data_positions(env: jinja2.Environment, source: str) -> Iterator[tuple[int, int]]:
    """(line, col) of each literal-text token, in lexing order.

    The raw lexer's token values are substrings of the source in order; only the
    whitespace eaten by `{%-` is missing, so a forward search finds each token.
    """
    cursor = 0
    line_starts = [0] + [i + 1 for i, ch in enumerate(source) if ch == "\n"]
    for _lineno, kind, value in env.lex(source):
        pos = source.find(value, cursor)
        if pos < 0:
            continue
        cursor = pos + len(value)
        if kind == "data":
            line = _line_of(line_starts, pos)
            yield line, pos - line_starts[line - 1] + 1


def _line_of(line_starts: list[int], pos: int) -> int:
    lo, hi = 0, len(line_starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if line_starts[mid] <= pos:
            lo = mid + 1
        else:
            hi = mid
    return lo


class _SourceMarks(Extension):
    """Plants position marks in literal text so output can be traced to its line."""

    source = ""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        self.source = source  # the environment is private to one render
        return source

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        positions = _data_positions(self.environment, self.source)
        for token in stream:
            if token.type == "data":
                line, col = next(positions, (token.lineno, 1))
                token = Token(token.lineno, "data", mark_data(token.value, line, col))
            yield token


class _FixtureSandbox(SandboxedEnvironment):
    """The sandbox, minus the ways back to the clock and to reseeding."""

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, (dt.date, dt.time, type)) and attr in _CLOCK_ATTRS:
            return False
        if isinstance(obj, random.Random) and attr in _RNG_ATTRS:
            return False
        if isinstance(obj, SeededFaker) and attr in _FAKER_ATTRS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))


def _finalize(value: Any) -> str:
    if isinstance(value, str) and MARK in value:
        return str.__str__(value)  # a macro's or block's output: the template's own text
    if isinstance(value, jinja2.Undefined):
        if "inline if" not in str(value._undefined_hint or ""):
            value._fail_with_undefined_error()  # the name's own error: 'x' is undefined
        raise LiteralError(
            "this {{ }} produced no value (an `x if cond` without `else`?); every {{ }} "
            "becomes a quoted SQL value, so write SQL text such as commas as template text: "
            "{% if not loop.last %},{% endif %}"
        )
    return EXPR_OPEN + to_sql_literal(value) + EXPR_CLOSE


def _environment(source: str, name: str, path: str) -> jinja2.Environment:
    def load(wanted: str) -> tuple[str, str, Callable[[], bool]] | None:
        return (source, path, lambda: True) if wanted == name else None  # no includes

    return _FixtureSandbox(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        extensions=[_SourceMarks, "jinja2.ext.do", "jinja2.ext.loopcontrols"],
        autoescape=False,
        keep_trailing_newline=True,
    )


def render_template(
    source: str, *, name: str, path: str, context: TemplateContext
) -> RenderedFixture:
    """Render `source` (the text of fixture `name` at `path`); raises FixtureError."""
    if MARK in source:
        raise FixtureError(
            [
                Finding(
                    "SQLF203",
                    "the file contains a NUL character; PostgreSQL text cannot hold one: remove it",
                    path,
                )
            ]
        )
    env = _environment(source, name, path)
    try:
        marked = env.get_template(name).render(context.as_dict())
    except jinja2.TemplateSyntaxError as exc:
        raise FixtureError(
            [
                Finding(
                    "SQLF201",
                    f"template syntax error: {_clause(exc.message)}; fix the Jinja tag",
                    path,
                    exc.lineno or 1,
                )
            ]
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any error a template raises is the user's
        raise FixtureError([_render_finding(exc, path)]) from exc
    stripped = strip_markers(marked)
    return RenderedFixture(
        name=name,
        path=path,
        seed=context.file_seed,
        sql=stripped.sql,
        source_map=stripped.source_map,
        expressions=stripped.expressions,
        ids=tuple((t, label, i) for (t, label), i in context.ids.items()),
    )


def _template_line(exc: BaseException, path: str) -> int:
    """The template line of the innermost frame Jinja rewrote to point at `path`."""
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    return (lines[-1] or 1) if lines else 1


def _clause(text: object) -> str:
    """A message as a clause that more text can follow ("x is unsafe." -> "x is unsafe")."""
    return str(text).strip().rstrip(".")


def _render_finding(exc: Exception, path: str) -> Finding:
    line = _template_line(exc, path)
    if isinstance(exc, jinja2.TemplateNotFound):
        return Finding(
            "SQLF203",
            f"cannot include {exc.name!r}: fixtures do not include, import or extend other "
            "templates; load another fixture first with `-- requires: other.sql`, or use a "
            "{% macro %} defined in this file",
            path,
            line,
        )
    if isinstance(exc, jinja2.UndefinedError):
        return Finding(
            "SQLF202",
            f"undefined name: {exc.message}; the template context has "
            "seed, rng, fake, id, row, now, today, timedelta",
            path,
            line,
        )
    if isinstance(exc, SecurityError):
        return Finding(
            "SQLF203",
            f"not allowed in a fixture template: {_clause(exc)}; values must come "
            "from seed, rng, fake, row() and now so every run renders the same",
            path,
            line,
        )
    if isinstance(exc, LiteralError):
        return Finding("SQLF203", f"cannot quote a value: {_clause(exc)}", path, line)
    return Finding(
        "SQLF203", f"error while rendering: {type(exc).__name__}: {_clause(exc)}", path, line
    )
