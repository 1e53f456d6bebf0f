"""Execute a load plan on a connection: each statement alone, errors mapped to file:line.

Every statement the guard approved goes to the server as its own extended-protocol
message (Parse/Bind/Execute, no parameters), all of them in one psycopg pipeline
after a savepoint, so the load still costs about one round trip. The server
refuses a Parse message that holds more than one command ("cannot insert multiple
commands into a prepared statement"): if the guard and the server ever disagreed
about where a statement ends, the load fails instead of running a statement the
guard did not see. On error the savepoint is rolled back (the database is as it
was); the failing statement is the first one without a result, or, for a deferred
constraint, found by replaying the statements one by one (slow, error path only).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.pq.abc import PGresult

from sqlfix import docs_url
from sqlfix.compiler.guard import Statement
from sqlfix.compiler.library import CompiledFixture, LoadPlan
from sqlfix.compiler.since import needed_version
from sqlfix.database import fixture_role
from sqlfix.database.boundary import CHECK_DEFERRED, UNDO_CHECK, SqlfixConnection
from sqlfix.database.copy_load import load_with_copies
from sqlfix.database.pipeline import StatementFailed, deliver, rows, run_all, run_each, written
from sqlfix.errors import Finding, LoadError


class _QuietClose(logging.Filter):
    """Drops psycopg's "error ignored terminating <Pipeline|Copy>: ..." for sqlfix's connections.

    When a statement of a load fails, psycopg raises its error inside the pipeline (or
    COPY) block, and closing the block then fails again with "pipeline aborted"; psycopg
    logs that second failure raw. sqlfix reports the first one with file and line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg != "error ignored terminating %r: %s" or not isinstance(args, tuple):
            return True
        owner = args[0] if args else None
        conn = getattr(owner, "_conn", None) or getattr(owner, "connection", None)
        return not isinstance(conn, SqlfixConnection)


logging.getLogger("psycopg").addFilter(_QuietClose())

_SAVEPOINT = "sqlfix_load"
# Deferred constraints would otherwise be checked only at a COMMIT that never comes:
# check them now, the way the test connection's commit() does.
_CHECK_DEFERRED = "; ".join(CHECK_DEFERRED) + ";"


def plan_sql(plan: LoadPlan) -> str:
    """All fixtures of the plan as one SQL text, in load order (for display and benchmarks)."""
    return "\n".join(f.rendered.sql for f in plan)


def send_one(conn: psycopg.Connection[Any], sql: str) -> psycopg.Cursor[Any]:
    """Execute `sql` as one extended-protocol message: the server refuses two commands in it.

    binary=True makes psycopg use the extended protocol also outside a pipeline
    (without parameters it would otherwise send a simple query, which may hold
    many commands); prepare=False keeps it to the unnamed statement. Raises
    psycopg.Error.
    """
    return conn.execute(sql.encode(), prepare=False, binary=True)


# Settings that change how the server reads SQL text (the guard refuses them in fixtures):
# set as the guard assumed for the load; undone with the load's savepoint on failure.
_READ_AS_GUARDED = (
    "SET LOCAL standard_conforming_strings = on",
    "SET LOCAL backslash_quote = safe_encoding",
    "SET LOCAL client_encoding = 'UTF8'",
)


def _load_plan(
    conn: psycopg.Connection[Any], plan: LoadPlan, before: Sequence[str] = (),
    after: Sequence[str] = (),
) -> tuple[int, ...]:
    """`load` without the role; returns the rows each fixture wrote, as `load`.

    `before` runs first and `after` after a successful load, in the same round trip
    (plans with COPY blocks: in round trips of their own).
    """
    if any(f.copies for f in plan):
        # COPY cannot run inside a pipeline: these plans go stretch by stretch. Checked
        # first: a fixture of COPY blocks alone has no statements outside them.
        run_all(conn, before)
        loaded = load_with_copies(conn, plan, _READ_AS_GUARDED)
        run_all(conn, after)
        return loaded
    statements = [(f, s) for f in plan for s in f.statements]
    head = [*before, f"SAVEPOINT {_SAVEPOINT}", *_READ_AS_GUARDED]
    tail = [*CHECK_DEFERRED, f"RELEASE SAVEPOINT {_SAVEPOINT}", *after]
    # The guard read the text as PostgreSQL reads it by default; a test may have
    # changed how the server reads strings on this session since: _READ_AS_GUARDED
    # puts that back inside the load's savepoint.
    texts = [t.encode() for t in head] + [s.text.encode() for _, s in statements]
    try:
        results = run_each(conn, texts + [t.encode() for t in tail])
    except StatementFailed as failed:
        if failed.index < len(before) + 1:
            # the transaction was unusable before the load: not the fixtures' fault
            raise failed.error from None
        error = _pipeline_error(conn, plan, statements, failed.index - len(head),
                                failed.error, _SAVEPOINT, _READ_AS_GUARDED)
        conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE SAVEPOINT {_SAVEPOINT}".encode())
        raise error from failed.error
    deliver(conn, tail, results[len(texts):])
    return _rows_per_fixture(plan, results[len(head):len(texts)])


