"""Per-test cost of the rollback boundary, side by side with TRUNCATE cleanup.

    python tests/benchmarks/bench_boundary.py [ROUNDS]

Starts the embedded PostgreSQL, applies fixtures_sql/schema.sql and runs the
same test body (load orders.sql and its requirements, insert two rows with
DEFAULT ids) under each strategy. Prints medians in ms and ratios against the
sqlfix default. Figures, not assertions: machines are shared and noisy.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlfix.baseline import capture, reset_sequences
from sqlfix.boundary import Boundary
from sqlfix.config import load_settings
from sqlfix.database import apply_schema, connect
from sqlfix.loader import load, plan_sql
from sqlfix.server import EmbeddedServer
from sqlfix.session import make_library

REPO = Path(__file__).resolve().parents[2]
BODY = b"INSERT INTO products (sku, name, price_cents) VALUES ('b1', 'B', 1), ('b2', 'B', 1)"
TABLES = b"users, products, orders, order_items"


def timed(rounds: int, one: Callable[[], None]) -> float:
    for _ in range(10):  # warm up caches and the server
        one()
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        one()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1000


def main(rounds: int) -> None:
    settings = load_settings(REPO)
    library = make_library(settings)
    plan = library.plan(["orders.sql"])
    with EmbeddedServer.start() as server:
        conn = connect(server.dsn)
        apply_schema(conn, settings.schema)
        baseline = capture(conn)

        def sqlfix_test(reset: bool) -> Callable[[], None]:
            def run() -> None:
                boundary = Boundary(conn, baseline.reset_query if reset else b"")
                boundary.begin()
                load(conn, plan)
                boundary.protect()
                conn.execute(BODY)
                assert boundary.broken() is None
                boundary.end()
            return run

        def truncate_test() -> None:
            conn.execute(plan_sql(plan).encode())
            conn.execute(BODY)
            conn.commit()
            conn.execute(b"TRUNCATE " + TABLES + b" RESTART IDENTITY CASCADE")
            conn.commit()

        def reset_only() -> None:
            conn.execute(BODY)
            conn.rollback()
            reset_sequences(conn, baseline)
            conn.rollback()

        figures = {
            "sqlfix: boundary + load + sequence reset (default)": timed(rounds, sqlfix_test(True)),
            "sqlfix: boundary + load, reset_sequences = false": timed(rounds, sqlfix_test(False)),
            "TRUNCATE ... RESTART IDENTITY after each test": timed(rounds, truncate_test),
            "sequence reset alone (one round trip)": timed(rounds, reset_only),
        }
        conn.close()
    base = next(iter(figures.values()))
    print(f"{rounds} rounds, median per test, {len(plan.fixtures)} fixture files "
          f"({len(plan_sql(plan))} chars of SQL)")
    for name, ms in figures.items():
        print(f"  {ms:8.3f} ms  x{ms / base:5.2f}  {name}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
