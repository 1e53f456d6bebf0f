"""The committed-mode benchmark still runs (its figures are read by people, never asserted)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_committed.py"


def test_the_committed_benchmark_runs_and_prints_its_figures():
    out = subprocess.run([sys.executable, str(SCRIPT), "3"], capture_output=True, text=True,
                         check=True, timeout=300)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("3 rounds, median per test")
    assert len(lines) == 6 and all(" ms  " in line for line in lines[1:])
