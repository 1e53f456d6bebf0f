"""What PYTHONDONTWRITEBYTECODE=1 costs a pytest run with no sqlfix test (docs/performance.md).

pytest rewrites the asserts of every module of a distribution with a `pytest11` entry
point, sqlfix's included, and keeps the result in its own `.pyc` files
(`__pycache__/*-pytest-<version>.pyc`), not in the ones pip compiled. With
PYTHONDONTWRITEBYTECODE=1 it never writes them, so each run parses and compiles again the
sqlfix modules the plugin loads. An editable install is not affected (its distribution
lists no sqlfix module), so this installs sqlfix from a wheel into a temporary folder put
first on PYTHONPATH.

Counts instructions with `valgrind --tool=callgrind` (M = millions; ~2.3 G a CPU second
on the machine of docs/architecture.md), one run per mode, in a project of one plain
test, `-p no:faker -p no:randomly -p no:cacheprovider`:

- `-p no:sqlfix`, PYTHONDONTWRITEBYTECODE=1;
- sqlfix, PYTHONDONTWRITEBYTECODE=1, no rewritten .pyc (each run pays);
- sqlfix, PYTHONDONTWRITEBYTECODE=1, after one run without it wrote the rewritten .pyc
  (pytest reads them even when it may not write);
- sqlfix, bytecode written (the usual case).

Figures only: never assert them.

    python tests/benchmarks/bench_nobytecode.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:faker",
          "-p", "no:randomly"]


def instructions(project: Path, env: dict[str, str], extra: list[str]) -> float:
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           *PYTEST, *extra], cwd=project, env={**env, "PYTHONHASHSEED": "0"},
                          capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return float(found.group(1)) / 1e6


def drop_rewritten(target: Path) -> None:
    for pyc in target.rglob("*-pytest-*.pyc"):
        pyc.unlink()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        target, project = Path(folder) / "site", Path(folder) / "project"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        str(target), str(REPO)], check=True)
        project.mkdir()
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "test_plain.py").write_text("def test_plain():\n    pass\n")
        env = {**os.environ, "PYTHONPATH": str(target)}
        no_write = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
        subprocess.run(PYTEST, cwd=project, env=no_write, capture_output=True)  # warm-up
        rows = {"-p no:sqlfix, PYTHONDONTWRITEBYTECODE=1":
                instructions(project, no_write, ["-p", "no:sqlfix"])}
        drop_rewritten(target)
        rows["sqlfix, PYTHONDONTWRITEBYTECODE=1"] = instructions(project, no_write, [])
        subprocess.run(PYTEST, cwd=project, env={**env, "PYTHONDONTWRITEBYTECODE": ""},
                       capture_output=True)  # writes the rewritten .pyc
        rows["sqlfix, PYTHONDONTWRITEBYTECODE=1 after a run that wrote them"] = instructions(
            project, no_write, [])
        rows["sqlfix, bytecode written"] = instructions(
            project, {**env, "PYTHONDONTWRITEBYTECODE": ""}, [])
    base = rows["-p no:sqlfix, PYTHONDONTWRITEBYTECODE=1"]
    for name, count in rows.items():
        print(f"{name:62s} {count:8.1f} M  {count - base:+7.1f} M")


if __name__ == "__main__":
    main()
