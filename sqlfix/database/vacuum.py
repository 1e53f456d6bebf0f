"""VACUUM between tests, so that a long run does not slow down (no drift).

Every test loads its fixtures and rolls them back, and each rolled-back row stays in its
table as a dead tuple until VACUUM removes it. The session connection lives for the
whole run. Once a table was vacuumed while it held no live row (autovacuum does so within
a minute), the plans its backend makes say "empty", the foreign-key checks' among them:
a sequential scan, cached, which then reads every dead tuple once per row checked.
Measured on the example shop (200 rows a test, one connection): 18 ms a test at the
start, 126 ms 500 tests later, back to 13 ms once autovacuum (once a minute by default)
had run again. A VACUUM removes the dead tuples, truncates the emptied pages and, by
updating the tables' statistics, makes every backend plan again.

So the session counts the rows the fixtures load, and once `vacuum_threshold` rows went
in since the last time (or every EVERY_TESTS tests), before the next test begins
(outside any transaction: VACUUM cannot run in one), it vacuums the tables whose heap
is larger than their last VACUUM or ANALYZE left it. Rows a test body writes are not
counted, but their tables are vacuumed too when they grew.
See docs/performance.md#drift-vacuum-between-tests.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import ExecStatus, TransactionStatus

from sqlfix.database.baseline import COPY_SCHEMA

# Tables (and materialized views) of the user's schemas whose main fork holds more pages
# than pg_class.relpages says, i.e. than the last VACUUM or ANALYZE saw, that the session
# user may vacuum (owner or superuser; PostgreSQL 16 and older have no finer privilege).
# pg_relation_size() reads the file's length: exact, with no statistics delay.
_GROWN = sql.SQL(
    "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't' "
    "AND n.nspname NOT IN ('information_schema', '_sqlfix', {copies}) "
    "AND n.nspname NOT LIKE 'pg\\_%' "
    "AND pg_relation_size(c.oid) > c.relpages::bigint * current_setting('block_size')::bigint "
    "AND pg_has_role(c.relowner, 'USAGE') ORDER BY 1"
).format(copies=sql.Literal(COPY_SCHEMA)).as_string(None).encode()


# Tests between two VACUUMs at most, whatever was loaded: the rows tests write themselves
# are not counted, and with savepoint layers a shared load is rare while every test's own
# writes are rolled back (the bound of a layer stack's transaction, `layers_max_tests`).
EVERY_TESTS = 500


class Vacuum:
    """The rows loaded and the tests begun since the last VACUUM, and the VACUUM once
    there are enough.

    `threshold`: rows (0: never vacuum); or `EVERY_TESTS` tests.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.written = 0  # rows the fixtures loaded since the last VACUUM
        self.tests = 0  # tests begun since the last VACUUM
        self.runs = 0  # VACUUMs so far (the tests read it)
        self.seconds = 0.0  # spent on them, the query for the grown tables included

    def wrote(self, rows: int) -> None:
        self.written += rows

    def due(self) -> bool:
        return self.threshold > 0 and (
            self.written >= self.threshold or self.tests >= EVERY_TESTS)

    def run_if_due(self, conn: psycopg.Connection[Any] | None) -> list[str]:
        """VACUUM the grown tables on `conn` if enough rows were loaded and `conn` is
        open and outside any transaction; returns the tables vacuumed.

        A failure (a timeout, a lock, a closed connection) is not the test's: it is
        dropped, and the next test's begin() finds a broken connection as it would.
        """
        if not self.due() or conn is None or conn.closed:
            return []
        if conn.info.transaction_status != TransactionStatus.IDLE:
            return []  # a layer stack's transaction: the stack's end comes first
        self.written = self.tests = 0
        tables: list[str] = []
        started = time.perf_counter()
        # libpq directly: outside a transaction it runs each query on its own, as VACUUM
        # needs, and nothing a test set on the psycopg connection (its row factory, a
        # loader for text) changes what is read or sent.
        pgconn, encoding = conn.pgconn, conn.info.encoding
        try:
            grown = pgconn.exec_(_GROWN)
            if grown.status == ExecStatus.TUPLES_OK:
                tables = [bytes(grown.get_value(i, 0) or b"").decode(encoding)
                          for i in range(grown.ntuples)]
            if tables:
                # SKIP_LOCKED: a table autovacuum is busy with is not waited for. The
                # names are regclass output: quoted and qualified where they must be.
                done = pgconn.exec_(b"VACUUM (SKIP_LOCKED) " + ", ".join(tables).encode(encoding))
                if done.status == ExecStatus.COMMAND_OK:
                    self.runs += 1
                else:
                    tables = []
        except psycopg.Error:
            return []
        finally:
            self.seconds += time.perf_counter() - started
        return tables
