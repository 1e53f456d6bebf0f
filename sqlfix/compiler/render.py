"""Render a fixture template to SQL: sandboxed Jinja, quoted values, a source map.

Pure: text in, text out. The code generator is sqlfix's own (`_CodeGenerator`):
every piece of template text and every `{{ }}` output is wrapped in a
`sourcemap.Piece` that records where it came from, and every `{{ }}` output that
is not the unchanged output of the template itself (a macro, `caller()`, a
`{% set %}` block) is quoted by `to_sql_literal`. Nothing in the text carries
position marks, so no character a value holds can turn into SQL.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from psycopg.types.json import Json, Jsonb

from sqlfix.compiler.context import SeededFaker, TemplateContext
from sqlfix.compiler.literals import LiteralError, to_sql_literal
from sqlfix.compiler.sourcemap import (
    Piece,
    SourceMap,
    first_position,
    flatten,
    join,
    text_piece,
    value_piece,
)
from sqlfix.errors import Finding, FixtureError

_CLOCK_ATTRS = frozenset({"now", "today", "utcnow", "fromtimestamp", "utcfromtimestamp"})
_RNG_ATTRS = frozenset({"seed", "setstate", "getstate"})
_FAKER_ATTRS = frozenset({"random", "seed", "seed_instance", "seed_locale", "unique"})

MAX_VALUE = 10_000_000
"""The longest string, list or dict a template may build (characters or items)."""
MAX_OUTPUT = 50_000_000
"""The longest rendered fixture, in characters (the largest real ones are ~1 MB)."""
_MAX_INT_BITS = 100_000  # `9 ** 9 ** 9` would compute for hours
# str methods whose integer arguments are widths: `'a'.ljust(10**9)`
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "format"})
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate"})
_GROWING_METHODS = frozenset({"append", "extend", "insert", "update", "setdefault", "add"})
# Widths and precisions in a %-format ("%500000000d") and in a str.format spec
# ("{:>500000000}"); digits elsewhere in the text are not widths.
_PERCENT_SPEC = re.compile(r"%[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*?:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_DIGITS = re.compile(r"\d+")
# Filters that change only letter case: a `{% filter %}` block of these may hold values.
_CASE_FILTERS = frozenset({"upper", "lower"})


class TemplateLimitError(SecurityError):
    """A template built a value or an output beyond sqlfix's size limits."""


@dataclass(frozen=True)
class RenderedFixture:
    name: str
    path: str
    seed: int
    sql: str
    source_map: SourceMap
    expressions: tuple[tuple[int, int], ...]  # (start, end) of each quoted `{{ }}` value
    ids: tuple[tuple[str, str, int], ...]  # (table, label, id) asked for with id()

    def locate(self, offset: int) -> tuple[int, int]:
        return self.source_map.locate(offset)


