"""Savepoint layers: the fixtures of one test kept, under savepoints, for the next.

Opt-in (`layers = true`). One transaction, the *stack*, spans several tests.
Right after it begins the savepoint `L0` is taken; each fixture file is loaded
on top and followed by the next savepoint, so `L<i>` marks "the first i files
of the plan are loaded" and rolling back to it drops everything after them,
the newer savepoints included. A test's own work starts from a fresh
`sqlfix_test` savepoint on top of the stack.

When a test ends, the plugin tells the stack how many of its files the next
test shares (pytest knows the next test): the stack rolls back to that
layer, resets the sequences to the positions read when the layer was taken
and the session state a test may leave outside the transaction, all in one
round trip. The next test loads only the files it does not share. When the
next test shares nothing (or does not use sqlfix, or is committed), after
`layers_max_tests` tests, on an escape and at the session's end, the stack's
transaction is rolled back and everything reset as without layers.

What a test may change is undone by the rollback to a savepoint as by a
ROLLBACK: rows, DDL, SET and SET ROLE (also session-level ones), locks, temporary
tables, cursors, LISTEN. The rest is reset with the rollback: sequences
(`setval()` to the layer's positions), prepared statements, advisory locks
taken at session level, currval(). A test that ends the transaction (a raw
COMMIT or ROLLBACK), releases or rolls back past sqlfix's savepoints, or loses
its connection destroys the stack: the boundary's checks see it, or the
rollback to the layer fails, and the next test begins a new one. A test that
ended the transaction and then put sqlfix's marker (application_name) back
passes the checks; the layer's savepoint is gone with that transaction, so the
failed rollback to it reports the escape (`escaped_at_end`), as the
transaction id read with the ROLLBACK does without layers.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from sqlfix.compiler.library import CompiledFixture, LoadPlan
from sqlfix.database.baseline import reset_query_for
from sqlfix.database.boundary import (
    CHECK_DEFERRED,
    SAVEPOINT,
    Boundary,
    SqlfixConnection,
    forget_prepared,
    mark_query,
)
from sqlfix.database.loader import load, load_layers
from sqlfix.database.pipeline import rows as result_rows
from sqlfix.database.pipeline import run_all
from sqlfix.errors import LoadError

# The session state a test can leave outside the transaction (see boundary.SESSION_RESET):
# the rest of DISCARD ALL is undone by the rollback to the layer's savepoint itself.
LAYER_RESET = b"DEALLOCATE ALL; CLOSE ALL; SELECT pg_advisory_unlock_all(); DISCARD SEQUENCES"


@dataclass
class Layer:
    """One loaded file: the savepoint after it, and how to put sequences back to then."""

    name: str
    savepoint: str
    reset: bytes
    # The compiled file it loaded (the library keeps one object per file content): a
    # file edited since does not share this layer, whatever its name.
    fixture: CompiledFixture | None = None
    # Its deferred constraints were checked with it on top; a layer below the top of a
    # load was checked only with the files above it (see _load_first).
    checked: bool = False


@dataclass
class LayerStack:
    """The open transaction kept between tests, and its layers; one per session."""

    max_tests: int
    positions: bytes = b""  # reads every sequence's position; b"" with reset_sequences off
    reset_session: bool = True
    conn: SqlfixConnection | None = None
    xid: str | None = None
    marker: str | None = None
    role: str | None = None
    base_reset: bytes = b""  # L0's: the baseline positions
    layers: list[Layer] = field(default_factory=list)
    tests: int = 0  # tests run on this transaction
    reference: Any = None  # the verifier's fingerprint of the current top (see plugin)
    _token: str = field(default_factory=lambda: secrets.token_hex(3))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def savepoint(self, depth: int) -> str:
        """`L<depth>`: unguessable, so that no test makes or releases one by chance."""
        return f"sqlfix_l{self._token}_{depth}"

    def is_open(self, conn: SqlfixConnection) -> bool:
        """The stack's transaction is still in progress on `conn` (no query)."""
        return (
            self.conn is conn and not conn.closed and not conn.broken
            and conn.info.transaction_status == TransactionStatus.INTRANS
            and self.marker is not None
            and conn.pgconn.parameter_status(b"application_name") == self.marker.encode()
        )

    def shared(self, names: Sequence[str]) -> int:
        """How many of `names` (a load order) the stack holds, from the bottom."""
        count = 0
        for mine, theirs in zip(self.names, names, strict=False):
            if mine != theirs:
                break
            count += 1
        return count

    def forget(self) -> None:
        """The transaction is gone (rolled back, or its connection closed)."""
        self.conn = self.xid = self.marker = self.role = None
        self.layers = []
        self.tests = 0
        self.reference = None
        self._token = secrets.token_hex(3)

    def top_reset(self) -> bytes:
        return self.layers[-1].reset if self.layers else self.base_reset

    def close(self, full_reset: bytes, session_reset: bytes) -> None:
        """Roll the stack's transaction back and reset as a test's end does; then forget."""
        conn = self.conn
        self.forget()
        if conn is None or conn.closed:
            return
        try:
            parts = [b"ROLLBACK", session_reset, full_reset]
            conn.cursor(row_factory=tuple_row).execute(b"; ".join(p for p in parts if p))
            forget_prepared(conn)
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.real_rollback()
        except psycopg.Error:
            conn.close()  # the session opens a fresh connection


