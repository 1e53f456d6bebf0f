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

from typing import Any

import psycopg

from sqlfix.compiler.library import CompiledFixture, LoadPlan
from sqlfix.database import fixture_role
from sqlfix.database.boundary import CHECK_DEFERRED, UNDO_CHECK
from sqlfix.errors import Finding, LoadError

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


def _load_plan(conn: psycopg.Connection[Any], plan: LoadPlan, then: str = "") -> None:
    """Run `plan` inside the connection's open transaction; raises LoadError.

    On error nothing of the plan remains and the transaction is usable again.
    """
    statements = [(f, s) for f in plan for s in f.statements]
    if not statements:
        return
    cursors: list[psycopg.Cursor[Any]] = []
    savepoint: psycopg.Cursor[Any] | None = None
    try:
        with conn.pipeline():
            savepoint = send_one(conn, f"SAVEPOINT {_SAVEPOINT}")
            for _, statement in statements:
                cursors.append(send_one(conn, statement.text))
            for check in CHECK_DEFERRED:
                send_one(conn, check)
            send_one(conn, f"RELEASE SAVEPOINT {_SAVEPOINT}")
            if then:
                send_one(conn, then)  # the boundary's savepoint, in the same round trip
    except psycopg.Error as exc:
        if savepoint is None or savepoint.pgresult is None:
            raise  # the transaction was unusable before the load: not the fixtures' fault
        conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}".encode())
        failed = next((i for i, c in enumerate(cursors) if c.pgresult is None), None)
        if failed is not None:
            fixture, statement = statements[failed]
            error = _load_error(fixture, statement.offset, statement.text, exc)
        else:
            error = _locate_failure(conn, plan) or _unplaced(plan, exc)
        conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE SAVEPOINT {_SAVEPOINT}".encode())
        raise error from exc


def _locate_failure(conn: psycopg.Connection[Any], plan: LoadPlan) -> LoadError | None:
    """Replay statement by statement (inside the savepoint) to find the one that fails.

    First as loaded: a statement that fails by itself is the culprit. If none does,
    a deferred constraint failed at the end: the culprit is the statement after
    which the check starts failing for good (a fixture may insert a child before
    its parent under SET CONSTRAINTS ALL DEFERRED).
    """
    statements = [(f, s) for f in plan for s in f.statements]
    for fixture, statement in statements:
        try:
            send_one(conn, statement.text)
        except psycopg.Error as exc:
            return _load_error(fixture, statement.offset, statement.text, exc)
    conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}".encode())
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
    return _load_error(culprit[0], culprit[1].offset, culprit[1].text, culprit[2])


def _load_error(fixture: CompiledFixture, offset: int, text: str, exc: psycopg.Error) -> LoadError:
    diag = exc.diag
    position = diag.statement_position
    if position and position.isdigit():
        offset += int(position) - 1  # syntax errors say where in the statement
    line, col = fixture.locate(offset)
    parts = [f"{diag.sqlstate or '?'} {diag.message_primary or str(exc).strip()}"]
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail.rstrip('.')}")
    if diag.message_hint:
        parts.append(f"HINT: {diag.message_hint.rstrip('.')}")
    message = "; ".join(parts) + "; nothing from this load was kept"
    finding = Finding(
        "SQLF701", f"server rejected the statement: {message}", fixture.rendered.path, line, col
    )
    return LoadError(finding, diag.sqlstate, text)


def _unplaced(plan: LoadPlan, exc: psycopg.Error) -> LoadError:
    # The batch failed but no single statement did (e.g. a deferred constraint).
    last = plan.fixtures[-1]
    return _load_error(last, 0, plan_sql(plan), exc)


def load(
    conn: psycopg.Connection[Any], plan: LoadPlan, *, savepoint_taken: bool = False, then: str = ""
) -> bool:
    """Run `plan` inside the connection's open transaction; raises LoadError.

    As the restricted fixture role where the session set one up (see
    `fixture_role`). On error nothing of the plan remains and the transaction
    is usable again.
    `then`: one statement to run after a successful load, in the same round trip
    (the boundary's savepoint). `savepoint_taken` (the boundary's begin() took
    `sqlfix_load`) changes nothing here: the pipeline sends its own savepoint in
    the same round trip anyway. Returns whether anything was sent.
    """
    del savepoint_taken
    if not plan.fixtures:
        return False
    with fixture_role.acting_as(conn):
        _load_plan(conn, plan, then)
    return True
