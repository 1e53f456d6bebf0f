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

import psycopg

from sqlfix.config import load_settings
from sqlfix.database.baseline import capture, reset_sequences
from sqlfix.database.boundary import SESSION_RESET, Boundary
from sqlfix.database.loader import load, plan_sql
from sqlfix.database.schema import apply_schema, connect
from sqlfix.database.server import EmbeddedServer
from sqlfix.database.session import make_library

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

        plain = psycopg.connect(server.dsn)  # the alternative is not sqlfix's connection

        def sqlfix_test(reset: bool, session: bool = True) -> Callable[[], None]:
            def run() -> None:
                boundary = Boundary(conn, baseline.reset_query if reset else b"",
                                    reset_session=session)
                boundary.begin()
                load(conn, library.plan(["orders.sql"]))  # planned per test, as the plugin does
                boundary.protect()
                conn.execute(BODY)
                assert boundary.broken() is None
                boundary.end()
            return run

        def truncate_test() -> None:
            plain.execute(plan_sql(plan).encode())
            plain.execute(BODY)
            plain.commit()
            plain.execute(b"TRUNCATE " + TABLES + b" RESTART IDENTITY CASCADE")
            plain.commit()

        def reset_only() -> None:
            conn.execute(BODY)
            conn.real_rollback()
            reset_sequences(conn, baseline)
            conn.real_rollback()

        def rollback_only(session: bool) -> Callable[[], None]:
            query = b"ROLLBACK; " + SESSION_RESET if session else b"ROLLBACK"

            def run() -> None:
                conn.execute(b"SELECT 1")  # a transaction to end
                conn.execute(query)
            return run

        strategies = {
            "sqlfix: plan + boundary + load + sequence and session reset (default)":
                sqlfix_test(True),
            "sqlfix: the same without the session reset": sqlfix_test(True, session=False),
            "sqlfix: the same, reset_sequences = false": sqlfix_test(False),
            "TRUNCATE ... RESTART IDENTITY after each test": truncate_test,
            "sequence reset alone (one round trip)": reset_only,
            "SELECT 1 + ROLLBACK (two round trips)": rollback_only(False),
            "SELECT 1 + ROLLBACK with the session reset (two round trips)": rollback_only(True),
        }
        figures = {}
        for name, one in strategies.items():
            # Rolled-back rows leave dead tuples that slow later loads: start each
            # strategy from a vacuumed database so the order of the runs does not matter.
            plain.autocommit = True
            plain.execute(b"VACUUM")
            plain.autocommit = False
            figures[name] = timed(rounds, one)
        conn.close()
        plain.close()
    base = next(iter(figures.values()))
    print(f"{rounds} rounds, median per test, {len(plan.fixtures)} fixture files "
          f"({len(plan_sql(plan))} chars of SQL)")
    for name, ms in figures.items():
        print(f"  {ms:8.3f} ms  x{ms / base:5.2f}  {name}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
