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
from dataclasses import dataclass

# (offset in the rendered text, template line, template column, literal?)
Segment = tuple[int, int, int, bool]


class Piece(str):
    """Rendered text that knows where it came from.

    A leaf is template text starting at `leaf` = (line, col, True) or a quoted
    value written by the `{{` at (line, col, False); a joined Piece has no leaf
    and keeps its `children` (their lengths add up to its own). The map is
    flattened once, at the end (`SourceMap.of`), so joining costs no copying.
    """

    leaf: tuple[int, int, bool] | None
    children: tuple[Piece, ...]


def text_piece(text: str, line: int, col: int) -> Piece:
    """Template text starting at line:col."""
    piece = Piece(text)
    piece.leaf, piece.children = (line, col, True), ()
    return piece


def value_piece(text: str, line: int, col: int) -> Piece:
    """A quoted value written by the `{{ }}` at line:col."""
    piece = Piece(text)
    piece.leaf, piece.children = (line, col, False), ()
    return piece


def join(pieces: list[Piece], text: str | None = None) -> Piece:
    """The Pieces end to end (or `text`, of the same length, mapped like them)."""
    piece = Piece("".join(pieces) if text is None else text)
    piece.leaf, piece.children = None, tuple(pieces)
    return piece


def first_position(piece: Piece) -> tuple[int, int]:
    """(line, col) where `piece` starts, (1, 1) if it is empty."""
    while piece.leaf is None:
        if not piece.children:
            return 1, 1
        piece = piece.children[0]
    return piece.leaf[0], piece.leaf[1]


def flatten(root: Piece) -> tuple[list[Segment], list[tuple[int, int]]]:
    """The segments of `root` (one per source line of template text) and its value spans."""
    segments: list[Segment] = []
    values: list[tuple[int, int]] = []
    add_segment, add_value = segments.append, values.append

    def leaf(piece: Piece, leaf: tuple[int, int, bool], offset: int) -> None:
        line, col, literal = leaf
        add_segment((offset, line, col, literal))
        if not literal:
            add_value((offset, offset + len(piece)))
            return
        newline = piece.find("\n")
        while newline >= 0:
            line += 1
            add_segment((offset + newline + 1, line, 1, True))
            newline = piece.find("\n", newline + 1)

    def walk(piece: Piece, offset: int) -> None:
        for child in piece.children:
            info = child.leaf
            if info is None:
                walk(child, offset)
            elif not info[2]:  # a value: inlined, the commonest leaf with text
                add_segment((offset, info[0], info[1], False))
                add_value((offset, offset + len(child)))
            elif "\n" in child:
                leaf(child, info, offset)
            else:
                add_segment((offset, info[0], info[1], True))
            offset += len(child)

    if root.leaf is None:
        walk(root, 0)
    else:
        leaf(root, root.leaf, 0)
    return segments, values


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
    def of(cls, segs: list[Segment]) -> SourceMap:
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
