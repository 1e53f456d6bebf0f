"""Fixtures with no template syntax skip Jinja: their text is their SQL.

A 5.8 MB data dump spent ~4 s in Jinja's compiler for nothing: without `{{`, `{%`
or `{#` a template renders to itself (`keep_trailing_newline` is on, line
statements are off). The source map is then the identity: offset -> line, col.
"""

from __future__ import annotations

import re

from sqlfix.compiler.render import RenderedFixture
from sqlfix.compiler.sourcemap import SourceMap
from sqlfix.errors import Finding, FixtureError

_TEMPLATE_SYNTAX = ("{{", "{%", "{#")
_NEWLINE = re.compile("\n")


def is_plain(source: str) -> bool:
    """True if `source` holds no Jinja syntax, so rendering would return it unchanged."""
    return "{" not in source or not any(tag in source for tag in _TEMPLATE_SYNTAX)


def plain_fixture(source: str, *, name: str, path: str, seed: int) -> RenderedFixture:
    """The fixture as rendered, without Jinja; raises FixtureError as rendering would."""
    if "\x00" in source:
        raise FixtureError([Finding(
            "SQLF203",
            "the file contains a NUL character (U+0000); PostgreSQL text cannot hold one: "
            "remove it", path, source.count("\n", 0, source.index("\x00")) + 1)])
    starts = [0, *[m.end() for m in _NEWLINE.finditer(source)]]
    count = len(starts)
    source_map = SourceMap(
        starts=tuple(starts), lines=tuple(range(1, count + 1)), cols=(1,) * count,
        literal=(True,) * count)
    return RenderedFixture(name=name, path=path, seed=seed, sql=source, source_map=source_map,
                           expressions=(), ids=())
