"""Cost of the statement guard (no database) and of sending each statement alone (database).

    python tests/benchmarks/bench_guard.py [ROUNDS]

Part 1 reads an ~800 KB fixture: the removed hand-written lexer (taken from git
history, when run in a checkout), `sqlparse.split` (only if sqlparse is
installed; it is not a dependency), pglast's full parse (JSON out, json.loads),
pglast's scanner-based split, and the whole guard (`guard.scan`: parse, classify,
every check), also with its constants-only INSERT fast path off (every statement
through the JSON tree). Part 2 loads the shipped orders.sql plan and a 1,000-statement
fixture on the embedded server, as one joined simple query (the old loader) and
as one extended-protocol message per statement in a pipeline (the loader now).
Prints medians and ratios. Figures, not assertions: machines are shared and noisy.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from pglast import parser as pg

from sqlfix.compiler import guard
from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.library import FixtureLibrary, LoadPlan
from sqlfix.config import load_settings
from sqlfix.database.boundary import CHECK_DEFERRED
from sqlfix.database.loader import load, plan_sql
from sqlfix.database.schema import apply_schema, connect
from sqlfix.database.server import EmbeddedServer
from sqlfix.database.session import make_library

REPO = Path(__file__).resolve().parents[2]
OLD_LEXER = ("c654d55", "sqlfix/compiler/_sqlscan.py")  # the last commit that had it


def timed(rounds: int, one: Callable[[], object]) -> float:
    one()  # warm up
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        one()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def big_fixture(size: int = 800_000) -> str:
    rows = []
    i = 0
    while sum(map(len, rows)) < size:
        i += 1
        rows.append(
            f"-- row {i}: a comment; DROP TABLE x;\n"
            f"INSERT INTO users (id, email, full_name, created_at) VALUES ({i}, "
            f"'user{i}@example.com', 'O''Brien; {i}', '2024-01-01 12:00:00+00');\n"
            f"INSERT INTO notes (id, body) VALUES ({i}, $$body; with 'quotes' {i}$$), "
            f"({i + 1_000_000}, E'line\\n{i}');\n"
        )
    return "".join(rows)


def old_lexer() -> types.ModuleType | None:
    try:
        source = subprocess.run(
            ["git", "show", f"{OLD_LEXER[0]}:{OLD_LEXER[1]}"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("old_sqlscan")
    sys.modules["old_sqlscan"] = module  # NamedTuple needs its module importable
    exec(compile(source, "old_sqlscan.py", "exec"), module.__dict__)
    return module


def part_one(rounds: int) -> None:
    sql = big_fixture()
    print(f"Part 1: reading a {len(sql) / 1000:.0f} KB fixture "
          f"({len(guard.scan(sql).statements)} statements), median of {rounds}")
    results: dict[str, float] = {}
    old = old_lexer()
    if old is not None:
        results["old hand-written lexer (tokenize + split)"] = timed(
            rounds, lambda: old.split(old.tokenize(sql)[0])
        )
    try:
        import sqlparse  # type: ignore[import-untyped]
    except ImportError:
        print("  (sqlparse not installed: pip install sqlparse to compare it)")
    else:
        results["sqlparse.split"] = timed(max(1, rounds // 5), lambda: sqlparse.split(sql))
    results["pglast parse (JSON, json.loads)"] = timed(
        rounds, lambda: json.loads(pg.parse_sql_json(sql))
    )
    results["pglast scanner split"] = timed(rounds, lambda: pg.split(sql, with_parser=False))
    results["sqlfix guard.scan (all checks)"] = timed(rounds, lambda: guard._scan.__wrapped__(sql))  # uncached
    saved = guard._plain_insert
    guard._plain_insert = lambda chunk, part: None  # type: ignore[assignment]
    results["guard.scan, constants-only INSERT fast path off"] = timed(
        rounds, lambda: guard._scan.__wrapped__(sql))
    guard._plain_insert = saved
    base = results["sqlfix guard.scan (all checks)"]
    for name, seconds in results.items():
        print(f"  {name:50} {seconds:8.3f} s   x{seconds / base:5.2f} of guard.scan")


def joined(conn: psycopg.Connection[Any], plan: LoadPlan) -> None:
    """The old loader's happy path: one simple query holding every statement."""
    conn.execute(b"SAVEPOINT sqlfix_load")
    checks = "; ".join(CHECK_DEFERRED)
    conn.execute(f"{plan_sql(plan)}\n{checks};\nRELEASE SAVEPOINT sqlfix_load;".encode())


def part_two(rounds: int) -> None:
    settings = load_settings(REPO)
    shipped = make_library(settings).plan(["orders.sql"])
    with tempfile.TemporaryDirectory() as folder:
        rows = "".join(
            f"INSERT INTO products (sku, name, price_cents) VALUES ('s{i}', 'P; {i}', {i + 1});\n"
            for i in range(1000)
        )
        (Path(folder) / "many.sql").write_text(rows, encoding="utf-8")
        many = FixtureLibrary(FixtureDir(Path(folder))).plan(["many.sql"])
    with EmbeddedServer.start() as server:
        conn = connect(server.dsn)
        apply_schema(conn, settings.schema)
        print(f"Part 2: loading on the embedded server, median of {rounds} (ms)")
        for label, plan in (("orders.sql plan", shipped), ("1,000 INSERTs", many)):
            count = sum(len(f.statements) for f in plan)

            def run(how: Callable[[psycopg.Connection[Any], LoadPlan], None]) -> Callable[[], None]:
                def once() -> None:
                    how(conn, plan)  # noqa: B023 - called before the loop moves on
                    conn.rollback()

                return once

            old = timed(rounds, run(joined)) * 1000
            new = timed(rounds, run(load)) * 1000
            print(f"  {label:16} ({count:4} statements)  joined simple query {old:8.2f}   "
                  f"pipeline, one message each {new:8.2f}   x{new / old:4.2f}")
        conn.close()


if __name__ == "__main__":
    ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    part_one(ROUNDS)
    part_two(ROUNDS * 10)
