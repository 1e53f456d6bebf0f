"""`@uses(...)`: the marker a test, class or module declares its fixtures with."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

MARKER = "uses"
MARKER_HELP = (
    "uses(*fixture_files, commit=False): load these .sql fixtures (relative to the fixtures "
    "directory) into the test's rollback boundary, e.g. @uses('users.sql', 'orders.sql'); "
    "commit=True commits them for code on its own connections and restores the baseline after"
)


def validate_names(names: Iterable[object], where: str = "uses()") -> tuple[str, ...]:
    """The names, checked: non-empty strings. A TypeError says what was wrong."""
    checked = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"{where} takes fixture file names such as 'users.sql', got {name!r}")
        checked.append(name)
    return tuple(checked)


def _check_commit(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: commit= takes True or False, got {value!r}")
    return value


def uses(*names: str, commit: bool | None = None) -> pytest.MarkDecorator:
    """Declare the fixture files a test needs: `@uses("users.sql", "orders.sql")`.

    Works on a test function, on a test class (every test in it) and as
    `pytestmark = uses(...)` in a module. Markers stack: a class's and a
    method's files are combined, each loaded once.

    `commit=True` (the committed mode): the fixtures are committed, so code on
    its own connections (pools, threads, processes) sees them; after the test
    sqlfix restores the baseline. The closest marker that says `commit=` wins
    (`commit=False` on a test turns a class's or module's `commit=True` off).
    Raises TypeError for a name that is not a non-empty string or a non-bool commit.
    """
    if commit is None:
        if not names:
            raise TypeError("uses() needs at least one fixture file, e.g. uses('users.sql')")
        return pytest.mark.uses.with_args(*validate_names(names))
    return pytest.mark.uses.with_args(
        *validate_names(names), commit=_check_commit(commit, "uses()"))


def requested_names(item: pytest.Item) -> tuple[str, ...]:
    """Every file the item's `uses` markers name: module first, then class, then function."""
    markers = list(item.iter_markers(MARKER))
    names: list[str] = []
    for mark in reversed(markers):  # iter_markers gives the closest (function) first
        names.extend(validate_names(mark.args, f"@uses on {item.nodeid}"))
    return tuple(dict.fromkeys(names))


def commit_requested(item: pytest.Item) -> bool:
    """True if the closest `uses` marker that says `commit=` says True (function, class, module)."""
    for mark in item.iter_markers(MARKER):  # closest first
        if "commit" in mark.kwargs:
            return _check_commit(mark.kwargs["commit"], f"@uses on {item.nodeid}")
    return False
