"""A full disk, or a cache directory sqlfix may not write: one line naming the place
and what to do, not the copy's error for each of its ~1,000 files (234 KB on one line).

Each case runs `python -m sqlfix server` in a mount namespace of its own (`unshare -m`,
root only) with a small tmpfs where the space runs out; skipped where that is not allowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")


def _server(project: Path, mounts: str, env: dict[str, str], stop_when_ready: bool = False
            ) -> subprocess.CompletedProcess[str]:
    """`python -m sqlfix server` in a mount namespace after `mounts`; with `stop_when_ready`,
    stopped by SIGTERM once it printed its DSNs (a script's `&` job ignores SIGINT, and
    `sqlfix server` leaves it ignored)."""
    (project / "fixtures_sql").mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_") or k == "SQLFIX_PG_BINDIR"}
    command = f"{mounts} exec {sys.executable} -m sqlfix server"
    if stop_when_ready:  # the shell waits for "Press Ctrl-C", then stops the server
        command = (f"{mounts} {{ {sys.executable} -m sqlfix server & }}; pid=$!; "
                   "while sleep 0.2; do grep -q 'Press Ctrl-C' out 2>/dev/null && break; "
                   "kill -0 $pid 2>/dev/null || break; done; kill -TERM $pid; wait $pid")
        command = command.replace("server & }", "server > out & }")
    result = subprocess.run(["unshare", "-m", "sh", "-c", command], cwd=project, text=True,
                            capture_output=True, timeout=180,
                            env={**clean, **env, "PYTHONPATH": str(REPO)})
    if stop_when_ready:
        result.stdout = (project / "out").read_text()
    if "unshare failed" in result.stderr or "mount: " in result.stderr:
        pytest.skip(f"no mount namespace here: {result.stderr.strip()}")
    return result


def test_a_full_cache_directory_is_named(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    result = _server(tmp_path, f"mount -t tmpfs -o size=8m none {tiny} &&",
                     {"SQLFIX_CACHE_DIR": str(tiny / "cache")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(
        f"sqlfix server: could not start the embedded PostgreSQL: no space left on the device "
        f"of sqlfix's cache directory {tiny / 'cache'} (from $SQLFIX_CACHE_DIR): free space "
        "there, or point SQLFIX_CACHE_DIR at a directory with room"), result.stderr
    assert len(result.stderr) < 1000 and "Traceback" not in result.stderr


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder the server's user (postgres or nobody) can pass through: tmp_path is not."""
    folder = Path(tempfile.mkdtemp(prefix="sqlfix-disk-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_full_runtime_folder_is_named(tmp_path: Path, open_dir: Path) -> None:
    # /dev/shm too small, so the server goes to TMPDIR, which is full as well
    tiny = open_dir
    result = _server(tmp_path, "mount -t tmpfs -o size=4m none /dev/shm && "
                               f"mount -t tmpfs -o size=8m none {tiny} &&",
                     {"TMPDIR": str(tiny), "SQLFIX_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f"no space left on the device of the folder the server runs in, {tiny} (/dev/shm "
            "when it has 256 MB free, else the temporary directory, TMPDIR): free space there, "
            "or set TMPDIR") in result.stderr, result.stderr
    assert len(result.stderr) < 1000 and "Traceback" not in result.stderr


def test_a_cache_directory_sqlfix_may_not_write_is_named(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    if subprocess.run(["chattr", "+i", str(cache)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (root writes anywhere else)")
    try:
        result = _server(tmp_path, "", {"SQLFIX_CACHE_DIR": str(cache)})
    finally:
        subprocess.run(["chattr", "-i", str(cache)], check=True)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f"cannot write in sqlfix's cache directory {cache} (from $SQLFIX_CACHE_DIR): "
            "Operation not permitted; point SQLFIX_CACHE_DIR at a directory sqlfix may create "
            "and write") in result.stderr, result.stderr


def test_a_cache_directory_under_a_file_is_named(tmp_path: Path) -> None:
    # [Errno 20] Not a directory, without a word of SQLFIX_CACHE_DIR, before
    (tmp_path / "afile").write_text("")
    cache = tmp_path / "afile" / "cache"
    result = _server(tmp_path, "", {"SQLFIX_CACHE_DIR": str(cache)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f"cannot write in sqlfix's cache directory {cache} (from $SQLFIX_CACHE_DIR): "
            "Not a directory; point SQLFIX_CACHE_DIR at a directory sqlfix may create and "
            "write") in result.stderr, result.stderr


def test_a_tmpdir_the_servers_user_cannot_reach_is_passed_over(tmp_path: Path) -> None:
    # As root the server runs as postgres (or nobody): a TMPDIR inside a 0700 folder
    # (tmp_path's) is closed to it, and initdb failed with "Permission denied". With
    # /dev/shm too small, the server now runs in /tmp instead.
    closed = tmp_path / "closed"
    closed.mkdir()
    assert (tmp_path.stat().st_mode & 0o077) == 0  # pytest makes its folders 0700
    result = _server(tmp_path, "mount -t tmpfs -o size=4m none /dev/shm &&",
                     {"TMPDIR": str(closed), "SQLFIX_CACHE_DIR": str(tmp_path / "cache")},
                     stop_when_ready=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dsn:  host=/tmp/sqlfix-" in result.stdout, result.stdout
