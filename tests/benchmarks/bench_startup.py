"""What installing sqlfix costs a pytest run with no sqlfix test (issue #12: under 20 ms).

Runs the same pytest command on two projects of plain tests (no sqlfix test, no
fixtures directory, a `pytest.ini`): one test, and `--tests T` (default 200), with
and without sqlfix, and splits the cost into a fixed part (the one-test project) and
a per-test part (the slope between the two projects), side by side:

    fixed    without  <a>   with  <b>   ratio b/a   sqlfix b-a
    per test without  <c>   with  <d>   ratio d/c   sqlfix d-c

Two pairs:

- as installed: every installed plugin; "without" adds `-p no:sqlfix` (pytest then
  never imports sqlfix). `-p no:faker -p no:randomly` in both: Faker is an extra
  (docs/getting-started.md), its plugin is not sqlfix's cost, and pytest-randomly
  reshuffles (and reseeds) per test.
- isolated: `PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`, so pytest loads no installed plugin;
  "with" adds `-p sqlfix.pytest_plugin.plugin`. sqlfix's own cost without the noise of
  a dev venv's other plugins.

Two ways to count:

- `--callgrind` (what docs/architecture.md quotes): one run per command under
  `valgrind --tool=callgrind`, instructions executed (M = millions). Does not depend
  on the machine's load; PYTHONHASHSEED=0 keeps it repeatable to ~0.1 %.
- default: N rounds (default 12) of CPU time (user + sys of the child), medians; the
  modes alternate within each round, one warm-up round is not counted. On a shared
  machine even CPU time is too noisy to read a few milliseconds: use --callgrind.

The children may write bytecode even if PYTHONDONTWRITEBYTECODE is set here (an
installed package has its .pyc files). Figures only: never assert them.

    python tests/benchmarks/bench_startup.py [N] [--tests T] [--callgrind] [--isolated-only]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

COMMON = ["-q", "-p", "no:cacheprovider"]
PAIRS = {
    "as installed (-p no:faker -p no:randomly)": (
        {}, ["-p", "no:faker", "-p", "no:randomly", "-p", "no:sqlfix"],
        ["-p", "no:faker", "-p", "no:randomly"]),
    "isolated (no plugin autoload)": (
        {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, [], ["-p", "sqlfix.pytest_plugin.plugin"]),
}
Measure = Callable[[Path, dict[str, str], list[str]], float]


def _command(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", *COMMON, *extra]


def cpu_seconds(project: Path, env: dict[str, str], extra: list[str]) -> float:
    """CPU seconds (user + sys) of one pytest run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(_command(extra), cwd=project, env=env, capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def instructions(project: Path, env: dict[str, str], extra: list[str]) -> float:
    """Instructions executed by one pytest run, counted by callgrind."""
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           *_command(extra)], cwd=project, env={**env, "PYTHONHASHSEED": "0"},
                          capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return float(found.group(1))


def make_project(folder: Path, tests: int) -> Path:
    project = folder / f"plain{tests}"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_plain.py").write_text("".join(
        f"def test_plain_{i}():\n    assert {i} == {i}\n\n" for i in range(tests)))
    return project


def measure(projects: list[Path], env: dict[str, str], modes: dict[str, list[str]],
            how: Measure, rounds: int) -> dict[tuple[str, Path], float]:
    """The median of `rounds` figures per mode and project; modes alternate in a round."""
    for project in projects:  # warm-up: bytecode caches written, files in the page cache
        for extra in modes.values():
            cpu_seconds(project, env, extra)
    figures: dict[tuple[str, Path], list[float]] = {}
    for i in range(rounds):
        order = list(modes.items()) if i % 2 == 0 else list(modes.items())[::-1]
        for project in projects:
            for name, extra in order:
                figures.setdefault((name, project), []).append(how(project, env, extra))
    return {key: statistics.median(values) for key, values in figures.items()}


def report(title: str, unit: str, scale: float, one: dict[str, float],
           slope: dict[str, float]) -> None:
    print(f"{title}:")
    for what, figures, digits in (("fixed", one, 1), ("per test", slope, 3)):
        base, got = figures["without"] * scale, figures["with"] * scale
        print(f"  {what:8s}  without {base:10.{digits}f} {unit}  with {got:10.{digits}f} {unit}  "
              f"ratio {got / base:6.3f}  sqlfix {got - base:+9.{digits}f} {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", nargs="?", type=int, default=12)
    parser.add_argument("--tests", type=int, default=200, help="plain tests in the big project")
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions with valgrind (one run per command)")
    parser.add_argument("--isolated-only", action="store_true")
    args = parser.parse_args()
    if args.callgrind and shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind on PATH")
    if args.tests < 2:
        raise SystemExit("--tests needs 2 or more: the per-test figure is a slope")
    what, how, scale, unit = (("instructions", instructions, 1e-6, "M") if args.callgrind
                              else ("cpu", cpu_seconds, 1e3, "ms"))
    rounds = 1 if args.callgrind else args.rounds
    base_env = {k: v for k, v in os.environ.items()
                if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("SQLFIX_")
                and k != "PYTEST_ADDOPTS"}
    with tempfile.TemporaryDirectory() as folder:
        small, big = make_project(Path(folder), 1), make_project(Path(folder), args.tests)
        print(f"`pytest -q` on 1 and on {args.tests} plain tests; "
              + ("instructions by callgrind" if args.callgrind
                 else f"medians of {rounds} rounds (+1 warm-up)"))
        print("fixed: the 1-test project; per test: (T-test project - 1-test project) / (T - 1)")
        for title, (extra_env, without, with_) in PAIRS.items():
            if args.isolated_only and not title.startswith("isolated"):
                continue
            modes = {"without": without, "with": with_}
            got = measure([small, big], {**base_env, **extra_env}, modes, how, rounds)
            one = {m: got[(m, small)] for m in modes}
            slope = {m: (got[(m, big)] - got[(m, small)]) / (args.tests - 1) for m in modes}
            report(f"{title}, {what}", unit, scale, one, slope)


if __name__ == "__main__":
    main()