def _token_positions(env: jinja2.Environment, source: str) -> Iterator[tuple[str, int, int]]:
    """(kind, line, col) of each literal-text token and each `{{`, in lexing order.

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
        if kind in ("data", "variable_begin"):
            line = _line_of(line_starts, pos)
            yield kind, line, pos - line_starts[line - 1] + 1


def _line_of(line_starts: list[int], pos: int) -> int:
    lo, hi = 0, len(line_starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if line_starts[mid] <= pos:
            lo = mid + 1
        else:
            hi = mid
    return lo


class _Positions(Extension):
    """Records where each literal-text token and each `{{ }}` starts in the source.

    Tokens are recorded by identity; the parser (`_Parser`) and the code generator
    read the records, so positions travel beside the text, never in it.
    """

    source = ""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        self.source = source  # the environment is private to one render
        return source

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        env = self.environment
        assert isinstance(env, _FixtureSandbox)
        positions = _token_positions(env, self.source)
        after_open: tuple[int, int] | None = None
        for token in stream:
            if after_open is not None:
                env.expr_token_positions[id(token)] = after_open
                env.kept.append(token)
                after_open = None
            if token.type in ("data", "variable_begin"):
                kind, line, col = next(positions, (token.type, token.lineno, 1))
                while kind != token.type:  # keep both lists in step
                    kind, line, col = next(positions, (token.type, token.lineno, 1))
                if token.type == "data":
                    env.data_token_positions[id(token.value)] = (line, col)
                    env.kept.append(token.value)
                else:
                    after_open = (line, col)
            yield token


class _Parser(Parser):
    """Notes the `{{` position of each output expression (by node identity)."""

    def parse_tuple(self, *args: Any, **kwargs: Any) -> Any:
        env = self.environment
        assert isinstance(env, _FixtureSandbox)
        position = env.expr_token_positions.get(id(self.stream.current))
        node = super().parse_tuple(*args, **kwargs)
        if position is not None:
            env.expr_positions[id(node)] = position
            env.kept.append(node)
        return node


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator with every output wrapped in a source-mapped Piece."""

    def _position(self, key: int, table: dict[int, tuple[int, int]], lineno: int) -> str:
        line, col = table.get(key, (lineno, 1))
        return f"{line}, {col}"

    def _sandbox(self) -> _FixtureSandbox:
        env = self.environment
        assert isinstance(env, _FixtureSandbox)
        return env

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        if frame.require_output_check:
            if self.has_known_extends:
                return
            self.writeline("if parent_template is None:")
            self.indent()
        env = self._sandbox()
        for child in node.nodes:
            if frame.buffer is None:
                self.writeline("yield ", child)
            else:
                self.writeline(f"{frame.buffer}.append(", child)
            if isinstance(child, nodes.TemplateData):
                where = self._position(id(child.data), env.data_token_positions, child.lineno)
                self.write(f"environment.sqlfix_text({str.__repr__(child.data)}, {where})")
            else:
                where = self._position(id(child), env.expr_positions, child.lineno)
                self.write(f"environment.sqlfix_value({where}, ")
                self.visit(child, frame)
                self.write(")")
            if frame.buffer is not None:
                self.write(")")
        if frame.require_output_check:
            self.outdent()

    def visit_FilterBlock(self, node: nodes.FilterBlock, frame: Frame) -> None:
        names, filt = [], node.filter
        while isinstance(filt, nodes.Filter):
            arguments = [*filt.args, *(k.value for k in filt.kwargs)]
            if filt.dyn_args or filt.dyn_kwargs or not all(
                isinstance(a, nodes.Const) for a in arguments
            ):
                self.fail(
                    "a {% filter %} block takes literal arguments only (a value there "
                    "would be written as SQL text); apply the filter to the value "
                    "inside {{ }} instead",
                    node.lineno,
                )
            names.append(filt.name)
            filt = filt.node  # type: ignore[assignment]
        filter_frame = frame.inner()
        filter_frame.symbols.analyze_node(node)
        self.enter_frame(filter_frame)
        self.buffer(filter_frame)
        self.blockvisit(node.body, filter_frame)
        self.start_write(frame, node)
        case_only = all(n in _CASE_FILTERS for n in names)
        self.write(
            f"environment.sqlfix_filtered({node.lineno}, {case_only}, "
            f"concat({filter_frame.buffer}), "
        )
        self.visit_Filter(node.filter, filter_frame)
        self.write(")")
        self.end_write(frame)
        self.leave_frame(filter_frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.sqlfix_str_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        return len(value)
    return 0


def _check_size(value: Any, what: str) -> Any:
    size = _size(value)
    if size > MAX_VALUE:
        raise TemplateLimitError(
            f"{what} would be {size:,} characters or items, over the limit of {MAX_VALUE:,} "
            "for one value; build fixture data from smaller values"
        )
    return value


def _check_width(value: Any, what: str) -> None:
    """Refuse an integer width or count over MAX_VALUE."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE:
        raise TemplateLimitError(
            f"{what} asks for a width or count of {value:,}, over the limit of {MAX_VALUE:,}"
        )


def _check_format(template: str, args: Iterable[Any], what: str, percent: bool) -> None:
    """Refuse a format whose widths (written, or taken from `args`) are over MAX_VALUE."""
    if percent:
        specs = [g for m in _PERCENT_SPEC.finditer(template) for g in m.groups() if g]
    else:
        specs = [d for m in _FORMAT_SPEC.finditer(template) for d in _DIGITS.findall(m[1])]
        specs += ["*"] if any("{" in m[1] for m in _FORMAT_SPEC.finditer(template)) else []
    for spec in specs:
        if spec == "*":  # the width comes from the arguments
            for arg in args:
                _check_width(arg, what)
        elif len(spec) > 8 or int(spec) > MAX_VALUE:
            raise TemplateLimitError(
                f"{what}: the format asks for a width of {spec}, over the limit of {MAX_VALUE:,}"
            )


def _binop_size(op: str, left: Any, right: Any) -> int:
    """The size the result of `left op right` would have, computed without building it."""
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if _size(seq) and isinstance(n, int):
                return _size(seq) * max(n, 0)
    if op == "+":
        return _size(left) + _size(right)
    return 0


_LOCAL_FIELD = re.compile(r"\{[^{}]*:[^{}]*%s")  # '{:%s}'.format(now): strftime's %s


def _utc_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Calls whose Python result depends on the host's time zone, made to use UTC.

    `now.astimezone()` converts to UTC, a naive `timestamp()` counts from UTC, and
    strftime's `%s` (seconds since the epoch in the host's zone) is refused.
    """
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    local_s = name == "strftime" and isinstance(owner, (dt.date, dt.time)) and any(
        "%s" in str(a) for a in (*args, *kwargs.values())
    )
    if local_s or (name == "format" and isinstance(owner, str) and _LOCAL_FIELD.search(owner)):
        raise SecurityError(
            "strftime's %s depends on the time zone of the machine; write "
            "{{ value.timestamp() | int }} for seconds since the epoch"
        )
    if not isinstance(owner, dt.datetime):
        return _NOT_TZ
    if name == "astimezone" and not args and not kwargs:
        return owner.astimezone(dt.timezone.utc)
    if name == "timestamp" and owner.tzinfo is None:
        return owner.replace(tzinfo=dt.timezone.utc).timestamp()
    return _NOT_TZ


_NOT_TZ = object()


class _FixtureSandbox(SandboxedEnvironment):
    """The sandbox, minus the ways back to the clock, to reseeding and to huge values."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.data_token_positions: dict[int, tuple[int, int]] = {}
        self.expr_token_positions: dict[int, tuple[int, int]] = {}
        self.expr_positions: dict[int, tuple[int, int]] = {}
        self.kept: list[object] = []  # keeps ids above unique while the template compiles
        self.filters = {
            name: _limited_filter(name, f) for name, f in self.filters.items()
        }

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _Parser(self, source, name, filename).parse()

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, (dt.date, dt.time, type)) and attr in _CLOCK_ATTRS:
            return False
        if isinstance(obj, random.Random) and attr in _RNG_ATTRS:
            return False
        if isinstance(obj, SeededFaker) and attr in _FAKER_ATTRS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        powers = op == "**" and isinstance(left, int) and isinstance(right, int)
        if powers and right > 0 and abs(left).bit_length() * right > _MAX_INT_BITS + right:
            raise TemplateLimitError(
                f"{left} ** {right} would be over the limit of {_MAX_INT_BITS:,} bits; "
                "use smaller numbers"
            )
        if op == "%" and isinstance(left, str):
            values = right if isinstance(right, tuple) else (right,)
            _check_format(left, values, "the % format", percent=True)
        size = _binop_size(op, left, right)
        if size > MAX_VALUE:
            raise TemplateLimitError(
                f"`{op}` would build a value of {size:,} characters or items, over the limit "
                f"of {MAX_VALUE:,} for one value; build fixture data from smaller values"
            )
        return _check_size(super().call_binop(context, op, left, right), f"`{op}`")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped
        owner = getattr(target, "__self__", None)
        name = getattr(target, "__name__", "")
        if isinstance(owner, str) and name in ("format", "format_map"):
            _check_format(owner, (*args, *kwargs.values()), f"str.{name}()", percent=False)
        elif isinstance(owner, str) and name in _WIDTH_METHODS:
            for arg in (*args, *kwargs.values()):
                _check_width(arg, f"str.{name}()")
        if name == "join" and isinstance(owner, str) and args:
            items = list(args[0])
            total = sum(len(str(i)) for i in items) + len(owner) * len(items)
            if total > MAX_VALUE:
                raise TemplateLimitError(
                    f"str.join() would build {total:,} characters, over the limit of "
                    f"{MAX_VALUE:,} for one value"
                )
            args = (items, *args[1:])
        if name == "replace" and isinstance(owner, str) and len(args) >= 2:
            old, new = str(args[0]), str(args[1])
            grows = owner.count(old) * (len(new) - len(old)) if old else len(owner) * len(new)
            if len(owner) + grows > MAX_VALUE:
                raise TemplateLimitError(
                    f"str.replace() would build {len(owner) + grows:,} characters, over the "
                    f"limit of {MAX_VALUE:,} for one value"
                )
        if name in _GROWING_METHODS and _size(owner) >= MAX_VALUE:
            _check_size(owner, f"{type(owner).__name__}.{name}()")
            raise TemplateLimitError(f"{type(owner).__name__} has reached {MAX_VALUE:,} items")
        fixed = _utc_call(target, args, kwargs)
        if fixed is not _NOT_TZ:
            return fixed
        result = super().call(__context, __obj, *args, **kwargs)
        return _check_size(result, f"the result of {name or 'a call'}()")

    # -- output: called by _CodeGenerator's code

    def concat(self, parts: Iterable[Any]) -> Piece:
        """Joins output; anything that is not a Piece is a value and gets quoted."""
        pieces: list[Piece] = []
        total = 0
        for part in parts:
            if not isinstance(part, Piece):  # no known path leads here: quote it
                where = first_position(pieces[-1]) if pieces else (1, 1)
                part = value_piece(to_sql_literal(part), *where)
            total += len(part)
            if total > MAX_OUTPUT:
                raise TemplateLimitError(
                    f"the rendered fixture would be over {MAX_OUTPUT:,} characters; split it "
                    "into smaller fixtures"
                )
            pieces.append(part)
        return join(pieces)

    def sqlfix_text(self, text: str, line: int, col: int) -> Piece:
        return text_piece(text, line, col)

    def sqlfix_value(self, line: int, col: int, value: Any) -> Piece:
        if type(value) is Piece:  # exactly: the unchanged output of a macro or block
            return value
        return value_piece(_finalize(value), line, col)

    def sqlfix_filtered(self, line: int, case_only: bool, body: Piece, result: Any) -> Piece:
        """The output of a `{% filter %}` block over `body`."""
        if not case_only and flatten(body)[1]:
            raise LiteralError(
                "a {% filter %} block other than upper or lower cannot hold {{ }} values "
                "(the filter could take their quotes apart); apply the filter inside: "
                "{{ value | f }}"
            )
        text = str.__str__(result) if isinstance(result, str) else str(result)
        if len(text) == len(body):  # case changes: every offset keeps its source
            return join([body], text)
        return text_piece(text, line, 1)  # a length change: the block's line is all we know

    def sqlfix_str_join(self, parts: tuple[Any, ...]) -> str:
        texts = [str(p) for p in parts]
        total = sum(map(len, texts))
        if total > MAX_VALUE:
            raise TemplateLimitError(
                f"`~` would build {total:,} characters, over the limit of {MAX_VALUE:,} "
                "for one value; build fixture data from smaller values"
            )
        return "".join(texts)


def _limited_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def limited(*args: Any, **kwargs: Any) -> Any:
        plain = [a for a in (*args, *kwargs.values())
                 if not isinstance(a, (Context, jinja2.Environment, EvalContext))]
        if name == "format" and plain and isinstance(plain[0], str):
            _check_format(plain[0], plain[1:], "the format filter", percent=True)
        elif name in _WIDTH_FILTERS:
            for arg in plain[1:]:  # the first is the value filtered
                _check_width(arg, f"the {name} filter")
        return _check_size(func(*args, **kwargs), f"the {name} filter")

    for attr in ("jinja_pass_arg",):  # how Jinja knows to pass the context or environment
        if hasattr(func, attr):
            setattr(limited, attr, getattr(func, attr))
    return limited


def _finalize(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        if "inline if" not in str(value._undefined_hint or ""):
            value._fail_with_undefined_error()  # the name's own error: 'x' is undefined
        raise LiteralError(
            "this {{ }} produced no value (an `x if cond` without `else`?); every {{ }} "
            "becomes a quoted SQL value, so write SQL text such as commas as template text: "
            "{% if not loop.last %},{% endif %}"
        )
    return to_sql_literal(value)


def _environment(source: str, name: str, path: str) -> _FixtureSandbox:
    def load(wanted: str) -> tuple[str, str, Callable[[], bool]] | None:
        return (source, path, lambda: True) if wanted == name else None  # no includes

    return _FixtureSandbox(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        extensions=[_Positions, "jinja2.ext.do", "jinja2.ext.loopcontrols"],
        autoescape=False,
        keep_trailing_newline=True,
        optimized=False,  # constant folding would merge text pieces and lose their positions
        trim_blocks=True,  # a {% %} line leaves no blank line behind in the SQL
        lstrip_blocks=True,
    )


TEMPLATE_GLOBALS: dict[str, Any] = {"Json": Json, "Jsonb": Jsonb}
"""Names every template sees besides the context's: psycopg's JSON wrappers."""


def render_template(
    source: str, *, name: str, path: str, context: TemplateContext
) -> RenderedFixture:
    """Render `source` (the text of fixture `name` at `path`); raises FixtureError."""
    if "\x00" in source:
        line = source.count("\n", 0, source.index("\x00")) + 1
        raise FixtureError(
            [
                Finding(
                    "SQLF203",
                    "the file contains a NUL character (U+0000); PostgreSQL text cannot "
                    "hold one: remove it",
                    path,
                    line,
                )
            ]
        )
    env = _environment(source, name, path)
    try:
        rendered = env.get_template(name).render({**TEMPLATE_GLOBALS, **context.as_dict()})
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
    assert isinstance(rendered, Piece)  # env.concat builds every render's output
    segments, values = flatten(rendered)
    return RenderedFixture(
        name=name,
        path=path,
        seed=context.file_seed,
        sql=str.__str__(rendered),
        source_map=SourceMap.of(segments),
        expressions=tuple(values),
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
            "seed, rng, fake, id, row, now, today, timedelta, Json, Jsonb",
            path,
            line,
        )
    if isinstance(exc, TemplateLimitError):
        return Finding("SQLF203", f"too large: {_clause(exc)}", path, line)
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
    if isinstance(exc, (MemoryError, RecursionError)):
        what = "memory" if isinstance(exc, MemoryError) else "stack"
        return Finding(
            "SQLF203", f"the template ran out of {what} (a loop or recursion without end?)",
            path, line)
    return Finding(
        "SQLF203", f"error while rendering: {type(exc).__name__}: {_clause(exc)}", path, line
    )

