"""Run the project's migrations (`setup_command`) once per session against the test database."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict

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


def run_setup_command(command: str | Sequence[str], dsn: str, cwd: Path) -> None:
    """Run `command` with SQLFIX_DSN and DATABASE_URL set; raises DatabaseError on failure.

    The running interpreter's directory comes first on PATH: under
    `.venv/bin/python -m pytest` (venv not activated) `python`, `alembic` and the
    like must still be the virtualenv's, as the user would expect.
    """
    env = {**os.environ, "SQLFIX_DSN": dsn, "DATABASE_URL": database_url(dsn),
           "PATH": command_path(os.environ.get("PATH", ""))}
    shown = command if isinstance(command, str) else shlex.join(command)
    try:
        done = subprocess.run(
            command, shell=isinstance(command, str), cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
        )
    except OSError as exc:
        raise DatabaseError(f"setup_command {shown!r} could not start: {exc}") from exc
    if done.returncode != 0:
        output = done.stdout[-_OUTPUT_TAIL:].rstrip() or "(no output)"
        raise DatabaseError(
            f"setup_command {shown!r} failed with exit code {done.returncode} "
            f"(run in {cwd}, with SQLFIX_DSN and DATABASE_URL set to the test database). "
            f"Its output:\n{output}")
