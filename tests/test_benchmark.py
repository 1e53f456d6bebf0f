"""The benchmark script still runs (its figures are read by people, never asserted)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_boundary.py"


def test_the_boundary_benchmark_runs_and_prints_its_figures():
    out = subprocess.run([sys.executable, str(SCRIPT), "3"], capture_output=True, text=True,
                         check=True, timeout=300)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("3 rounds, median per test")
    assert len(lines) == 9 and all(" ms  x" in line for line in lines[1:])


def test_the_large_fixture_benchmark_runs_and_prints_its_figures():
    script = Path(__file__).parent / "benchmarks" / "bench_large.py"
    out = subprocess.run([sys.executable, str(script), "0.2"], capture_output=True, text=True,
                         check=True, timeout=300)
    lines = out.stdout.splitlines()
    assert lines[0].endswith("rows; best of 3 for loads after the first")
    assert [line.split()[0] for line in lines[1:]] == ["inserts.sql", "copy.sql"]
    assert all("psql -1 -f" in line and "peak memory x" in line for line in lines[1:])


def test_the_startup_benchmark_runs_and_prints_its_figures():
    script = Path(__file__).parent / "benchmarks" / "bench_startup.py"
    out = subprocess.run([sys.executable, str(script), "1", "--tests", "3", "--isolated-only"],
                         capture_output=True, text=True, check=True, timeout=300)
    lines = out.stdout.splitlines()
    assert lines[0] == "`pytest -q` on 1 and on 3 plain tests; medians of 1 rounds (+1 warm-up)"
    assert lines[2] == "isolated (no plugin autoload), cpu:"
    assert [line.split()[0] for line in lines[3:]] == ["fixed", "per"]
    assert all(" ratio " in line and line.endswith(" ms") for line in lines[3:])
