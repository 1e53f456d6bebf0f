"""What installing sqlfix costs a pytest run with no sqlfix test (issue #12: under 20 ms).

Runs the same pytest command on a project of plain tests (no sqlfix test, no
fixtures directory, a `pytest.ini`) with and without sqlfix, N rounds (default 12),
and prints the medians of wall time and CPU time (user + sys of the child), their
ratio, and sqlfix's cost: the median of the per-round differences, with the range
of the middle half of the rounds (how noisy the figure is). Two pairs:

- isolated: `PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`, so pytest loads no installed plugin;
  "with" adds `-p sqlfix.pytest_plugin.plugin`. This is sqlfix's own cost, and the
  pair the target is read on: the other plugins of a dev venv (hypothesis, anyio,
  pytest-asyncio, ...) add seconds whose noise hides 20 ms.
- as installed: every installed plugin; "without" adds `-p no:sqlfix` (pytest then
  never imports sqlfix). `-p no:faker` in both: Faker is an extra (docs/getting-started.md),
  its plugin is not sqlfix's cost.

Fairness: the modes alternate within each round (a load change on the machine hits
both), one warm-up round is not counted, and the children may write bytecode even if
PYTHONDONTWRITEBYTECODE is set here (an installed package has its .pyc files; without
them every run would recompile sqlfix and not pytest). Read the CPU figure when other
work shares the machine. Figures only: never assert them.

    python tests/benchmarks/bench_startup.py [N] [--tests T] [--isolated-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = ["-q", "-p", "no:cacheprovider"]
PAIRS = {
    "isolated (no plugin autoload)": (
        {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, [], ["-p", "sqlfix.pytest_plugin.plugin"]),
    "as installed (all plugins, -p no:faker)": (
        {}, ["-p", "no:faker", "-p", "no:sqlfix"], ["-p", "no:faker"]),
}


def one_run(project: Path, env: dict[str, str], extra: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one pytest run (CPU: the child's user + sys)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", *COMMON, *extra], cwd=project, env=env,
                   capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def measure(project: Path, extra_env: dict[str, str], without: list[str], with_: list[str],
            rounds: int) -> dict[str, list[tuple[float, float]]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra_env)
    modes = {"without": without, "with": with_}
    for extra in modes.values():  # warm-up: bytecode caches written, files in the page cache
        one_run(project, env, extra)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
    for i in range(rounds):
        order = list(modes.items()) if i % 2 == 0 else list(modes.items())[::-1]
        for name, extra in order:
            times[name].append(one_run(project, env, extra))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", nargs="?", type=int, default=12)
    parser.add_argument("--tests", type=int, default=50, help="plain tests in the project")
    parser.add_argument("--isolated-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "test_plain.py").write_text("".join(
            f"def test_plain_{i}():\n    assert {i} == {i}\n\n" for i in range(args.tests)))
        print(f"{args.rounds} rounds (+1 warm-up), `pytest -q` on {args.tests} plain tests, "
              "medians")
        for title, (extra_env, without, with_) in PAIRS.items():
            if args.isolated_only and not title.startswith("isolated"):
                continue
            times = measure(project, extra_env, without, with_, args.rounds)
            print(f"{title}:")
            for what, index in (("wall", 0), ("cpu", 1)):
                base = statistics.median(t[index] for t in times["without"])
                got = statistics.median(t[index] for t in times["with"])
                # paired by round: a slow spell on the machine falls on both runs of a round
                diffs = [w[index] - o[index] for w, o in zip(times["with"], times["without"], strict=True)]
                low, mid, high = (statistics.quantiles(diffs, n=4) if len(diffs) > 1
                                  else diffs * 3)
                print(f"  {what:4s}  without {base * 1e3:6.0f} ms  with {got * 1e3:6.0f} ms  "
                      f"ratio {got / base:5.3f}  sqlfix {mid * 1e3:+5.0f} ms "
                      f"(middle half of rounds {low * 1e3:+.0f} .. {high * 1e3:+.0f} ms)")


if __name__ == "__main__":
    main()
