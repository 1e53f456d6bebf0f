"""Cost of finding committed catalog changes (`sqlfix.database.catalog_watch`).

    python tests/benchmarks/bench_catalog_watch.py [ROUNDS]

On a fresh embedded server: the check when nothing committed since the mark (what the
verifier pays after a rolled-back test), after a data-only commit (what a restore pays
before its TRUNCATE), after a committed TRUNCATE (a catalog row rewritten, its catalog's
digest read), the mark after a restore, the baseline (every catalog's digest, once per
session), and for scale the round trip and the schema fingerprint that names changes.
Prints medians and ratios to the round trip. Figures, not assertions: machines are
shared and noisy.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

import psycopg

from sqlfix.database import catalog
from sqlfix.database.catalog_watch import Watch
from sqlfix.database.server import EmbeddedServer


def median_ms(rounds: int, step: Callable[[], object]) -> float:
    step()  # warm-up
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        step()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main(rounds: int) -> None:
    with EmbeddedServer.start() as server:
        conn = psycopg.connect(server.dsn)
        other = psycopg.connect(server.dsn, autocommit=True)
        other.execute("CREATE TABLE bench (x int)")
        holder = [Watch.take(conn, shared=True)]

        def check() -> None:
            holder[0], differ, _ = holder[0].check(conn)
            assert not differ, differ

        def data_commit() -> None:
            other.execute("INSERT INTO bench VALUES (1)")
            check()

        def truncate() -> None:
            other.execute("TRUNCATE bench")
            check()

        figures = [
            ("round trip (SELECT 1)", lambda: conn.execute("SELECT 1").fetchone()),
            ("check, nothing committed", check),
            ("check after a data-only commit", data_commit),
            ("check after a committed TRUNCATE", truncate),
            ("mark (after a restore)", lambda: holder[0].mark(conn)),
            ("baseline: Watch.take", lambda: Watch.take(conn, shared=True)),
            ("schema fingerprint (names changes)", lambda: catalog.take_schema(conn, True)),
        ]
        results = [(name, median_ms(rounds, step)) for name, step in figures]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"{rounds} rounds, medians; {len(holder[0].catalogs)} catalogs; "
              f"load average {load:.1f}")
        base = results[0][1]
        for name, ms in results:
            print(f"{name:38} {ms:8.2f} ms  x{ms / base:7.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
