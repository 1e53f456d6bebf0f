"""`sqlfix check`, the database half: load each fixture in a transaction that is rolled back.

For each fixture: count the rows of every user table, load the fixture and its
requirements with `sqlfix.loader.load` (the same loader the tests use), count
again, roll back. The report says what the fixture inserted (rows per table) and
how long the load took, or where the server rejected it. Nothing is committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TextIO

import psycopg
from psycopg import sql

from sqlfix.cli.targets import Target, Workspace
from sqlfix.compiler.library import LoadPlan, label_ids
from sqlfix.compiler.plan import parse_expect_error
from sqlfix.database.boundary import Boundary
from sqlfix.database.loader import load
from sqlfix.errors import Finding, FixtureError, LoadError, SqlfixError

# The user tables; sqlfix's own bookkeeping schemas are left out.
USER_TABLES = b"""
SELECT schemaname, tablename FROM pg_catalog.pg_tables
WHERE schemaname <> 'information_schema'
  AND schemaname NOT LIKE 'pg\\_%' AND schemaname NOT LIKE '\\_sqlfix%'
ORDER BY schemaname, tablename
"""


@dataclass(frozen=True)
class Outcome:
    """How loading one fixture (with its requirements) went."""

    target: Target
    millis: float = 0.0
    changes: tuple[tuple[str, int], ...] = ()  # (table, rows added) for tables that changed
    findings: tuple[Finding, ...] = ()  # why it failed; empty when it loaded
    statement: str = ""  # the statement the server rejected
    expected: str = ""  # an expect-error fixture that failed as it should: the error

    @property
    def ok(self) -> bool:
        return not self.findings


def count_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Exact rows per user table; `public` tables by bare name, others as schema.table.

    One `count(*) ... UNION ALL` query for all tables (plain SQL: a server built without
    libxml has no query_to_xml). `FROM ONLY`, so a partition's rows are not counted
    again under its parent.
    """
    tables = conn.execute(USER_TABLES).fetchall()
    if not tables:
        return {}
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}::int, count(*) FROM ONLY {}").format(
            sql.Literal(number), sql.Identifier(schema, table)
        )
        for number, (schema, table) in enumerate(tables)
    )
    counts = {}
    for number, rows in conn.execute(query).fetchall():
        schema, table = tables[number]
        counts[table if schema == "public" else f"{schema}.{table}"] = int(rows)
    return counts


