"""The benchmark scripts still run (their figures are read by people, never asserted)."""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent / "benchmarks"
SCRIPT = BENCH / "bench_boundary.py"


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
    assert lines[0].endswith("rows; best of 5 (interleaved) for loads after the first")
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


def test_the_catalog_watch_benchmark_runs_and_prints_its_figures():
    script = Path(__file__).parent / "benchmarks" / "bench_catalog_watch.py"
    out = subprocess.run([sys.executable, str(script), "2"], capture_output=True, text=True,
                         check=True, timeout=300)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("2 rounds, medians;") and "catalogs" in lines[0]
    assert len(lines) == 8 and all(" ms  x" in line for line in lines[1:])


NUMBER = r"\d+\.\d+"


def test_the_peer_benchmark_short_mode_prints_every_section():
    out = subprocess.run([sys.executable, str(BENCH / "bench_perf.py"), "--short"],
                         capture_output=True, text=True, check=True, timeout=900).stdout
    sections = [line for line in out.splitlines() if line.startswith("## ")]
    assert [s.split(",")[0] for s in sections] == [
        "## per test", "## per test", "## per test", "## drift over 600 tests (200 rows)",
        "## in pytest", "## pytest-xdist", "## embedded server start",
        "## schema cache (setup_command takes 0.5 s)"]
    for size in ("20", "200", "2000"):
        assert f"## per test, {size} rows" in out
    rows = re.findall(rf"^(.+?)\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})$", out, re.M)
    assert len(rows) == 3 * 6  # six timed contenders per size
    assert len(re.findall(rf"^ratios: sqlfix / floor {NUMBER}; layers shared / floor {NUMBER}", out,
                          re.M)) == 3
    assert all(float(p10) <= float(med) <= float(p90) for _, med, p10, p90, _ in rows)
    drift = re.findall(rf"^(.+?)\s+1\s+({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+"
                       rf"{NUMBER}-> *{NUMBER}\s+{NUMBER}-> *{NUMBER}\s+\d+$", out, re.M)
    assert [d[0] for d in drift] == [
        "sqlfix (vacuum_threshold = 2000, the default)",
        "sqlfix + layers (500 a transaction), same set in blocks of 50",
        "sqlfix, vacuum_threshold = 0 (no VACUUM between tests)",
        "plain floor on one long-lived connection"]
    in_pytest = out.split("## in pytest")[1].split("## ")[0]
    named = re.findall(rf"^(.+?)\s+(-?{NUMBER})\s+(-?{NUMBER})$", in_pytest, re.M)
    names = [n[0] for n in named]
    assert [n for n in names if not n.startswith("pytest-postgresql")] == [
        "plain floor (a session psycopg connection, ROLLBACK)", "sqlfix @uses",
        "sqlfix @uses + --sqlfix-layers"]
    assert any(n.startswith("pytest-postgresql") for n in names) or re.search(
        r"^pytest-postgresql `postgresql` fixture +not installed$", in_pytest, re.M)
    xdist = re.findall(rf"^(.+?) +-n 0 +{NUMBER} s  -n 2 +{NUMBER} s  throughput x{NUMBER}$",
                       out, re.M)
    assert xdist == ["empty tests, no sqlfix (xdist's own ceiling)", "sqlfix, embedded",
                     "sqlfix, DSN"]
    assert re.search(r"cold \(initdb\) +\d+ ms; cached median +\d+ ms", out)
    assert len(re.findall(r"session.*start +\d+ ms", out)) == 2


def test_the_overhead_benchmark_runs_and_prints_its_figures():
    out = subprocess.run([sys.executable, str(BENCH / "bench_overhead.py"), "20", "3"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    lines = out.splitlines()
    assert lines[0] == "## per test at 20 rows, medians of 3 interleaved rounds"
    rows = [line for line in lines[2:] if re.search(rf" {NUMBER} +{NUMBER}$", line)]
    assert [r.split("  ")[0].strip() for r in rows][:3] == [
        "plain floor", "sqlfix", "sqlfix's statements"]
    assert len(rows) == 7
    assert re.match(r"load pipeline: \d+ messages, \d+ of them the fixtures'$", lines[-1])
