"""Compiled fixtures on disk: render + guard once per (content, seed, settings, versions).

Shared by pytest-xdist workers and by later runs. Safe to delete at any time:
an entry is only ever a copy of what compiling the file gives. Each entry's file
name is a hash of everything the compiled result depends on (the file's text,
its name and the path shown in messages, the seed, `now`, the Faker locale, the
versions of sqlfix, Jinja and Faker, and this format), so a change of any of
them misses the old entry rather than invalidating it; old entries are left for
the user to delete with the directory. Writes are atomic (a temporary file
renamed into place), so a reader never sees half an entry; an unreadable entry
counts as a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

FORMAT = "fixtures-v2"  # bump when CompiledFixture or anything it holds changes shape


@cache
def _versions() -> str:
    """Versions of what renders: a new Faker may give other fake values for one seed."""
    found = []
    for dist in ("sqlfix", "jinja2", "Faker", "pglast"):
        try:
            found.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"{dist}=-")
    # A checkout of sqlfix itself keeps its version number while the compiler changes.
    for source in sorted(Path(__file__).parent.glob("*.py")):
        stat = source.stat()
        found.append(f"{source.name}={stat.st_mtime_ns}/{stat.st_size}")
    return ";".join(found)


def cache_key(parts: Sequence[str]) -> str:
    """The entry name for one compile: sha256 over `parts`, the versions and the format."""
    digest = hashlib.sha256()
    for part in (FORMAT, _versions(), *parts):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


class DiskCache:
    """A directory of pickled compile results; `get` misses on anything unexpected."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / FORMAT

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pickle"

    def get(self, key: str) -> Any | None:
        try:
            with open(self._path(key), "rb") as handle:
                return pickle.load(handle)
        except Exception:  # noqa: BLE001 - a damaged file fails in many ways (OverflowError...)
            return None  # absent, half-deleted, damaged, another layout: compile again

    def put(self, key: str, value: Any) -> None:
        """Store `value`; a failure to write (read-only disk, full disk) is ignored."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as handle:
                pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temp, path)  # atomic: readers see the old entry or the new one
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            with contextlib.suppress(OSError):
                os.unlink(temp)
