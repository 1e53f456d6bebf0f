"""Helpers shared by the test folders (imported as `helpers`: tests/ is on sys.path via conftest.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlfix.database import binaries as binaries_module
from sqlfix.database.binaries import Binaries

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
EXAMPLE_FIXTURES = REPO / "fixtures_sql"
# pytester runs whose outcome depends on test order turn pytest-randomly off.
NO_RANDOM = ("-p", "no:randomly")


def hidden_install(source: Binaries, folder: Path, tag: str = "") -> Binaries:
    """A copy of `source` under `folder` (a 0700 tmp_path, like a venv under /root), its
    layout kept (a wheel's RPATH), with content of its own (see `make_unique`)."""
    layout = binaries_module._layout(source)
    for part in layout.parts:
        if (layout.root / part).is_dir():
            shutil.copytree(layout.root / part, folder / "install" / part, symlinks=True)
    hidden = Binaries(folder / "install" / layout.bindir, source.version)
    make_unique(hidden, tag or str(folder))
    return hidden


def make_unique(binaries: Binaries, tag: str) -> None:
    """Bytes appended to `postgres` (an ELF file runs the same): root's private copy is
    named by content, and a test that removes its copy must not remove the one other
    tests' servers run from (the pip-only job's servers all run from that copy)."""
    postgres = binaries.postgres.resolve()
    data = postgres.read_bytes()
    postgres.unlink()  # it may be a hard link into the original installation
    postgres.write_bytes(data + b"\0sqlfix test " + tag.encode())
    postgres.chmod(0o755)


@contextmanager
def blackhole(held: list[socket.socket] | None = None) -> Iterator[int]:
    """The port of a TCP server on 127.0.0.1 that accepts connections and never answers
    (a stopped PostgreSQL behind a proxy or tunnel): a client waits for as long as its
    connect timeout lets it. The connections are held (in `held`, to count them) until
    the block ends."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    server.settimeout(0.1)  # to see `stop` between accepts
    held = [] if held is None else held
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()
        for conn in held:
            conn.close()


@contextmanager
def sqlfix_command(project: Path, *args: str, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """`python -m sqlfix ARGS` started in `project`, from this checkout, without the outer
    run's SQLFIX_* variables (but the version matrix's SQLFIX_PG_BINDIR); text pipes. Killed
    if the block leaves it running."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SQLFIX_") or k == "SQLFIX_PG_BINDIR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqlfix", *args], cwd=project, env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def setup_command_that_waits(project: Path) -> Path:
    """A pyproject.toml whose setup_command touches a file, then sleeps a minute: the file
    says the command is inside the session's preparation (a server is up by then)."""
    reached = project / "reached"
    (project / "pyproject.toml").write_text(
        "[tool.sqlfix]\nsetup_command = ['python', '-c', "
        f"'import pathlib, time; pathlib.Path(r\"{reached}\").touch(); time.sleep(60)']\n")
    return reached


def wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    """Until `path` exists; AssertionError with the process's output if it ends first."""
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not path.exists():
        if proc.poll() is None:  # else communicate() would wait for it without limit
            proc.kill()
        raise AssertionError(f"{path} never appeared; the output: {proc.communicate()}")