def _rows_per_fixture(plan: LoadPlan, results: Sequence[PGresult]) -> tuple[int, ...]:
    """Rows written per fixture, from each statement's own result (one per statement)."""
    counts = iter(written(r) for r in results)
    return tuple(sum(next(counts) for _ in f.statements) for f in plan)


def _locate_failure(
    conn: psycopg.Connection[Any], plan: LoadPlan, savepoint: str = _SAVEPOINT,
    setup: Sequence[str] = _READ_AS_GUARDED,
) -> LoadError | None:
    """Replay statement by statement (inside the savepoint) to find the one that fails.

    `setup`: what the load ran first inside `savepoint` (the rollback to it undoes it).

    First as loaded: a statement that fails by itself is the culprit. If none does,
    a deferred constraint failed at the end: the culprit is the statement after
    which the check starts failing for good (a fixture may insert a child before
    its parent under SET CONSTRAINTS ALL DEFERRED).
    """
    statements = [(f, s) for f in plan for s in f.statements]
    for setting in setup:  # undone by the rollback to the savepoint: again
        send_one(conn, setting)
    for fixture, statement in statements:
        try:
            send_one(conn, statement.text)
        except psycopg.Error as exc:
            return _load_error(conn, fixture, statement.offset, statement.text, exc)
    conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}".encode())
    for setting in setup:
        send_one(conn, setting)
    culprit: tuple[CompiledFixture, Any, psycopg.Error] | None = None
    for fixture, statement in statements:
        send_one(conn, statement.text)
        try:
            conn.execute(_CHECK_DEFERRED.encode())
            culprit = None
        except psycopg.Error as failed:
            conn.execute(UNDO_CHECK.encode())
            culprit = culprit or (fixture, statement, failed)
    if culprit is None:
        return None
    return _load_error(conn, culprit[0], culprit[1].offset, culprit[1].text, culprit[2])


def _load_error(
    conn: psycopg.Connection[Any],
    fixture: CompiledFixture,
    offset: int,
    text: str,
    exc: psycopg.Error,
) -> LoadError:
    diag = exc.diag
    position = diag.statement_position
    if position and position.isdigit():
        offset += int(position) - 1  # syntax errors say where in the statement
    line, col = fixture.locate(offset)
    parts = [f"{diag.sqlstate or '?'} {diag.message_primary or str(exc).strip()}"]
    too_new = _needs_newer_server(text, diag.sqlstate, conn.info.server_version)
    if too_new:
        parts.insert(0, too_new)
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail.rstrip('.')}")
    if diag.message_hint:
        parts.append(f"HINT: {diag.message_hint.rstrip('.')}")
    message = "; ".join(parts) + "; nothing from this load was kept"
    finding = Finding(
        "SQLF701", f"server rejected the statement: {message}", fixture.rendered.path, line, col
    )
    return LoadError(finding, diag.sqlstate, text)


def _pipeline_error(
    conn: psycopg.Connection[Any], plan: LoadPlan,
    statements: Sequence[tuple[CompiledFixture, Statement]], failed: int,
    exc: psycopg.Error, savepoint: str, setup: Sequence[str],
) -> LoadError:
    """After a failed pipeline: back to `savepoint`, and the LoadError naming the culprit.

    `failed`: the index in `statements` of the message that failed (the server
    skips the rest of a pipeline after an error); outside them (a deferred
    constraint, a check at the end), the plan is run again piece by piece from
    `savepoint` (with `setup` first) to find the culprit. The caller rolls back again.
    """
    conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}".encode())
    if 0 <= failed < len(statements):
        fixture, statement = statements[failed]
        return _load_error(conn, fixture, statement.offset, statement.text, exc)
    return _locate_failure(conn, plan, savepoint, setup) or _unplaced(conn, plan, exc)


def _unplaced(conn: psycopg.Connection[Any], plan: LoadPlan, exc: psycopg.Error) -> LoadError:
    # The batch failed but no single statement did (e.g. a deferred constraint).
    last = plan.fixtures[-1]
    return _load_error(conn, last, 0, plan_sql(plan), exc)


