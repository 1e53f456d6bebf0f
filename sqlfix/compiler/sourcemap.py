"""Map rendered SQL back to lines and columns of the template it came from.

Jinja does not say which template line produced which output character, so the
renderer plants markers in the template's literal text (and around each `{{ }}`
output) and `strip_markers` turns the marked output into clean SQL plus a map.
NUL is the marker: PostgreSQL text can never contain it, so neither can a fixture.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

MARK = "\x00"
# Mark bodies are digits and punctuation only, so filters such as {% filter upper %}
# over template text cannot change them.
EXPR_OPEN = f"{MARK}<{MARK}"
EXPR_CLOSE = f"{MARK}>{MARK}"


def position_mark(line: int, col: int) -> str:
    return f"{MARK}{line}:{col}{MARK}"


def mark_data(text: str, line: int, col: int) -> str:
    """`text` (template literal text starting at line:col) with a mark at each line start."""
    pieces = text.split("\n")
    out = [position_mark(line, col) + pieces[0]]
    out.extend(position_mark(line + i, 1) + piece for i, piece in enumerate(pieces[1:], 1))
    return "\n".join(out)


@dataclass(frozen=True)
class SourceMap:
    """Sorted segment starts in the rendered text, each with its source line and column.

    Within a literal-text segment the column advances with the offset; an
    expression's output maps to where the expression stands.
    """

    starts: tuple[int, ...]
    lines: tuple[int, ...]
    cols: tuple[int, ...]
    literal: tuple[bool, ...]

    def locate(self, offset: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, offset) - 1
        if i < 0:
            return 1, 1
        delta = offset - self.starts[i] if self.literal[i] else 0
        return self.lines[i], self.cols[i] + delta


@dataclass(frozen=True)
class Stripped:
    sql: str
    source_map: SourceMap
    expressions: tuple[tuple[int, int], ...]  # (start, end) offsets of each `{{ }}` output


class _Builder:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.length = 0
        self.segments: list[tuple[int, int, int, bool]] = []
        self.line, self.col = 1, 1
        self.expr_start: int | None = None
        self.expressions: list[tuple[int, int]] = []

    def text(self, chunk: str) -> None:
        if not chunk:
            return
        self.out.append(chunk)
        self.length += len(chunk)
        if self.expr_start is None:
            self.col += len(chunk)  # marks follow every newline, so no newline here

    def mark(self, body: str) -> None:
        if body == "<":
            self.expr_start = self.length
            self.segments.append((self.length, self.line, self.col, False))
        elif body == ">" and self.expr_start is not None:
            self.expressions.append((self.expr_start, self.length))
            self.expr_start = None
        elif ":" in body:
            line, col = body.split(":")
            self.line, self.col = int(line), int(col)
            self.segments.append((self.length, self.line, self.col, True))


def strip_markers(marked: str) -> Stripped:
    builder = _Builder()
    parts = marked.split(MARK)
    # parts alternate: text, mark body, text, mark body, ...
    for i, part in enumerate(parts):
        if i % 2 == 0:
            builder.text(part)
        else:
            builder.mark(part)
    segs = builder.segments
    source_map = SourceMap(
        starts=tuple(s[0] for s in segs),
        lines=tuple(s[1] for s in segs),
        cols=tuple(s[2] for s in segs),
        literal=tuple(s[3] for s in segs),
    )
    return Stripped("".join(builder.out), source_map, tuple(builder.expressions))
