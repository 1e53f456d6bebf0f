"""run_each: one extended-protocol message a statement, one round trip, results in order."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from sqlfix.database.pipeline import StatementFailed, run_each, written


@pytest.fixture
def conn(fresh_dsn: str):
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.commit()
        yield conn


def test_a_pipeline_larger_than_the_socket_buffers_does_not_deadlock(conn) -> None:
    # ~40 bytes of results a statement: 30,000 of them fill both directions' buffers
    # unless results are read while statements are still being sent
    texts = [f"INSERT INTO t VALUES ({i})".encode() for i in range(30_000)]
    results = run_each(conn, texts)
    assert len(results) == 30_000 and sum(written(r) for r in results) == 30_000
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (30_000,)
    conn.rollback()


def test_it_begins_a_transaction_as_execute_would(conn) -> None:
    assert conn.info.transaction_status == TransactionStatus.IDLE
    run_each(conn, [b"INSERT INTO t VALUES (1)", b"INSERT INTO t VALUES (2)"])
    assert conn.info.transaction_status == TransactionStatus.INTRANS
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)  # nothing committed


def test_a_failure_names_its_statement_and_runs_none_after_it(conn) -> None:
    texts = [b"INSERT INTO t VALUES (1)", b"INSERT INTO t VALUES (1)", b"INSERT INTO t VALUES (3)"]
    with pytest.raises(StatementFailed) as info:
        run_each(conn, texts)
    assert info.value.index == 1 and len(info.value.results) == 1
    assert isinstance(info.value.error, psycopg.errors.UniqueViolation)
    assert conn.info.transaction_status == TransactionStatus.INERROR
    conn.rollback()
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the connection is usable


def test_two_commands_in_one_message_are_refused(conn) -> None:
    with pytest.raises(StatementFailed) as info:
        run_each(conn, [b"INSERT INTO t VALUES (1); DELETE FROM t"])
    assert "multiple commands" in str(info.value.error)
    conn.rollback()


def test_ctrl_c_during_a_statement_cancels_it_and_leaves_no_pipeline_behind(conn) -> None:
    import os
    import signal
    import threading
    import time

    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_each(conn, [b"INSERT INTO t VALUES (1)", b"SELECT pg_sleep(30)",
                        b"INSERT INTO t VALUES (2)"])
    timer.join()
    assert time.monotonic() - began < 10  # cancelled, not waited for
    # either usable again (outside pipeline mode) or closed: never stuck in pipeline mode
    if not conn.closed:
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
