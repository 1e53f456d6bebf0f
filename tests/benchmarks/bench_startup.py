"""What installing sqlfix costs a pytest run with no sqlfix test (issue #12).

Runs pytest on a one-test project N times (default 15) in four set-ups and prints
the median wall time of each and its difference to the first. "Without sqlfix" is
approximated by `-p no:sqlfix -p no:faker`: a plugin blocked with `-p no:` is never
imported, and Faker is installed only because sqlfix depends on it. Figures only:
read them, never assert them (the machine's load moves them).

    python tests/benchmarks/bench_startup.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {
    "without sqlfix (-p no:sqlfix -p no:faker)": ["-p", "no:sqlfix", "-p", "no:faker"],
    "sqlfix only (-p no:faker)": ["-p", "no:faker"],
    "Faker's plugin only (-p no:sqlfix)": ["-p", "no:sqlfix"],
    "as installed": [],
}
COMMON = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist"]


def median_run(project: Path, extra: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", *COMMON, *extra], cwd=project,
                       capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "pytest.ini").write_text("[pytest]\n")
        (project / "test_plain.py").write_text("def test_plain():\n    pass\n")
        results = {name: median_run(project, extra, rounds) for name, extra in MODES.items()}
    base = next(iter(results.values()))
    print(f"{rounds} runs each, median wall time of `pytest` on one plain test")
    for name, seconds in results.items():
        print(f"{name:45s} {seconds * 1e3:7.0f} ms  {(seconds - base) * 1e3:+6.0f} ms")


if __name__ == "__main__":
    main()
