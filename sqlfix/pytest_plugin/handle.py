"""What a test gets: the `sqlfix` handle and its connection."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pytest
from psycopg.pq import TransactionStatus

from sqlfix.compiler.library import CompiledFixture, LoadPlan, check_id_collisions, label_ids
from sqlfix.compiler.seeds import derive_seed, fixture_id
from sqlfix.database.boundary import Boundary, SqlfixConnection
from sqlfix.database.layers import LayeredBoundary
from sqlfix.database.loader import load
from sqlfix.database.session import DatabaseSession
from sqlfix.errors import SqlfixError
from sqlfix.marker import as_names

__all__ = ["LoadRecord", "Sqlfix"]

BUSY_LOAD = (
    "sqlfix.load() was called while a statement is still running on the test's connection "
    "(a task on sqlfix_aconn that has not finished): sqlfix.load() and sqlfix_aconn share "
    "one database connection, and a load now would break the statement and the connection. "
    "Await the task first, or load before starting it."
)
ABORTED_LOAD = (
    "sqlfix.load() was called on an aborted transaction: a statement of the test failed "
    "earlier and nothing rolled back, so PostgreSQL refuses every statement until then "
    "(InFailedSqlTransaction). Call sqlfix_conn.rollback() first (under sqlfix it returns "
    "to the last commit, or to the fixtures loaded), or run the statement that may fail "
    "in `with sqlfix_conn.transaction():`, which rolls back just that block."
)


@dataclass(frozen=True)
class LoadRecord:
    """One load of a test, for `--sqlfix-report`: files in order, rows each, seconds."""

    names: tuple[str, ...]
    rows: tuple[int, ...] | None  # None: the server's counts could not be split per file
    seconds: float


class Sqlfix:
    """The test's handle: `conn`, `seed`, `load()`, `id()`, `render()`.

    Everything it does happens inside the test's rollback boundary.
    """

    def __init__(self, session: DatabaseSession, boundary: Boundary) -> None:
        self._session = session
        self._boundary = boundary
        self._loaded: list[CompiledFixture] = []
        self.loads: list[LoadRecord] = []
        self.kept: list[str] = []  # files used from the layers of the test before, not loaded
        # Set by sqlfix_aconn: why `conn` is refused (the sync and async front ends mix).
        self.async_front_end: str | None = None

    @property
    def conn(self) -> SqlfixConnection:
        """The test's connection (the session's, inside this test's transaction).

        Fails the test when it holds the async connection (`sqlfix_aconn` and the async
        SQLAlchemy fixtures): both are front ends on one database connection.
        """
        if self.async_front_end is not None:
            pytest.fail(self.async_front_end, pytrace=False)
        return self._boundary.conn

    @property
    def seed(self) -> int:
        """The run's seed: replay a run with `--sqlfix-seed=<this>`."""
        return self._session.settings.seed

    @property
    def escaped(self) -> bool:
        """True once sqlfix found that this test's changes escaped its boundary."""
        return self._boundary.escape is not None

    @property
    def loaded(self) -> tuple[str, ...]:
        """Fixture files loaded in this test, in load order."""
        return tuple(f.name for f in self._loaded)

    def load(self, *names: str | os.PathLike[str]) -> tuple[str, ...]:
        """Load more fixtures (and their requirements) now; files already loaded are skipped.

        Names are relative to the fixtures directory, as strings or paths
        (`Path("billing/invoices.sql")`). Returns the names that were loaded by this
        call. Raises TypeError for anything else, LoadError/FixtureError/ConfigError as
        a fixture at set-up does.
        """
        __tracebackhide__ = True
        try:
            names = as_names(names, "sqlfix.load()")
        except TypeError as error:  # the test's line and the message, as below
            raise error.with_traceback(None) from None
        self.refuse_busy()
        conn = self._boundary.conn
        try:
            if conn.closed:
                return self._load(names)  # the load reports the closed connection itself
            with conn.own_client():  # the test's cursor factory, adapters: not the load's
                return self._load(names)
        except SqlfixError as error:
            # The message names the file, line and what to do; sqlfix's own frames (the
            # loader, the library) would only stand between the test's line and it.
            raise error.with_traceback(None) from None

    def _load(self, names: tuple[str, ...]) -> tuple[str, ...]:
        __tracebackhide__ = True
        library = self._session.library
        plan = library.plan(names)
        new = tuple(f for f in plan if f.name not in self.loaded)
        if self._loaded:  # the plan itself was checked by library.plan()
            check_id_collisions((*self._loaded, *new))
        boundary = self._boundary
        first = boundary.take_first_load()
        # The savepoint that marks "loaded" rides along with the load (one round trip):
        # at the test's start, and after a load() in the test body.
        protect = first or self._boundary.conn._sqlfix_savepoint is not None
        boundary.before_load()
        started = time.perf_counter()
        rows: tuple[int, ...] | None
        # Sequences past the fixtures' explicit ids, in the same round trip. The whole
        # plan's ids: with layers, the previous test's end put the sequences back to
        # where its layers were taken (before any advance).
        if not new:
            advance = ""
        elif first:
            advance = boundary.first_advance(new)  # learnt once per plan
        else:
            advance = boundary.advance_statement(label_ids(new))
        then = (advance,) if advance else ()
        sent = new  # what this call loads; with layers, what the previous test left is not
        if first and isinstance(boundary, LayeredBoundary):
            sent, rows = boundary.load_first(LoadPlan(new), then)  # protect included
        else:
            # At the test's start the role is known (begin() read it): the switch to the
            # fixture role and back rides along too.
            rows = load(self._boundary.conn, LoadPlan(new),
                        then=(*then, *(boundary.protect_statements() if protect else ())),
                        role=boundary.role if first else None)
            if new and protect:
                boundary.protected()
        if rows:
            self._session.vacuum.wrote(sum(rows))
        if sent:
            names = tuple(f.name for f in sent)
            self.loads.append(LoadRecord(names, rows, time.perf_counter() - started))
        kept = tuple(f.name for f in new if f not in sent)
        if kept:  # the test used them all the same: --sqlfix-report counts it
            self.kept.extend(kept)
        self._loaded.extend(new)
        return tuple(f.name for f in new)

    def refuse_busy(self) -> None:
        """SqlfixError if the connection cannot take a load now: a statement of an async
        task is in flight on it, or the test's transaction is aborted.

        A thread's statement holds the connection's lock, so a load waits for it; an
        asyncio task's holds nothing sqlfix's sync calls would wait on.
        """
        __tracebackhide__ = True
        conn = self._boundary.conn
        status = None if conn.closed else conn.pgconn.transaction_status
        if status == TransactionStatus.ACTIVE:
            raise SqlfixError(BUSY_LOAD)
        if status == TransactionStatus.INERROR:
            raise SqlfixError(ABORTED_LOAD)

    @property
    def fixture_seeds(self) -> tuple[tuple[str, int], ...]:
        """(file, seed its `fake`/`rng`/`seed` values come from) of each file loaded."""
        return tuple((name, derive_seed(self.seed, name)) for name in self.loaded)

    @property
    def render_seconds(self) -> dict[str, float]:
        """Seconds each fixture file took to render and check (once per session)."""
        return self._session.library.render_seconds

    def id(self, table: str, label: str) -> int:
        """The id the templates give `label` in `table` (`{{ id('users', 'alice') }}`)."""
        return fixture_id(table, label)

    def render(self, name: str | os.PathLike[str]) -> str:
        """The rendered SQL of one fixture, as the test loads it."""
        __tracebackhide__ = True
        try:
            (name,) = as_names((name,), "sqlfix.render()")
            return self._session.library.compile(name).rendered.sql
        except (SqlfixError, TypeError) as error:  # as load(): the message, not sqlfix's frames
            raise error.with_traceback(None) from None
