"""`@uses(...)`: the marker a test, class or module declares its fixtures with.

`uses(...)` applies pytest's `sqlfix` mark (`@pytest.mark.sqlfix("users.sql")` is the
same thing). sqlfix 0.1.0 called the mark `uses`; that name is generic, so
another plugin's or project's `@pytest.mark.uses("network")` must not start
PostgreSQL. A bare `pytest.mark.uses` whose arguments look like fixture files
gets a `SqlfixDeprecationWarning` and loads nothing (docs/getting-started.md,
"Migrating from pytest.mark.uses").
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path, PurePath

import pytest

from sqlfix.config_keys import LEGACY_MARKER, MARKER


class SqlfixDeprecationWarning(DeprecationWarning):
    """sqlfix's deprecations (shown by pytest by default; filter them by this class)."""


def validate_names(names: Iterable[object], where: str = "uses()") -> tuple[str, ...]:
    """The names, checked: non-empty strings. A TypeError says what was wrong."""
    __tracebackhide__ = True  # the test's line and the message, not sqlfix's frames
    checked = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"{where} takes fixture file names such as 'users.sql', got {name!r}")
        if name != name.strip():  # else "not found; did you mean 'users.sql'?" at the load
            raise TypeError(f"{where}: the fixture file name {name!r} has spaces around it; "
                            f"write {name.strip()!r}")
        checked.append(name)
    return tuple(checked)


def as_names(names: Iterable[object], where: str) -> tuple[str, ...]:
    """`validate_names` for `sqlfix.load()` and `render()`, which also take paths
    (`Path("billing/invoices.sql")`, relative to the fixtures directory) and read them
    with forward slashes, as the fixture names in marks and `-- requires:` are."""
    return validate_names(
        (PurePath(n).as_posix() if isinstance(n, PurePath)
         else os.fspath(n) if isinstance(n, os.PathLike) else n for n in names), where)


def _check_commit(value: object, where: str) -> bool:
    __tracebackhide__ = True
    if not isinstance(value, bool):
        raise TypeError(f"{where}: commit= takes True or False, got {value!r}")
    return value


def uses(*names: str, commit: bool | None = None) -> pytest.MarkDecorator:
    """Declare the fixture files a test needs: `@uses("users.sql", "orders.sql")`.

    Works on a test function, on a test class (every test in it, `unittest.TestCase`
    too) and as `pytestmark = uses(...)` in a module. Markers stack: a class's and a
    method's files are combined, each loaded once. Applies the `sqlfix` mark.

    `commit=True` (the committed mode): the fixtures are committed, so code on
    its own connections (pools, threads, processes) sees them; after the test
    sqlfix restores the baseline. The closest marker that says `commit=` wins
    (`commit=False` on a test turns a class's or module's `commit=True` off).
    Raises TypeError for a name that is not a non-empty string or a non-bool commit.
    """
    __tracebackhide__ = True
    if commit is None:
        if not names:
            raise TypeError("uses() needs at least one fixture file, e.g. uses('users.sql')")
        return _sqlfix_mark().with_args(*validate_names(names))
    return _sqlfix_mark().with_args(
        *validate_names(names), commit=_check_commit(commit, "uses()"))


def _sqlfix_mark() -> pytest.MarkDecorator:
    """`pytest.mark.sqlfix`, also when the plugin is off (`-p no:sqlfix`) and the mark is
    not registered. pytest's unknown-mark check is for typos in mark names, and `@uses`
    makes no typo: under `-W error` or `--strict-markers` it would stop the collection of
    the whole module, its tests without a database too. A test that needs sqlfix's
    fixtures still fails on them (`fixture 'sqlfix_conn' not found`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        try:
            mark: pytest.MarkDecorator = getattr(pytest.mark, MARKER)
            return mark
        except pytest.fail.Exception:  # --strict-markers, the plugin off
            # What pytest.mark.<name> itself returns, without the check (pytest >= 6.2).
            return pytest.MarkDecorator(pytest.Mark(MARKER, (), {}, _ispytest=True),
                                        _ispytest=True)


def _mark_on(item: pytest.Item) -> str:
    # `uses(...)` applies the mark itself: which of the two spellings was written is lost.
    # The test function's first line: its decorators', so a mark on it is named (a class's
    # or module's mark keeps no line of its own in pytest).
    path, line, _ = item.location
    where = f" ({path}:{line + 1})" if line is not None else ""
    return f"the sqlfix mark (@uses or @pytest.mark.sqlfix) on {item.nodeid}{where}"


def requested_names(item: pytest.Item) -> tuple[str, ...]:
    """Every file the item's `sqlfix` marks name: module first, then class, then function."""
    markers = list(item.iter_markers(MARKER))
    names: list[str] = []
    for mark in reversed(markers):  # iter_markers gives the closest (function) first
        unknown = sorted(set(mark.kwargs) - {"commit"})
        if unknown:
            raise TypeError(f"{_mark_on(item)}: unknown keyword argument(s) "
                            f"{', '.join(unknown)}; the mark takes fixture file names and "
                            "commit=True or False")
        names.extend(validate_names(mark.args, _mark_on(item)))
    return tuple(dict.fromkeys(names))


def commit_requested(item: pytest.Item) -> bool:
    """True if the closest `sqlfix` mark that says `commit=` says True (test, class, module)."""
    for mark in item.iter_markers(MARKER):  # closest first
        if "commit" in mark.kwargs:
            return _check_commit(mark.kwargs["commit"], _mark_on(item))
    return False


def legacy_warning(item: pytest.Item, fixtures_dir: Path | None = None
                   ) -> SqlfixDeprecationWarning | None:
    """A warning if the item has a `uses` mark that looks like sqlfix's old one, else None.

    "Looks like": strings ending in `.sql` (and no keyword but 0.1.0's `commit=`), and,
    with `fixtures_dir`, at least one of them a file there. Any other `uses` mark
    (`uses("network")`, another plugin's `uses("schema.sql")`) is left alone.
    """
    for mark in item.iter_markers(LEGACY_MARKER):
        args = mark.args
        if not args or set(mark.kwargs) - {"commit"} or not all(
            isinstance(a, str) and a.strip().endswith(".sql") for a in args
        ):
            continue
        if fixtures_dir is not None and not any(
                (fixtures_dir / a.strip()).is_file() for a in args):
            continue
        shown = ", ".join([*(repr(a) for a in args),
                           *(f"{k}={v!r}" for k, v in mark.kwargs.items())])
        return SqlfixDeprecationWarning(
            f"@pytest.mark.uses({shown}) no longer loads fixtures: sqlfix's mark is now "
            f"`sqlfix`. Write @uses({shown}) with `from sqlfix import uses`, or "
            f"@pytest.mark.sqlfix({shown}); nothing was loaded for {item.nodeid}"
        )
    return None
