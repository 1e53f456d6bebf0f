"""`sqlfix check`, the database half: load each fixture in a transaction that is rolled back.

For each fixture: count the rows of every user table, load the fixture and its
requirements with `sqlfix.loader.load` (the same loader the tests use), count
again, roll back. The report says what the fixture inserted (rows per table) and
how long the load took, or where the server rejected it. Nothing is committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg
from psycopg import sql

from sqlfix.cli.targets import Target, Workspace
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


def load_one(boundary: Boundary, workspace: Workspace, target: Target) -> Outcome:
    """Load `target` and its requirements inside `boundary`, then roll it back.

    The same boundary a test gets: its end rolls back and puts back the sequences
    the load advanced (nextval() is not undone by a rollback).
    """
    try:
        plan = workspace.plan(target)
    except FixtureError as exc:
        return Outcome(target, findings=exc.findings)
    began = time.perf_counter()
    try:
        boundary.begin()
        conn = boundary.conn
        before = count_rows(conn)
        began = time.perf_counter()
        load(conn, plan)
        millis = (time.perf_counter() - began) * 1000
        changes = _changes(before, count_rows(conn))
    except LoadError as exc:
        millis = (time.perf_counter() - began) * 1000
        return Outcome(target, millis, findings=(exc.finding,), statement=exc.statement)
    except (SqlfixError, psycopg.Error) as exc:  # e.g. a fixture that ended its own session
        millis = (time.perf_counter() - began) * 1000
        return Outcome(target, millis, findings=(_not_loaded(target, boundary, exc),))
    finally:
        boundary.end()
    return Outcome(target, millis, changes)


def _not_loaded(target: Target, boundary: Boundary, exc: Exception) -> Finding:
    """A failure the loader could not place on a line: the connection, the server."""
    text = str(exc).strip().replace("\n", " ")
    if boundary.conn.closed or boundary.conn.broken:
        what = (f"the connection was lost while loading ({type(exc).__name__}: {text}); a "
                "fixture must not end its own session. sqlfix reconnects for the next fixture")
    else:
        what = f"could not load ({type(exc).__name__}: {text})"
    return Finding("SQLF701", what, str(target.path))


def describe(outcome: Outcome, width: int) -> list[str]:
    """The report lines of one outcome: OK with rows per table, or FAIL with where and why."""
    name = outcome.target.key.ljust(width)
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
    new_boundary: NewBoundary, workspace: Workspace, targets: Sequence[Target], out: TextIO
) -> list[Outcome]:
    """Load each target in turn, reporting as it goes; progress on a terminal."""
    tty = out.isatty()
    width = max((len(t.key) for t in targets), default=0)
    outcomes = []
    for number, target in enumerate(targets, start=1):
        if tty:
            out.write(f"\r\x1b[K[{number}/{len(targets)}] {target.key}")
            out.flush()
        outcome = load_one(new_boundary(), workspace, target)
        outcomes.append(outcome)
        if tty:
            out.write("\r\x1b[K")
        out.write("\n".join(describe(outcome, width)) + "\n")
        out.flush()
    return outcomes
