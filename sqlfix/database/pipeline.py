"""Many statements, one protocol message each, one round trip, little Python per statement.

A fixture load sends every statement as its own extended-protocol message
(Parse/Bind/Execute, unnamed, no parameters): the server refuses a message that
holds two commands, so a load fails closed if sqlfix and the server ever disagree
about where a statement ends. psycopg's `Connection.pipeline()` does that, but
builds a cursor, converts the query and matches results for every `execute()`:
~80 µs of Python a statement, more than the server takes for a small INSERT
(measured: 20 rows loaded, 20 messages, 3.6 ms through psycopg's pipeline against
2.0 ms this way, and 1.7 ms for the same SQL as one simple query).

`run_each` talks to libpq's pipeline mode directly (`psycopg.pq`), and waits with
psycopg's own non-blocking generators, so large loads cannot deadlock on full
socket buffers and Ctrl-C cancels the statement in progress as psycopg does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from typing import Any

import psycopg
from psycopg import generators
from psycopg.adapt import Transformer
from psycopg.pq import ExecStatus, PipelineStatus, TransactionStatus
from psycopg.pq.abc import PGresult

_OK = (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK, ExecStatus.EMPTY_QUERY)


class StatementFailed(Exception):
    """The statement `index` of a `run_each` failed with `error` (a psycopg.Error).

    The statements after it did not run (the server skips the rest of a pipeline
    after an error); the transaction is aborted, as after a failed execute().
    `results` holds the results of the statements before it.
    """

    def __init__(self, index: int, error: psycopg.Error, results: list[PGresult]) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error
        self.results = results


def run_each(conn: psycopg.Connection[Any], texts: Sequence[bytes]) -> list[PGresult]:
    """Run `texts` in order, each as its own extended-protocol message, in one round trip.

    Returns one libpq result per text. Raises StatementFailed (which statement, the
    server's error) when one fails, psycopg.OperationalError when the connection
    is lost, psycopg.ProgrammingError when the connection is in pipeline mode already.
    Outside a transaction, a connection not in autocommit mode begins one first, as
    psycopg's execute() does; in autocommit mode the statements run in the implicit
    transaction of the pipeline, committed at its end.
    """
    pgconn = conn.pgconn
    with conn.lock:
        if pgconn.pipeline_status != PipelineStatus.OFF:
            raise psycopg.ProgrammingError("the connection is in pipeline mode already")
        if not conn.autocommit and pgconn.transaction_status == TransactionStatus.IDLE:
            texts = [b"BEGIN", *texts]  # as psycopg's execute() would begin one
            began = 1
        else:
            began = 0
        commands: deque[Callable[[], None]] = deque(
            partial(pgconn.send_query_params, text, None) for text in texts)
        commands.append(pgconn.pipeline_sync)
        pgconn.enter_pipeline_mode()
        try:
            fetched = conn.wait(generators.pipeline_communicate(pgconn, commands))
            while not fetched or fetched[-1][0].status != ExecStatus.PIPELINE_SYNC:
                fetched.append(conn.wait(generators.fetch_many(pgconn)))
        finally:
            if pgconn.status == psycopg.pq.ConnStatus.OK:
                try:
                    pgconn.exit_pipeline_mode()
                except psycopg.OperationalError:
                    # results left unread (a wait interrupted by Ctrl-C): the connection
                    # cannot be used as psycopg expects it; sqlfix opens a fresh one
                    with suppress(psycopg.Error):
                        pgconn.finish()
    results = [group[0] for group in fetched[:-1]]
    for index, result in enumerate(results):
        if result.status not in _OK:
            error = psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
            raise StatementFailed(index - began, error, results[began:index])
    return results[began:]


def rows(conn: psycopg.Connection[Any], result: PGresult) -> list[tuple[Any, ...]]:
    """A result's rows as tuples of Python values, loaded as a cursor would."""
    transformer = Transformer(conn)
    transformer.set_pgresult(result)
    return transformer.load_rows(0, result.ntuples, tuple)


def written(result: PGresult) -> int:
    """Rows an INSERT, UPDATE, MERGE or COPY wrote (its command tag); 0 for anything else."""
    tag = result.command_status or b""
    if not tag.startswith((b"INSERT", b"UPDATE", b"MERGE", b"COPY")):
        return 0
    return result.command_tuples or 0


class Capture(str):
    """A statement whose rows its sender hands to `on_rows` once it has run.

    For a statement that rides along in a round trip made for something else (a
    load's `then`): whoever sends it calls `deliver` with its result.
    """

    on_rows: Callable[[list[tuple[Any, ...]]], None]

    def __new__(cls, text: str, on_rows: Callable[[list[tuple[Any, ...]]], None]) -> Capture:
        made = super().__new__(cls, text)
        made.on_rows = on_rows
        return made


def deliver(conn: psycopg.Connection[Any], texts: Sequence[str],
            results: Sequence[PGresult]) -> None:
    """Hand each `Capture` among `texts` the rows of its result (same positions)."""
    for text, result in zip(texts, results, strict=False):
        if isinstance(text, Capture):
            text.on_rows(rows(conn, result))


def run_all(conn: psycopg.Connection[Any], texts: Sequence[str]) -> list[PGresult]:
    """`run_each` for str statements, the `Capture`s among them delivered; raises psycopg.Error
    (the failing statement's), as an `execute()` of them would."""
    if not texts:
        return []
    try:
        results = run_each(conn, [t.encode() for t in texts])
    except StatementFailed as failed:
        raise failed.error from None
    deliver(conn, texts, results)
    return results
