"""Run the project's migrations (`setup_command`) once per session against the test database."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict

from sqlfix.database.server import wait_exit
from sqlfix.errors import DatabaseError

_OUTPUT_TAIL = 4000


def database_url(dsn: str) -> str:
    """The DSN as a `postgresql://` URL (what DATABASE_URL conventionally holds).

    A unix-socket host goes in the query string, where libpq and SQLAlchemy look for it.
    """
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    dbname = quote(params.pop("dbname", ""), safe="")
    host = params.pop("host", "")
    port = params.pop("port", "")
    if host.startswith("/"):
        params = {"host": host, **({"port": port} if port else {}), **params}
        netloc = ""
    else:
        netloc = host + (f":{port}" if port else "")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}{netloc}/{dbname}{query}"


def command_path(path: str) -> str:
    """`path` with the directory of the running Python (sys.executable) first."""
    here = os.path.dirname(sys.executable)
    if not here:
        return path
    rest = [p for p in path.split(os.pathsep) if p and p != here]
    return os.pathsep.join([here, *rest])


def run_setup_command(
    command: str | Sequence[str], dsn: str, cwd: Path,
    watch: Callable[[int | None], None] | None = None, where: str = "",
) -> None:
    """Run `command` with SQLFIX_DSN and DATABASE_URL set; raises DatabaseError on failure.

    The running interpreter's directory comes first on PATH: under
    `.venv/bin/python -m pytest` (venv not activated) `python`, `alembic` and the
    like must still be the virtualenv's, as the user would expect.

    The command runs in a process group of its own, stopped whole (SIGTERM, then SIGKILL
    after `_STOP_GRACE` seconds) when the run is interrupted: killing only the shell of
    `sleep 4; alembic upgrade head` left the rest running against a server about to be
    removed. `watch(pgid)` is told the group while it runs, and `watch(None)` after (the
    embedded server's watchdog stops it if this process dies). `where`: the file or
    option that set the command, for the errors.
    """
    env = {**os.environ, "SQLFIX_DSN": dsn, "DATABASE_URL": database_url(dsn),
           "PATH": command_path(os.environ.get("PATH", ""))}
    shown = command if isinstance(command, str) else shlex.join(command)
    shown = f"{shown!r} (from {where})" if where else repr(shown)
    # Output to a file, not a pipe: the run goes on when the command exits, even if a
    # process it left in the background (`some-daemon &`) still holds its output.
    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen(
                command, shell=isinstance(command, str), cwd=cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group, and no terminal: it asks nothing
            )  # fmt: skip
        except OSError as exc:
            raise DatabaseError(f"setup_command {shown} could not start: {exc}") from exc
        if watch is not None:
            watch(proc.pid)
        try:
            code = wait_exit(proc, None)  # not Popen.wait(): see wait_exit
        except BaseException:  # Ctrl-C, the `server` command's SIGTERM: the whole group goes
            stop_group(proc)
            raise
        finally:
            if watch is not None:
                watch(None)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if code != 0:
        text = text[-_OUTPUT_TAIL:].rstrip() or "(no output)"
        raise DatabaseError(
            f"setup_command {shown} failed with exit code {code} "
            f"(run in {cwd}, with SQLFIX_DSN and DATABASE_URL set to the test database). "
            f"Its output:\n{text}")


_STOP_GRACE = 5.0  # seconds a stopped setup_command has to end before SIGKILL


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `proc`'s process group (it leads one), SIGKILL to what is left of it
    after `_STOP_GRACE` seconds, or at once if a second Ctrl-C cuts the wait short;
    reaps `proc`."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + _STOP_GRACE
        while time.monotonic() < deadline:
            wait_exit(proc, 0)  # reaps it: a zombie would still be in the group
            try:
                os.killpg(pgid, 0)  # anyone left in the group?
            except ProcessLookupError:
                return
            time.sleep(0.02)
    finally:  # also when interrupted again: nothing of it may outlive the run
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        wait_exit(proc, None)
