"""What to load, in which order: `-- requires:` headers and their topological order.

Pure: the caller supplies a function that gives the requirements of a name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlfix.errors import Finding, FixtureError

_REQUIRES = re.compile(r"^\s*--\s*requires\s*:(?P<names>.*)$", re.IGNORECASE)
_ANY_REQUIRES = re.compile(r"--\s*requires\s*:", re.IGNORECASE)
_EXPECT_ERROR = re.compile(
    r"^\s*--\s*sqlfix\s*:\s*expect-error\s+(?P<state>[0-9A-Z]{5})\b", re.IGNORECASE)


@dataclass(frozen=True)
class Requirement:
    name: str
    line: int
    col: int


def parse_requires(text: str) -> tuple[Requirement, ...]:
    """Names from `-- requires: a.sql, b.sql` lines of the header.

    The header is the comment and blank lines before the first line of SQL or
    template code; requirements further down would be easy to miss, so they
    are not read.
    """
    found: list[Requirement] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            break
        match = _REQUIRES.match(line)
        if not match:
            continue
        start = match.start("names")
        for raw in match.group("names").split(","):
            name = raw.strip()
            if name:
                col = start + len(raw) - len(raw.lstrip()) + 1
                found.append(Requirement(name, lineno, col))
            start += len(raw) + 1
    return tuple(found)


def parse_expect_error(text: str) -> str | None:
    """The SQLSTATE of a `-- sqlfix: expect-error 23503` header line, if there is one.

    A negative example: `sqlfix check` passes it when loading raises that SQLSTATE.
    Read from the header only, as `-- requires:` is.
    """
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            return None
        match = _EXPECT_ERROR.match(line)
        if match:
            return match.group("state").upper()
    return None


# A header line meant as expect-error (`-- sqlfix: noqa` and render's `-- sqlfix: NAME
# (seed N)` lines are others)
_DIRECTIVE = re.compile(r"^\s*--\s*sqlfix\s*:\s*expect", re.IGNORECASE)


def unread_directives(text: str) -> tuple[tuple[int, int, str], ...]:
    """(line, col, message) of each `-- sqlfix: expect...` header line `parse_expect_error`
    skips.

    A misspelt one would leave a negative example to fail `check` as an ordinary fixture.
    """
    found = []
    expected = False
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            break
        if not _DIRECTIVE.match(line):
            continue
        col = len(line) - len(line.lstrip()) + 1
        if _EXPECT_ERROR.match(line) and not expected:
            expected = True
        elif _EXPECT_ERROR.match(line):
            found.append((lineno, col, "a second `-- sqlfix: expect-error` line is not read: "
                          "a fixture expects one SQLSTATE, the first; keep one line"))
        else:
            found.append((lineno, col, "this `-- sqlfix: expect...` line is not read: write "
                          "`-- sqlfix: expect-error SQLSTATE`, with a five-character SQLSTATE "
                          "such as 23503 (not a condition name such as foreign_key_violation)"))
    return tuple(found)


def misplaced_requires(text: str) -> tuple[tuple[int, int], ...]:
    """(line, col) of `-- requires:` lines below the header, which `parse_requires` ignores."""
    if _ANY_REQUIRES.search(text) is None:  # a large dump: no line-by-line walk for nothing
        return ()
    found = []
    in_header = True
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            in_header = False
        elif not in_header and _REQUIRES.match(line):
            found.append((lineno, len(line) - len(line.lstrip()) + 1))
    return tuple(found)


RequiresOf = Callable[[str], tuple[Requirement, ...]]
PathOf = Callable[[str], str]


def load_order(
    requested: Iterable[str],
    requires_of: RequiresOf,
    path_of: PathOf,
    exists: Callable[[str], bool],
) -> list[str]:
    """Every fixture needed by `requested`, requirements first, each once.

    Depth-first in request order, so the order is stable: the same request
    always gives the same list. A cycle or a missing requirement raises
    FixtureError naming the chain.
    """
    order: list[str] = []
    done: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in chain:
            loop = " -> ".join((*chain[chain.index(name) :], name))
            req = next(r for r in requires_of(chain[-1]) if r.name == name)
            raise FixtureError(
                [
                    Finding(
                        "SQLF302",
                        f"requires forms a cycle: {loop}; remove one of these requirements",
                        path_of(chain[-1]),
                        req.line,
                        req.col,
                    )
                ]
            )
        for req in requires_of(name):
            if not exists(req.name):
                via = " -> ".join((*chain, name, req.name))
                raise FixtureError(
                    [
                        Finding(
                            "SQLF301",
                            f"requires names a missing fixture {req.name!r} ({via}); "
                            "fix the name or add the file",
                            path_of(name),
                            req.line,
                            req.col,
                        )
                    ]
                )
            visit(req.name, (*chain, name))
        done.add(name)
        order.append(name)

    for name in requested:
        visit(name, ())
    return order