def _changes(before: dict[str, int], after: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(
        (table, after[table] - before.get(table, 0))
        for table in sorted(after)
        if after[table] != before.get(table, 0)
    )


NewBoundary = Callable[[], Boundary]
ServerFault = Callable[[], "str | None"]  # the embedded server's death in words, or None


def _alive() -> str | None:
    return None


def load_one(
    boundary: Boundary, workspace: Workspace, target: Target, died: ServerFault = _alive
) -> Outcome:
    """Load `target` and its requirements inside `boundary`, then roll it back.

    The same boundary a test gets: its end rolls back and puts back the sequences
    the load advanced (nextval() is not undone by a rollback). `died()` says whether
    the server died, when the connection is lost.
    """
    try:
        plan = workspace.plan(target)
        expect = parse_expect_error(workspace.library.source(target.key).text) if not \
            target.outside else parse_expect_error(target.path.read_text(encoding="utf-8"))
    except FixtureError as exc:
        return Outcome(target, findings=exc.findings)
    outcome = _load(boundary, plan, target, died)
    return _judge(outcome, expect) if expect else outcome


def _judge(outcome: Outcome, expect: str) -> Outcome:
    """An expect-error fixture passes when its own load fails with that SQLSTATE."""
    if outcome.ok:
        finding = Finding(
            "SQLF702", f"the fixture loaded, but its header says `-- sqlfix: expect-error "
            f"{expect}`: it is meant to fail with that SQLSTATE; fix the fixture or drop "
            "the line", outcome.target.shown, 1, 1)
        return replace(outcome, findings=(finding,), changes=())
    (finding,) = outcome.findings
    if finding.code == "SQLF701" and f": {expect} " in finding.message and \
            finding.path == outcome.target.shown:
        return replace(outcome, findings=(), expected=finding.message)
    return replace(outcome, findings=(replace(
        finding, message=f"{finding.message} (expected SQLSTATE {expect} from this file)"),))


def _load(boundary: Boundary, plan: LoadPlan, target: Target, died: ServerFault) -> Outcome:
    began = time.perf_counter()
    try:
        boundary.begin()
        conn = boundary.conn
        before = count_rows(conn)
        began = time.perf_counter()
        load(conn, plan)
        boundary.advance_sequences(label_ids(plan))
        millis = (time.perf_counter() - began) * 1000
        changes = _changes(before, count_rows(conn))
    except LoadError as exc:
        millis = (time.perf_counter() - began) * 1000
        return Outcome(target, millis, findings=(exc.finding,), statement=exc.statement)
    except (SqlfixError, psycopg.Error) as exc:  # e.g. a fixture that ended its own session
        millis = (time.perf_counter() - began) * 1000
        return Outcome(target, millis, findings=(_not_loaded(target, boundary, exc, died),))
    finally:
        boundary.end()
    return Outcome(target, millis, changes)


def _not_loaded(
    target: Target, boundary: Boundary, exc: Exception, died: ServerFault
) -> Finding:
    """A failure the loader could not place on a line: the connection, the server."""
    text = str(exc).strip().replace("\n", " ")
    lost = boundary.conn.closed or boundary.conn.broken
    death = died() if lost else None
    if death is not None:
        what = (f"the database server died during this load ({type(exc).__name__}: {text}); "
                + death.replace("\n", "\n    ") + "\n  sqlfix starts it again for the next "
                "fixture. If this fixture made it crash, its statements are the place to look")
    elif lost:
        what = (f"the connection was lost while loading ({type(exc).__name__}: {text}); a "
                "fixture must not end its own session. sqlfix reconnects for the next fixture")
    else:
        what = f"could not load ({type(exc).__name__}: {text})"
    return Finding("SQLF701", what, target.shown)


def describe(outcome: Outcome, width: int) -> list[str]:
    """The report lines of one outcome: OK with rows per table, or FAIL with where and why."""
    name = outcome.target.key.ljust(width)
    if outcome.ok and outcome.expected:
        return [f"OK    {name}  failed as expected: {outcome.expected}"]
    if outcome.ok:
        rows = ", ".join(f"{table} {delta:+d}" for table, delta in outcome.changes)
        return [f"OK    {name}  {outcome.millis:7.1f} ms  {rows or 'no rows changed'}"]
    lines = [f"FAIL  {name}".rstrip()]
    lines.extend(f"  {finding.format()}" for finding in outcome.findings)
    statement = outcome.statement.strip().splitlines()
    if statement:
        shown = statement[:6] + (["..."] if len(statement) > 6 else [])
        lines.append("  statement:")
        lines.extend(f"    {line}" for line in shown)
    return lines


def run(
    new_boundary: NewBoundary, workspace: Workspace, targets: Sequence[Target], out: TextIO,
    died: ServerFault = _alive,
) -> list[Outcome]:
    """Load each target in turn, reporting as it goes; progress on a terminal.

    Stops (with a line saying so) when the database cannot be reached again, e.g. a
    server that died and does not start; the fixtures left are not in the result.
    """
    tty = out.isatty()
    width = max((len(t.key) for t in targets), default=0)
    outcomes = []
    for number, target in enumerate(targets, start=1):
        if tty:
            out.write(f"\r\x1b[K[{number}/{len(targets)}] {target.key}")
            out.flush()
        try:
            boundary = new_boundary()
        except (SqlfixError, psycopg.Error) as exc:
            if tty:
                out.write("\r\x1b[K")
            left = len(targets) - number + 1
            text = " ".join(str(exc).split())
            out.write(f"STOP  the database cannot be reached any more: {text}\n      "
                      f"{left} fixture{'s were' if left != 1 else ' was'} not checked\n")
            break
        outcome = load_one(boundary, workspace, target, died)
        outcomes.append(outcome)
        if tty:
            out.write("\r\x1b[K")
        out.write("\n".join(describe(outcome, width)) + "\n")
        out.flush()
    return outcomes
