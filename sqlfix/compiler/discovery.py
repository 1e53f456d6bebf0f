"""Fixture names to files: `"billing/invoices.sql"` under the fixtures directory."""

from __future__ import annotations

import difflib
import os
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path, PurePosixPath

from sqlfix.errors import ConfigError, Finding, FixtureError


class FixtureNotFound(ConfigError):
    """A fixture name names no file, or a file outside the fixtures directory."""


class FixtureOutside(FixtureNotFound):
    """A fixture path under the directory resolves (through a symlink) outside it."""


@dataclass(frozen=True)
class FixtureDir:
    root: Path
    exclude: frozenset[Path] = field(default_factory=frozenset)  # schema files live here too

    def resolve(self, name: str) -> Path:
        """The file of fixture `name`; raises FixtureNotFound saying what to do."""
        bad = next((c for c in name if unicodedata.category(c) == "Cc"), None)
        if bad is not None:
            # The name is printed in `-- sqlfix: NAME` headers and `path:line:col` lines:
            # a newline in it would start a line of SQL in `render | psql`
            raise FixtureNotFound(
                f"fixture name {name!r} holds a control character ({bad!r}); rename the "
                "file without it")
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or Path(name).is_absolute():
            raise FixtureNotFound(
                f"fixture name {name!r} leaves the fixtures directory {self.root}; "
                "name fixtures relative to it, e.g. 'users.sql' or 'billing/invoices.sql'"
            )
        path = self.root.joinpath(*pure.parts)
        try:
            found = path.is_file()
        except OSError:  # a name too long for the file system, or one it cannot hold
            found = False
        if not found:
            raise FixtureNotFound(self._missing_message(name))
        self.check_inside(path, f"fixture {name!r}")
        if self.is_schema(path):
            raise FixtureNotFound(
                f"{name!r} is a schema file ([tool.sqlfix] schema): it is applied once per "
                "session, before any test, and cannot be loaded as a fixture"
            )
        return path

    def check_inside(self, path: Path, what: str) -> None:
        """Raise FixtureNotFound if `path` (under the root) resolves outside it.

        A symlink, to a file or through a folder, would load a file that no one
        reviewing the fixtures directory sees; both paths are named.
        """
        real, root = path.resolve(), self.root.resolve()
        if not real.is_relative_to(root):
            raise FixtureOutside(
                f"{what} is {path}, which resolves (through a symbolic link) to {real}, "
                f"outside the fixtures directory {root}; sqlfix loads only files inside "
                "it: copy the file into the directory instead of linking to it"
            )

    def check_schema_files(self) -> None:
        """Schema files placed under the fixtures directory must resolve inside it too."""
        root = Path(os.path.abspath(self.root))
        for path in sorted(self.exclude):
            if Path(os.path.abspath(path)).is_relative_to(root) and path.exists():
                self.check_inside(path, f"schema file {path.name!r}")

    def _missing_message(self, name: str) -> str:
        if not self.root.is_dir():
            return (
                f"fixture {name!r}: the fixtures directory {self.root} does not exist; "
                "create it, or set fixtures_dir in [tool.sqlfix] or sqlfix_fixtures_dir in "
                "pytest's configuration (or --sqlfix-fixtures)"
            )
        names = self.names()
        # `fixtures_sql/users.sql`: a path from the project root, not from the directory
        below = next((name.split("/", i)[-1] for i in range(1, name.count("/") + 1)
                      if name.split("/", i)[-1] in names), None)
        # `users` for users.sql: too short for difflib's cutoff, and surely meant
        suffixed = f"{name}.sql" if f"{name}.sql" in names else None
        close = [c for c in (below or suffixed,) if c] or difflib.get_close_matches(
            name[:300], names, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        if below:
            hint += " (names are relative to the fixtures directory)"
        shown = name if len(name) <= 200 else f"{name[:60]}...({len(name):,} characters)"
        return f"fixture {shown!r} not found in {self.root}{hint}"

    def names(self) -> list[str]:
        """Every fixture name under the directory, sorted, schema files left out."""
        if not self.root.is_dir():
            return []
        excluded = self._schema_files
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*.sql")
            if p.is_file() and p.resolve() not in excluded
        )

    def name_of(self, path: Path) -> str | None:
        """The fixture name of a file, or None when it is outside the directory."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None

    def is_schema(self, path: Path) -> bool:
        return path.resolve() in self._schema_files

    @cached_property
    def _schema_files(self) -> frozenset[Path]:
        return frozenset(p.resolve() for p in self.exclude)


@lru_cache(maxsize=4096)  # called for every name of every test's plan
def normalize_name(name: str) -> str:
    """One spelling per fixture: `./users.sql` and `users.sql` are the same file."""
    text = str(PurePosixPath(name.replace("\\", "/")))  # drops `.` parts, keeps a leading /
    return text if text != "." else name


def read_sql(path: Path) -> str:
    """A fixture's text with newlines normalised (Jinja does the same, keeping columns true).

    A byte-order mark at the start is dropped (editors on Windows write one).
    Raises FixtureError (SQLF001) naming the file when it is not UTF-8 text.
    """
    try:
        return path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise FixtureError([Finding(
            "SQLF001", f"not valid UTF-8 text (byte {exc.start}); save the file as UTF-8",
            os.path.relpath(path), 1, 1)]) from None


def dedupe(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))
