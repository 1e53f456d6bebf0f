"""The parts import only downward: compiler < database < front ends (docs/architecture.md).

Imports are read with `ast` from the source, so a forbidden import fails here even when it
sits inside a function or under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO

PACKAGE = REPO / "sqlfix"
FRONT_ENDS = ("sqlfix.pytest_plugin", "sqlfix.cli")
# What each part must never import (itself and the top-level modules are always allowed).
FORBIDDEN = {
    "sqlfix.compiler": ("sqlfix.database", *FRONT_ENDS),
    "sqlfix.database": FRONT_ENDS,
    "sqlfix.pytest_plugin": ("sqlfix.cli",),
    "sqlfix.cli": ("sqlfix.pytest_plugin",),
}
# The top-level modules (public API, errors, configuration) sit under every part, except
# `__main__`, which is the command line's way in.
TOP_LEVEL_FORBIDDEN = ("sqlfix.database", *FRONT_ENDS)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module `source` imports, absolute, with its line: `from .x import y` resolved."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from sqlfix import database` imports the subpackage, not a name.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            found.append((node.lineno, base))
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        part = next((p for p in FORBIDDEN if module == p or module.startswith(p + ".")), None)
        if part is not None:
            banned = FORBIDDEN[part]
        elif module == "sqlfix.__main__":
            continue
        else:
            banned = TOP_LEVEL_FORBIDDEN
        source = path.read_text(encoding="utf-8")
        for line, name in imported_modules(source, module, path.name == "__init__.py"):
            hit = next((b for b in banned if name == b or name.startswith(b + ".")), None)
            if hit:
                found.append(f"{path.relative_to(root.parent)}:{line}: {module} imports {name}")
    return sorted(set(found))


def test_no_part_imports_upward():
    assert violations() == []


@pytest.mark.parametrize(
    ("where", "line"),
    [
        ("compiler/render.py", "from sqlfix.database.boundary import Boundary"),
        ("compiler/guard.py", "from ..database import loader"),
        ("compiler/plan.py", "    import sqlfix.cli.main"),
        ("compiler/seeds.py", "from sqlfix import pytest_plugin"),
        ("database/loader.py", "from sqlfix.pytest_plugin.handle import Sqlfix"),
        ("database/session.py", "from ..cli import lint"),
        ("config.py", "from sqlfix.database.session import DatabaseSession"),
        ("errors.py", "from .cli.main import main"),
    ],
)
def test_a_forbidden_import_is_caught(tmp_path: Path, where: str, line: str):
    """The check itself can fail: plant one forbidden import in a copy of the package."""
    import shutil

    copy = tmp_path / "sqlfix"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / where
    body = target.read_text(encoding="utf-8")
    if line.startswith("    "):
        body += f"\n\ndef _planted() -> None:\n{line}\n"
    else:
        body += f"\n{line}\n"
    target.write_text(body, encoding="utf-8")
    found = violations(copy)
    assert len(found) >= 1
    assert all(f.startswith(f"sqlfix/{where}:") for f in found), found


def test_every_module_belongs_to_a_part():
    """A new module goes into a part's folder (or is one of the few top-level ones)."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "config.py", "config_keys.py", "errors.py",
                   "marker.py"]
    parts = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert parts == ["cli", "compiler", "database", "pytest_plugin"]
