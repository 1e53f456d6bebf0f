"""Where sqlfix's per-test time goes, against the plain floor: many interleaved rounds, one plan.

    python tests/benchmarks/bench_overhead.py [rows] [rounds]   # default 200 rows, 400 rounds

Contenders, each a whole test (load, one UPDATE, end), interleaved in shuffled order:
the plain floor (the rendered SQL as one simple query, ROLLBACK); sqlfix as the plugin
runs a test; sqlfix's own statements replayed on a plain connection (the begin's query,
the load's pipeline, the end's query), whole and without each part in turn, so that the
difference between "sqlfix" and "statements" is sqlfix's Python, and each "without" row
is what that part costs. Figures, not assertions.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bench_perf as bp

import sqlfix.database.loader as loader
from sqlfix.database.boundary import SESSION_RESET, XID_PROBE
from sqlfix.database.pipeline import run_each


def main(rows: int, rounds: int) -> None:
    bench = bp.Bench(Path(tempfile.mkdtemp()), short=True)
    names = (f"rows_{rows}.sql",)
    sent: list[list[bytes]] = []
    real = loader.run_each
    loader.run_each = lambda conn, texts: (sent.append(list(texts)), real(conn, texts))[1]
    for _ in range(3):
        bench.sqlfix_test(names)  # the advance learnt: the pipeline as every later test sends it
    loader.run_each = real
    pipeline = sent[-1]
    statements = [t for t in pipeline if not t.startswith((b"SET", b"SAVEPOINT", b"ROLLBACK",
                                                            b"RELEASE", b"SELECT", b"WITH"))]
    conn, pg = bench.plain, bench.plain.pgconn
    assert bench.session.baseline is not None
    reset = bench.session.baseline.reset_query
    begin = (b"BEGIN; SET LOCAL application_name = 'sqlfix bench'; "
             b"SET LOCAL lock_timeout = '10s'; SET LOCAL statement_timeout = '60s'; "
             b"SELECT pg_current_xact_id()::text, current_setting('role'), "
             b"pg_stat_get_db_sessions(1), clock_timestamp()::text")

    def replay(with_begin: bool = True, extras: bool = True, sequences: bool = True,
               session: bool = True) -> Callable[[], None]:
        texts = pipeline if extras else statements
        end = b"; ".join(p for p in (XID_PROBE, b"ROLLBACK", SESSION_RESET if session else b"",
                                     reset if sequences else b"") if p)

        def one() -> None:
            pg.exec_(begin if with_begin else b"BEGIN")
            run_each(conn, texts)
            conn.execute(bp.BODY, prepare=False)
            pg.exec_(end)
        return one

    def floor() -> None:
        conn.execute(bench._sql(names))
        conn.execute(bp.BODY, prepare=False)
        conn.rollback()

    contenders: dict[str, Callable[[], None]] = {
        "plain floor": floor,
        "sqlfix": lambda: bench.sqlfix_test(names),
        "sqlfix's statements": replay(),
        "  without the begin's settings and mark": replay(with_begin=False),
        "  without the load's own messages": replay(extras=False),
        "  without the sequence reset": replay(sequences=False),
        "  without the session reset": replay(session=False),
    }
    for one in contenders.values():
        for _ in range(20):
            one()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        order = list(contenders.items())
        random.shuffle(order)
        for name, one in order:
            began = time.perf_counter()
            one()
            samples[name].append(time.perf_counter() - began)
    base = statistics.median(samples["plain floor"])
    print(f"## per test at {rows} rows, medians of {rounds} interleaved rounds")
    print(f"{'contender':42} {'ms':>8} {'x floor':>8}")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"{name:42} {med * 1000:8.3f} {med / base:8.2f}")
    print(f"load pipeline: {len(pipeline)} messages, {len(statements)} of them the fixtures'")
    bench.close()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*(args + [200, 400][len(args):]))
