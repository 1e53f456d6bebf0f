"""Load a plan whose fixtures hold COPY ... FROM stdin blocks (pg_dump's data format).

The SQL between blocks goes statement by statement, each its own extended-protocol
message in one pipeline per stretch (as in loader.py: the server refuses a message
holding two commands); each block's rows go through psycopg's COPY support
(`cursor.copy`, which cannot run in a pipeline), the fastest way into PostgreSQL.
All of it runs under one savepoint: on any error the savepoint is rolled back, so
nothing of the load remains, and the error names the file, line and column (for a
row: the row's line, from the server's "COPY t, line N" context).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from sqlfix.compiler.copy_blocks import CopyBlock
from sqlfix.compiler.guard import Statement
from sqlfix.compiler.library import CompiledFixture, LoadPlan
from sqlfix.database.boundary import CHECK_DEFERRED
from sqlfix.errors import Finding, LoadError

_SAVEPOINT = "sqlfix_load"
_COPY_LINE = re.compile(r"\bCOPY [^,]+, line (\d+)")
_KEY = re.compile(r"^Key \((?P<col>[^,()]+)\)=\((?P<value>.*)\) ")
_Step = tuple[int, int, CopyBlock | None]  # (start, end, block): SQL text when block is None


def steps(fixture: CompiledFixture) -> Iterator[_Step]:
    """The fixture's SQL stretches and COPY blocks, in text order."""
    pos = 0
    for block in fixture.copies:
        if any(pos <= s.offset < block.start for s in fixture.statements):
            yield pos, block.start, None
        yield block.start, block.end, block
        pos = block.end
    if any(s.offset >= pos for s in fixture.statements):
        yield pos, len(fixture.rendered.sql), None


def load_with_copies(
    conn: psycopg.Connection[Any], plan: LoadPlan, settings: Sequence[str] = ()
) -> tuple[int, ...]:
    """Run `plan` inside the connection's transaction; raises LoadError, keeping nothing.

    `settings` (SET LOCAL statements: how the server reads SQL text, as the guard read
    it) run first, inside the savepoint. Returns the rows each fixture wrote (INSERT,
    UPDATE, MERGE, COPY as the server counted them), in plan order.
    """
    conn.execute(f"SAVEPOINT {_SAVEPOINT}".encode())
    done: list[tuple[CompiledFixture, _Step]] = []
    sent: list[psycopg.Cursor[Any]] = []  # the current stretch's statements
    rows: list[int] = []
    try:
        _settings(conn, settings)
        for fixture in plan:
            written = 0
            for step in steps(fixture):
                sent.clear()
                written += _run(conn, fixture, step, sent)
                done.append((fixture, step))
            rows.append(written)
        conn.execute(("; ".join(CHECK_DEFERRED)).encode())
    except psycopg.Error as exc:
        conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}".encode())
        _settings(conn, settings)  # undone by the rollback: again, for the replay
        error = _locate(conn, plan, done, sent, exc)
        conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE SAVEPOINT {_SAVEPOINT}".encode())
        raise error from exc
    conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}".encode())
    return tuple(rows)


def _settings(conn: psycopg.Connection[Any], settings: Sequence[str]) -> None:
    for setting in settings:
        _send(conn, setting)


_WRITES = ("INSERT", "UPDATE", "MERGE", "COPY")


def _written(cursor: psycopg.Cursor[Any]) -> int:
    return cursor.rowcount if (cursor.statusmessage or "").startswith(_WRITES) else 0


def _send(conn: psycopg.Connection[Any], sql: str) -> psycopg.Cursor[Any]:
    """One extended-protocol message (see loader.send_one): never two commands in one."""
    return conn.execute(sql.encode(), prepare=False, binary=True)


def _between(fixture: CompiledFixture, start: int, end: int) -> list[Statement]:
    return [s for s in fixture.statements if start <= s.offset < end]


