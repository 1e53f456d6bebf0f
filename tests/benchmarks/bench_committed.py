"""Per-test cost of the committed mode against the rollback mode and TRUNCATE-everything.

    python tests/benchmarks/bench_committed.py [ROUNDS]

Starts the embedded PostgreSQL with fixtures_sql/schema.sql plus a filled lookup
table and eight empty tables the test never touches (a schema a bit more like an
application's), then runs the same test under each strategy: load orders.sql and
its requirements, and write two rows *through a second connection* (the code
under test on its own connection; in the rollback mode the write goes through
sqlfix's connection, as it must there). Prints medians in ms and ratios against
the rollback mode, the cost of the second-connection hint's per-test mark (what it adds
to the begin's round trip), of listing the connections a committed test left open, and
of sqlfix_aconn's async front end. Figures, not assertions: machines are shared and noisy.

- committed, changed tables only: what `@uses(..., commit=True)` does;
- committed, restore everything: the same with every table truncated and refilled,
  the way pytest-django's `transactional_db` (flush: TRUNCATE of every table) and
  Rails tests with `use_transactional_tests = false` plus DatabaseCleaner's
  `:truncation` clean up.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import psycopg
from bench_boundary import BODY, REPO, timed  # same set-up and timing as the boundary's

from sqlfix.config import load_settings
from sqlfix.database.aboundary import AsyncFrontEnd
from sqlfix.database.backends import others
from sqlfix.database.baseline import capture, restore
from sqlfix.database.boundary import Boundary, mark_columns
from sqlfix.database.committed import ChangeTracker
from sqlfix.database.loader import load, plan_sql
from sqlfix.database.schema import apply_schema, connect
from sqlfix.database.server import EmbeddedServer
from sqlfix.database.session import make_library

EXTRA = "CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL);\n" + "".join(
    f"CREATE TABLE spare_{i} (id serial PRIMARY KEY, v text);\n" for i in range(8)
) + "INSERT INTO countries SELECT 'c' || g, 'Country ' || g FROM generate_series(1, 200) g;\n"


def main(rounds: int) -> None:
    settings = load_settings(REPO)
    library = make_library(settings)
    plan = library.plan(["orders.sql"])
    with EmbeddedServer.start() as server:
        conn = connect(server.dsn)
        apply_schema(conn, settings.schema)
        with psycopg.connect(server.dsn) as setup:
            setup.execute(EXTRA.encode())
        baseline = capture(conn)
        tracker = ChangeTracker(conn, baseline)
        other = psycopg.connect(server.dsn, autocommit=True)  # the code under test's connection

        def rollback_mode() -> None:
            boundary = Boundary(conn, baseline.reset_query)
            boundary.begin()
            load(conn, library.plan(["orders.sql"]))
            boundary.protect()
            conn.execute(BODY)
            assert boundary.broken() is None
            boundary.end()

        def committed(changed_only: bool) -> Callable[[], None]:
            def run() -> None:
                load(conn, library.plan(["orders.sql"]))
                psycopg.Connection.commit(conn)
                other.execute(BODY)
                tables = tracker.to_restore(conn) if changed_only else None
                restore(conn, baseline, tables)
                tracker.restored(conn, baseline.tables if tables is None else tables)
            return run

        strategies = {
            "rollback mode (sqlfix default)": rollback_mode,
            "committed mode: restore the changed tables": committed(True),
            "committed, restore every table (transactional_db-style flush)": committed(False),
        }
        figures = {}
        for name, one in strategies.items():
            other.execute(b"VACUUM")  # start each from a vacuumed database: order-independent
            figures[name] = timed(rounds, one)

        def front_end() -> None:
            AsyncFrontEnd(conn).detach()

        async def connect_async() -> None:
            aconn = await psycopg.AsyncConnection.connect(server.dsn)
            await aconn.close()

        def begin(mark: bool) -> Callable[[], None]:
            query = (b"BEGIN; SELECT pg_current_xact_id()::text, current_setting('role')"
                     + (b", " + mark_columns(conn).encode() if mark else b""))

            def run() -> None:
                conn.pgconn.exec_(query)
                conn.pgconn.exec_(b"ROLLBACK")
            return run

        mark_ms = timed(rounds, begin(True)) - timed(rounds, begin(False))
        list_ms = timed(rounds, lambda: others(conn, [other.info.backend_pid]))
        front_ms = timed(rounds, front_end)
        connect_ms = timed(min(rounds, 200), lambda: asyncio.run(connect_async()))
        conn.close()
        other.close()
    base = next(iter(figures.values()))
    print(f"{rounds} rounds, median per test, {len(plan.fixtures)} fixture files "
          f"({len(plan_sql(plan))} chars of SQL), {len(baseline.tables)} tables")
    for name, ms in figures.items():
        print(f"  {ms:8.3f} ms  x{ms / base:5.2f}  {name}")
    print(f"  {mark_ms:8.3f} ms  the second-connection hint's mark, in the begin's round trip "
          "(every rollback-mode test)")
    print(f"  {list_ms:8.3f} ms  listing connections left open (every committed test)")
    print(f"  {front_ms:8.3f} ms  sqlfix_aconn's front end on the test's connection")
    print(f"  {connect_ms:8.3f} ms  an AsyncConnection.connect() per test instead (with its loop)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