def load(
    conn: psycopg.Connection[Any], plan: LoadPlan, *, then: Sequence[str] = (),
    role: str | None = None,
) -> tuple[int, ...] | None:
    """Run `plan` inside the connection's open transaction; raises LoadError.

    As the restricted fixture role where the session set one up (see
    `fixture_role`). Returns the rows each fixture wrote (INSERT, UPDATE,
    MERGE, COPY as the server counted them), in plan order. On error nothing
    of the plan remains and the transaction is usable again.

    `then`: statements to run after a successful load (the boundary's
    savepoint), back in the role the load started in. `role`: that role
    (`current_setting('role')`), when the caller knows it: the switch to the
    fixture role and back then rides in the load's own round trip; unknown, it
    costs one round trip each way. Nothing is sent for an empty plan.
    """
    if not plan.fixtures:
        return ()
    switch = fixture_role.switch(conn, role) if role is not None else None
    if switch is None:
        with fixture_role.acting_as(conn):
            loaded = _load_plan(conn, plan)
        run_all(conn, then)
        return loaded
    enter, leave = switch
    try:
        return _load_plan(conn, plan, enter, (*leave, *then))
    except LoadError:
        if leave and conn.info.transaction_status == TransactionStatus.INTRANS:
            conn.execute("; ".join(leave).encode())  # the role was set before the savepoint
        raise


def _needs_newer_server(text: str, sqlstate: str | None, server_version: int) -> str:
    """Words for a syntax error an older server gave to newer syntax (see compiler.since);
    "" for any other error. An older grammar reads JSON_VALUE(...), JSON(...) and the like
    as calls of functions it does not have: undefined_function, not a syntax error."""
    if sqlstate not in ("42601", "42883"):  # syntax_error, undefined_function
        return ""
    needed = needed_version(text)
    if needed is None or server_version >= needed[0]:
        return ""
    since, what = needed
    major, have = since // 10000, server_version // 10000
    instead = " (INSERT ... ON CONFLICT, UPDATE ... FROM)" if what == "MERGE" else ""
    return (
        f"{what} needs PostgreSQL {major} or later and this server is {have}; test on a "
        f"newer one (the embedded server: server_version = \"{major}\" in [tool.sqlfix] "
        f"or sqlfix_server_version = {major} in pytest's configuration, "
        f"or SQLFIX_PG_BINDIR at its bin/; with a DSN, a server of {major} or later; see "
        f"{docs_url('versions')}) or rewrite the statement for {have}{instead}"
    )


@dataclass(frozen=True)
class LayeredLoad:
    """What `load_layers` did: rows per fixture (as `load`), sequence positions after each."""

    rows: tuple[int, ...]
    positions: tuple[list[tuple[Any, ...]], ...]  # per fixture; [] without a positions query
    mark: tuple[Any, ...] | None = None  # the row of a boundary.mark_query, when asked for


def load_layers(
    conn: psycopg.Connection[Any], plan: LoadPlan, *, base: str, savepoints: Sequence[str],
    positions: bytes = b"", role: str = "none", before: Sequence[str] = (),
    after: Sequence[str] = (), mark: str = "",
) -> LayeredLoad:
    """Load `plan` one fixture at a time, each followed by a savepoint; raises LoadError.

    The savepoint layers of `sqlfix.database.layers`: `savepoints[i]` is taken
    right after fixture i (back in `role`, so rolling back to it never leaves the
    fixture role on), then `positions` (a `baseline.positions_query`) is read.
    `base` is the savepoint the load starts from (an existing one); on error the
    transaction goes back to it (nothing of the plan remains) and keeps it.
    `before` and `after` run first and last, all in one round trip; with `mark`,
    (a `boundary.mark_query`) the second-connection hint's mark is read after
    `before` (`LayeredLoad.mark`).
    """
    enter, leave = fixture_role.switch(conn, role)
    per_file = (*enter, *_READ_AS_GUARDED)
    statements = [(f, s) for f in plan for s in f.statements]
    texts: list[str] = [*before, mark or "SELECT 1"]  # the last: every `before` succeeded
    ready = len(texts) - 1
    at: dict[int, int] = {}  # index in texts -> index in statements
    reads: list[int | None] = []  # per fixture: the index of its positions read
    for fixture, savepoint in zip(plan, savepoints, strict=True):
        texts.extend(per_file)
        for statement in fixture.statements:
            at[len(texts)] = len(at)
            texts.append(statement.text)
        texts.extend((*leave, f"SAVEPOINT {savepoint}"))
        reads.append(len(texts) if positions else None)
        if positions:
            texts.append(positions.decode())
    texts.extend((*CHECK_DEFERRED, *after))
    try:
        results = run_each(conn, [t.encode() for t in texts])
    except StatementFailed as failed:
        if failed.index <= ready:
            raise failed.error from None  # the transaction was unusable before the load
        error = _pipeline_error(conn, plan, statements, at.get(failed.index, -1),
                                failed.error, base, per_file)
        error.at_check = failed.index not in at
        conn.execute(f"ROLLBACK TO SAVEPOINT {base}".encode())
        raise error from failed.error
    deliver(conn, texts, results)
    written_rows = _rows_per_fixture(plan, [results[i] for i in sorted(at)])
    found = tuple(rows(conn, results[i]) if i is not None else [] for i in reads)
    marked = rows(conn, results[ready])[0] if mark else None
    return LayeredLoad(written_rows, found, marked[:3] if marked is not None else None)