def _run(
    conn: psycopg.Connection[Any], fixture: CompiledFixture, step: _Step,
    sent: list[psycopg.Cursor[Any]],
) -> int:
    """Run one step; returns the rows it wrote."""
    start, end, block = step
    sql = fixture.rendered.sql
    if block is None:
        with conn.pipeline():  # COPY cannot run in a pipeline: one pipeline per stretch
            for statement in _between(fixture, start, end):
                sent.append(_send(conn, statement.text))
        return sum(_written(c) for c in sent)
    cursor = conn.cursor()
    with cursor.copy(block.statement.encode()) as copy:
        copy.write(block.data(sql).encode())
    return max(cursor.rowcount, 0)


def _locate(
    conn: psycopg.Connection[Any], plan: LoadPlan, done: list[tuple[CompiledFixture, _Step]],
    sent: list[psycopg.Cursor[Any]], exc: psycopg.Error,
) -> LoadError:
    """Where the error is: the step after the last that worked; its statement or row."""
    pending = [(f, s) for f in plan for s in steps(f)]
    if len(done) == len(pending):  # every step ran: a deferred constraint failed at the end
        fixture = plan.fixtures[-1]
        return _error(fixture, 0, fixture.rendered.sql[:2000], exc)
    fixture, (start, end, block) = pending[len(done)]
    sql = fixture.rendered.sql
    if block is not None:
        return _row_error(fixture, block, exc)
    statements = _between(fixture, start, end)
    failed = next((i for i, c in enumerate(sent) if c.pgresult is None), None)
    if failed is not None and failed < len(statements):  # the first statement without a result
        return _error(fixture, statements[failed], statements[failed].text, exc)
    # Replay the steps that worked, then this stretch one statement at a time.
    for f, step in done:
        _run(conn, f, step, [])
    for statement in statements:
        try:
            _send(conn, statement.text)
        except psycopg.Error as error:
            return _error(fixture, statement, statement.text, error)
    return _error(fixture, start, sql[start:end], exc)


def _row_error(fixture: CompiledFixture, block: CopyBlock, exc: psycopg.Error) -> LoadError:
    sql = fixture.rendered.sql
    match = _COPY_LINE.search(exc.diag.context or "")
    offset = block.data_start
    if match:
        for _ in range(int(match.group(1)) - 1):
            offset = sql.index("\n", offset, block.end) + 1
    else:  # checked after the last row (a foreign key): the row holding the key
        row_at = _row_with_key(sql, block, exc.diag.message_detail or "")
        if row_at is None:  # no row's fault: the statement's (a missing table or column)
            return _error(fixture, block.start, f"{block.statement};", exc)
        offset = row_at
    newline = sql.find("\n", offset, block.end)
    row = sql[offset : newline if newline >= 0 else block.end]
    return _error(fixture, offset, f"{block.statement};\n{row}", exc)


def _row_with_key(sql: str, block: CopyBlock, detail: str) -> int | None:
    """Offset of the first row whose field is the single-column key named in `detail`."""
    key = _KEY.match(detail)
    names = list(block.columns)
    if key is None or key["col"].strip('"') not in names or not block.text_format:
        return None
    index, offset = names.index(key["col"].strip('"')), block.data_start
    for row in block.data(sql).split("\n"):
        fields = row.split("\t")
        if index < len(fields) and fields[index] == key["value"]:
            return offset
        offset += len(row) + 1
    return None


def _error(
    fixture: CompiledFixture, at: int | Statement, text: str, exc: psycopg.Error
) -> LoadError:
    """SQLF701 at offset `at`, or in statement `at` where the server's position says."""
    diag = exc.diag
    offset = at if isinstance(at, int) else at.offset
    position = diag.statement_position
    if not isinstance(at, int) and position and position.isdigit():
        offset += int(position) - 1  # syntax errors say where in the statement
    line, col = fixture.locate(offset)
    parts = [f"{diag.sqlstate or '?'} {diag.message_primary or str(exc).strip()}"]
    parts += [f"{label}: {value.rstrip('.')}" for label, value in
              (("DETAIL", diag.message_detail), ("HINT", diag.message_hint)) if value]
    if diag.context and _COPY_LINE.search(diag.context):
        parts.append(f"CONTEXT: {diag.context.strip()}")
    message = "; ".join(parts) + "; nothing from this load was kept"
    finding = Finding(
        "SQLF701", f"server rejected the statement: {message}", fixture.rendered.path, line, col)
    return LoadError(finding, diag.sqlstate, text)
