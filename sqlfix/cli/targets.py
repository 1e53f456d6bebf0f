"""The fixture files a command works on, and their requirements, render and load plan.

`lint` and `check` take files or directories. A file under the fixtures directory
is the fixture of that name; a `.sql` file elsewhere is rendered under its own
file name, and its `-- requires:` names are looked up in the fixtures directory.
Everything goes through the one `FixtureLibrary` pipeline (render, guard,
requires order, id() collisions): nothing here judges SQL itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.library import (
    CompiledFixture,
    FixtureLibrary,
    LoadPlan,
    check_id_collisions,
    display_dir,
    display_path,
)
from sqlfix.compiler.plan import Requirement, load_order
from sqlfix.errors import ConfigError, Finding, FixtureError, Severity


class UsageError(ConfigError):
    """A command-line argument names nothing usable (exit code 2)."""


@dataclass(frozen=True)
class Target:
    """One fixture file to check."""

    key: str  # its name in the requires graph: the fixture name, or its path if outside
    path: Path
    name: str  # the name it renders under (its seed derives from it)
    outside: bool = False  # not under the fixtures directory

    @property
    def shown(self) -> str:
        return display_path(self.path)


def _sql_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.sql") if p.is_file())


@dataclass
class Workspace:
    """The fixtures directory's library plus any outside files, one requires graph."""

    library: FixtureLibrary
    _outside: dict[str, Target] = field(default_factory=dict)
    _libraries: dict[Path, FixtureLibrary] = field(default_factory=dict)
    _checked: dict[str, tuple[CompiledFixture | None, list[Finding]]] = field(default_factory=dict)

    @property
    def directory(self) -> FixtureDir:
        return self.library.directory

    def targets(self, paths: Sequence[Path]) -> list[Target]:
        """Targets for files and directories (default: the fixtures directory), schema skipped."""
        if not paths:
            root = self.directory.root
            if not root.is_dir():
                shown = display_dir(root)
                what = "is not a directory" if root.exists() else "does not exist"
                raise UsageError(
                    f"the fixtures directory {shown} {what}; pass fixture files or "
                    "directories, or set fixtures_dir in [tool.sqlfix] or sqlfix_fixtures_dir in "
                    "pytest's configuration (or --fixtures DIR)"
                )
            paths = [self.directory.root]
        found: dict[Path, Target] = {}
        for path in paths:
            for file in self._files(path):
                if not self.directory.is_schema(file):
                    found.setdefault(file.resolve(), self._target(file))
        return sorted(found.values(), key=lambda t: (t.outside, t.key))

    def _files(self, path: Path) -> list[Path]:
        if path.is_dir():
            return _sql_files(path)
        if path.is_file():
            return [path]
        raise UsageError(f"{path}: no such file or directory")

    def _target(self, file: Path) -> Target:
        name = self.directory.name_of(file)
        if name is not None:
            return Target(name, file, name)
        key = display_path(file)
        if self.library.exists(key):  # a fixture of the same name: keep the keys apart
            key = str(file.resolve())
        target = Target(key, file, file.name, outside=True)
        self._outside[key] = target
        return target

    def _library_for(self, target: Target) -> FixtureLibrary:
        if not target.outside:
            return self.library
        folder = target.path.parent.resolve()
        if folder not in self._libraries:
            main = self.library
            self._libraries[folder] = FixtureLibrary(
                FixtureDir(folder), main.seed, main.now, main.locale
            )
        return self._libraries[folder]

    def _target_of(self, key: str) -> Target:
        return self._outside.get(key) or Target(key, self.library.path(key), key)

    def check(self, target: Target) -> tuple[CompiledFixture | None, list[Finding]]:
        """Render and guard one file (cached): `FixtureLibrary.check`."""
        if target.key not in self._checked:
            library = self._library_for(target)
            self._checked[target.key] = library.check(target.name)
        return self._checked[target.key]

    def requires(self, key: str) -> tuple[Requirement, ...]:
        target = self._outside.get(key)
        if target is not None:
            return self._library_for(target).requires(target.name)
        return self.library.requires(key)

    def order(self, target: Target) -> list[Target]:
        """The target and its requirements, in load order; raises FixtureError."""
        keys = load_order(
            [target.key],
            self.requires,
            lambda key: self._target_of(key).shown,
            self.library.exists,
        )
        return [self._target_of(key) for key in keys]

    def id_collisions(self, order: Iterable[Target]) -> None:
        """Raise FixtureError if two fixtures loaded together give two labels one id."""
        compiled = [self.check(t)[0] for t in order]
        check_id_collisions(c for c in compiled if c is not None)

    def plan(self, target: Target) -> LoadPlan:
        """The checked load plan of one target; raises FixtureError.

        Reuses what `check` compiled: `sqlfix check` lints every file first, and a
        large fixture is not rendered and guarded a second time to be loaded.
        """
        fixtures = tuple(self._compiled(t) for t in self.order(target))
        check_id_collisions(fixtures)
        return LoadPlan(fixtures)

    def _compiled(self, target: Target) -> CompiledFixture:
        compiled, findings = self.check(target)
        errors = [f for f in findings if f.severity is Severity.ERROR]
        if errors or compiled is None:
            raise FixtureError(errors)
        return compiled
