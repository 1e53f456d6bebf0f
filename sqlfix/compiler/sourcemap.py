"""Map rendered SQL back to lines and columns of the template it came from.

Out of band: no character of the output carries position information, so no
value can change how the text is read. The renderer's code generator wraps every
piece of template text and every quoted `{{ }}` value in a `Piece`, a `str` that
knows where each of its parts came from; joining Pieces (the only way Jinja
assembles output, `environment.concat`) joins their maps. Any str operation on
a Piece (`~`, `+`, a filter, a method) returns a plain `str`, which the renderer
quotes as a value: only unchanged template output stays SQL text.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

# (offset in the piece, template line, template column, literal?)
Segment = tuple[int, int, int, bool]


class Piece(str):
    """Rendered text with its source segments and the spans of its quoted values.

    A literal segment's column advances with the offset (template text); a value's
    segment maps every offset to where its `{{` stands.
    """

    segments: tuple[Segment, ...]
    values: tuple[tuple[int, int], ...]

    def __new__(
        cls, text: str, segments: tuple[Segment, ...], values: tuple[tuple[int, int], ...] = ()
    ) -> Piece:
        piece = super().__new__(cls, text)
        piece.segments = segments
        piece.values = values
        return piece


def text_piece(text: str, line: int, col: int) -> Piece:
    """Template text starting at line:col, one segment per source line."""
    segments: list[Segment] = [(0, line, col, True)]
    start = text.find("\n")
    while start >= 0:
        line += 1
        segments.append((start + 1, line, 1, True))
        start = text.find("\n", start + 1)
    return Piece(text, tuple(segments))


def value_piece(text: str, line: int, col: int) -> Piece:
    """A quoted value written by the `{{ }}` at line:col."""
    return Piece(text, ((0, line, col, False),), ((0, len(text)),))


def join(pieces: Iterable[Piece]) -> Piece:
    """The Pieces end to end, their maps shifted to match."""
    texts: list[str] = []
    segments: list[Segment] = []
    values: list[tuple[int, int]] = []
    offset = 0
    for piece in pieces:
        texts.append(piece)
        segments.extend((offset + s, line, col, lit) for s, line, col, lit in piece.segments)
        values.extend((offset + a, offset + b) for a, b in piece.values)
        offset += len(piece)
    return Piece("".join(texts), tuple(segments), tuple(values))


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

    @classmethod
    def of(cls, piece: Piece) -> SourceMap:
        segs = piece.segments
        return cls(
            starts=tuple(s[0] for s in segs),
            lines=tuple(s[1] for s in segs),
            cols=tuple(s[2] for s in segs),
            literal=tuple(s[3] for s in segs),
        )

    def locate(self, offset: int) -> tuple[int, int]:
        """(line, col), both 1-based, of rendered `offset`."""
        i = bisect.bisect_right(self.starts, offset) - 1
        if i < 0:
            return 1, 1
        delta = offset - self.starts[i] if self.literal[i] else 0
        return self.lines[i], self.cols[i] + delta