class LayeredBoundary(Boundary):
    """A test's boundary on the session's layer stack (see the module's docstring)."""

    def __init__(self, stack: LayerStack, conn: SqlfixConnection, reset_query: bytes = b"",
                 **kwargs: Any) -> None:
        super().__init__(conn, reset_query, **kwargs)
        self.stack = stack
        self.continued = False  # begun on a stack an earlier test left open
        self._full_reset = reset_query  # the baseline's, for when the stack ends

    def begin(self) -> None:
        """Continue the open stack (no round trip), or begin a new one."""
        stack, conn = self.stack, self.conn
        if stack.is_open(conn) and stack.tests < stack.max_tests:
            conn.reset_client()  # as Boundary.begin: the test before may have changed it
            self.xid, self.marker, self.role = stack.xid, stack.marker, stack.role
            self._first_load = True
            self.continued = True
            return
        if stack.conn is not None:
            stack.close(self._reset_query, self._session_reset())
        self._begin_extra = f"SAVEPOINT {stack.savepoint(0)}; ".encode()
        super().begin()
        stack.conn, stack.xid, stack.marker, stack.role = conn, self.xid, self.marker, self.role
        stack.base_reset = self._reset_query

    def load_first(
        self, plan: LoadPlan, then: Sequence[str] = ()
    ) -> tuple[tuple[CompiledFixture, ...], tuple[int, ...]]:
        """The test's own plan: keep the shared layers, load the rest, protect; one round trip.

        `then`: statements to run after the load, before the protect (the sequences'
        advance past explicit ids). Returns the fixtures it loaded (the rest of the
        plan) and their rows.
        Raises LoadError (the stack then holds the shared layers only).
        """
        try:
            return self._load_first(plan, then)
        except (psycopg.Error, LoadError) as exc:
            if isinstance(exc, LoadError) and not exc.at_check:
                raise  # a statement of the files it loaded failed: theirs, stack kept
            if not self.continued or self.conn.closed or self.conn.broken:
                raise
            # The stack an earlier test left could not be used after all: a new one.
            # A fixture's error is then found (and blamed) as without layers: a check of
            # deferred constraints that failed on top of shared layers may be theirs.
            self.stack.close(self._full_reset, self._session_reset())
            if self.conn.closed:
                raise
            self.continued = False
            self.begin()
            return self._load_first(plan, then)

    def _load_first(
        self, plan: LoadPlan, then: Sequence[str] = ()
    ) -> tuple[tuple[CompiledFixture, ...], tuple[int, ...]]:
        stack = self.stack
        names = [f.name for f in plan]
        shared = stack.shared(names)
        for index, (layer, fixture) in enumerate(zip(stack.layers[:shared], plan, strict=False)):
            if layer.fixture is not fixture:  # the file changed since: load it again
                shared = index
                break
        before: list[str] = []
        if shared < len(stack.layers) or self.continued:
            # Back to the last shared layer (the previous test's end normally did this).
            before.append(f"ROLLBACK TO SAVEPOINT {stack.savepoint(shared)}")
            reset = stack.layers[shared - 1].reset if shared else stack.base_reset
            if reset and shared < len(stack.layers):
                before.append(reset.decode())
            del stack.layers[shared:]
        rest = LoadPlan(tuple(plan)[shared:])
        # A continued stack had no begin() round trip: the hint's mark rides first here.
        mark = mark_query(self.conn) if self.continued else ""
        if not rest.fixtures:
            # Everything is loaded: one simple query. A layer that was not the top when
            # its load was checked is checked now (its files may need those above it).
            check = () if not shared or stack.layers[shared - 1].checked else CHECK_DEFERRED
            try:
                self._marked(mark, *before, *check, *then, *self.protect_statements())
            except psycopg.Error:
                stack.reference = None
                raise
            if shared:
                stack.layers[shared - 1].checked = True
            self.protected()
            self.conn._sqlfix_savepoint = SAVEPOINT
            return (), ()
        if any(f.copies for f in rest):
            # COPY cannot run in load_layers' pipeline: these files load above the top
            # layer, not as layers; the test's end rolls them back with its own work.
            if before or mark:
                self._marked(mark, *before)
            stack.reference = None
            loaded = load(self.conn, rest, then=(*then, *self.protect_statements()),
                          role=self.role)
            self.protected()
            return rest.fixtures, loaded or ()
        depth = range(shared + 1, shared + 1 + len(rest.fixtures))
        savepoints = [stack.savepoint(d) for d in depth]
        try:
            done = load_layers(
                self.conn, rest, base=stack.savepoint(shared), savepoints=savepoints,
                positions=stack.positions, role=self.role or "none", before=before,
                after=(*then, *self.protect_statements()), mark=mark)
        except BaseException:
            stack.reference = None
            raise
        if done.mark is not None:
            self.take_mark(*done.mark)
        for fixture, savepoint, rows in zip(rest, savepoints, done.positions, strict=True):
            stack.layers.append(Layer(fixture.name, savepoint, reset_query_for(rows), fixture))
        stack.layers[-1].checked = True  # load_layers checked the deferred constraints last
        if rest.fixtures:
            stack.reference = None  # a new top: the verifier takes a new reference
        self.protected()
        self.conn._sqlfix_savepoint = SAVEPOINT
        return rest.fixtures, done.rows

    def _marked(self, mark: str, *statements: str) -> None:
        """`mark` (a `mark_query`, or "") and `statements`, in one round trip."""
        texts = [s for s in (mark, *statements) if s]
        results = run_all(self.conn, texts)
        if mark:
            found = result_rows(self.conn, results[0])
            self.take_mark(*(found[0][:3] if found else (None, None, None)))

    def end(self, keep: Sequence[str] | None = None) -> None:
        """Roll back the test; keep the layers `keep` (the next test's load order) shares.

        Without `keep` (or sharing nothing, or at the stack's bound) the stack's
        transaction ends as a test's without layers. Safe to repeat.
        """
        stack, conn = self.stack, self.conn
        conn._sqlfix_savepoint = None
        stack.tests += 1
        shared = stack.shared(keep) if keep is not None else 0
        if (shared == 0 or stack.tests >= stack.max_tests or self.escape is not None
                or not stack.is_open(conn)):
            if stack.conn is conn:
                stack.forget()
            super().end()
            return
        if shared < len(stack.layers):
            stack.reference = None  # a lower top: the verifier has nothing to compare with
        del stack.layers[shared:]
        self._reset_query = b""
        if not conn.closed:
            conn.reset_client()  # as Boundary.end
        parts = [f"ROLLBACK TO SAVEPOINT {stack.savepoint(shared)}".encode(),
                 LAYER_RESET if self._reset_session else b"", stack.top_reset()]
        try:
            conn.cursor(row_factory=tuple_row).execute(b"; ".join(p for p in parts if p))
            if self._reset_session:
                forget_prepared(conn)
            if conn.info.transaction_status != TransactionStatus.INTRANS:
                raise psycopg.OperationalError("the stack's transaction ended")
        except psycopg.Error as exc:
            # The stack is gone. End its transaction the way a test without layers ends.
            stack.forget()
            self._reset_query = stack.base_reset or self._full_reset
            if (isinstance(exc, psycopg.errors.InvalidSavepointSpecification)
                    and self.escape is None and not (conn.closed or conn.broken)):
                # The layer's savepoint (its name unguessable) exists only in the stack's
                # transaction: the test ended it and put sqlfix's marker back, which the
                # checks trust. The failed rollback is the probe: no round trip of its own.
                self.escape = self._escaped()
                self.escaped_at_end = True
            super().end()

    def _session_reset(self) -> bytes:
        from sqlfix.database.boundary import SESSION_RESET

        return SESSION_RESET if self._reset_session else b""
