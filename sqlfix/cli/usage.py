"""Which fixtures the tests name: `uses("...")` read from the test files' source (no import).

Each `test_*.py`, `*_test.py` and `conftest.py` under the tests directory is
parsed with `ast`; a call to `uses(...)`, `pytest.mark.sqlfix(...)`,
`sqlfix.uses(...)`, `sqlfix.load(...)` or `sqlfix.render(...)` names the
fixtures given as string literals. `pytest.mark.uses(...)` was sqlfix's mark
before 0.2 and loads nothing now, so it names nothing here. Names built at run
time (`uses(*NAMES)`) are not seen: a fixture used only that way is reported
unused (SQLF601).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlfix.compiler.discovery import FixtureDir, FixtureNotFound
from sqlfix.compiler.library import display_path
from sqlfix.errors import Finding, Severity

UNUSED, MISSING = "SQLF601", "SQLF602"
_HANDLE_METHODS = frozenset({"load", "render"})  # on the test's `sqlfix` handle
_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})


@dataclass(frozen=True)
class Use:
    """A fixture name written in a test file."""

    name: str
    path: str  # the test file, as shown
    line: int
    col: int
    call: str  # "uses" or "sqlfix.load" ...


def find_test_files(root: Path) -> list[Path]:
    """The files pytest would read tests and fixtures from, under `root`, sorted."""
    return sorted(
        p
        for p in root.rglob("*.py")
        if (p.name.startswith("test_") or p.name.endswith("_test.py") or p.name == "conftest.py")
        and not any(
            part in _SKIP_DIRS or part.startswith(".")
            for part in p.relative_to(root).parent.parts  # not root's own path: it may be ../x
        )
    )


@dataclass(frozen=True)
class _Names:
    """What a test file calls sqlfix's `uses` and the modules it lives in."""

    uses: frozenset[str]  # `uses`, or its alias from `from sqlfix import uses as u`
    modules: frozenset[str]  # names of the sqlfix module: `sqlfix.uses(...)`
    marks: frozenset[str]  # pytest's `mark`: `pytest.mark.sqlfix(...)`


def _names(tree: ast.AST) -> _Names:
    uses, modules, marks = {"uses"}, {"sqlfix"}, {"pytest.mark", "mark"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "sqlfix":
            uses.update(a.asname or a.name for a in node.names if a.name == "uses")
        elif isinstance(node, ast.ImportFrom) and node.module == "pytest":
            marks.update(a.asname or a.name for a in node.names if a.name == "mark")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sqlfix":
                    modules.add(alias.asname or "sqlfix")
                elif alias.name == "pytest" and alias.asname:
                    marks.add(f"{alias.asname}.mark")
    return _Names(frozenset(uses), frozenset(modules), frozenset(marks))


def _call_name(func: ast.expr, names: _Names) -> str | None:
    """`uses`, `pytest.mark.sqlfix`, `sqlfix.load`, ... or None for other calls."""
    if isinstance(func, ast.Name):
        return func.id if func.id in names.uses else None
    if not isinstance(func, ast.Attribute):
        return None
    holder = ast.unparse(func.value)
    if (func.attr == "uses" and holder in names.modules) or (
        func.attr == "sqlfix" and holder in names.marks
    ):
        return ast.unparse(func)
    if func.attr in _HANDLE_METHODS and isinstance(func.value, ast.Name):
        return f"sqlfix.{func.attr}" if func.value.id == "sqlfix" else None
    return None


def _column(lines: list[str], node: ast.expr) -> int:
    """1-based character column (ast gives a byte offset into the UTF-8 line)."""
    line = lines[node.lineno - 1] if node.lineno <= len(lines) else ""
    return len(line.encode()[: node.col_offset].decode("utf-8", errors="replace")) + 1


def _uses_in(source: str, shown: str) -> Iterator[Use]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return  # pytest reports a test file that does not parse
    lines = source.splitlines()
    names = _names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        call = _call_name(node.func, names)
        if call is None:
            continue
        for arg in node.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield Use(arg.value, shown, arg.lineno, _column(lines, arg), call)


def scan(root: Path) -> list[Use]:
    """Every fixture name the test files under `root` write, in file and line order."""
    found: list[Use] = []
    for path in find_test_files(root):
        try:
            source = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            continue
        found.extend(_uses_in(source, display_path(path)))
    return sorted(found, key=lambda u: (u.path, u.line, u.col))


def missing(uses: list[Use], directory: FixtureDir) -> list[Finding]:
    """SQLF602: a name in a test that is no fixture file."""
    findings = []
    for use in uses:
        try:
            directory.resolve(use.name)
        except FixtureNotFound as exc:
            findings.append(
                Finding(
                    MISSING,
                    f"{use.call}() names a missing fixture: {exc}; fix the name or add the file",
                    use.path,
                    use.line,
                    use.col,
                )
            )
    return findings


def unused(candidates: list[tuple[str, str]], used: set[str], tests_shown: str) -> list[Finding]:
    """SQLF601 for each (fixture name, shown path) that is not in `used`."""
    return [
        Finding(
            UNUSED,
            f"fixture {name!r} is not used: no test in {tests_shown} names it in uses() and "
            "no fixture requires it; use it, or delete it if it is dead data",
            shown,
            1,
            1,
            Severity.WARNING,
        )
        for name, shown in candidates
        if name not in used
    ]
