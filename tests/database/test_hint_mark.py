"""The second-connection hint's mark rides along with a round trip that goes anyway.

A rollback-mode test's begin (or, on a layer stack an earlier test left open, its
load) reads the server's session count and clock. It is read inside the test's
transaction, where a statistics read would otherwise stay cached until the
transaction ends: a test that reads pg_stat_* itself must still see fresh values.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import psycopg
import pytest
from helpers import EXAMPLE_FIXTURES, REPO

from sqlfix.config import Settings
from sqlfix.database.boundary import SqlfixConnection
from sqlfix.database.layers import LayeredBoundary
from sqlfix.database.session import DatabaseSession
from sqlfix.pytest_plugin.handle import Sqlfix

SESSIONS = b"SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
# A fixture of COPY blocks: loaded above the layers, by the COPY path of the layered load
PRODUCTS_COPY = ("-- requires: users.sql\n"
              "COPY public.products (sku, name, price_cents) FROM stdin;\n"
              "cp-1\tCopied\t100\n"
              "\\.\n")


@pytest.fixture(scope="module")
def session() -> Iterator[DatabaseSession]:
    settings = Settings(root=REPO, fixtures_dir=EXAMPLE_FIXTURES,
                        schema=(EXAMPLE_FIXTURES / "schema.sql",))
    started = DatabaseSession(settings)
    started.start()
    yield started
    started.stop()


def sees_a_new_session(conn: SqlfixConnection, dsn: str, mark: tuple[int, str]) -> bool:
    """Open and close another connection; True if the test's transaction then sees it counted.

    First waits, on a connection of its own (autocommit: a fresh statistics snapshot
    each statement), until the server counts it: PostgreSQL 14's statistics collector
    publishes with a delay. Then ONE read in the test's transaction, as a test's own
    first read: it must be fresh, where a view frozen at the mark never sees it (and a
    second read in the same transaction may be cached by PostgreSQL itself).
    """
    psycopg.connect(dsn).close()
    deadline = time.monotonic() + 10
    with psycopg.connect(dsn, autocommit=True) as other:
        while True:
            row = other.execute(SESSIONS).fetchone()
            assert row is not None
            if row[0] > mark[0] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if other.info.server_version < 150000:
            time.sleep(0.6)  # 14's backends take a statistics file up to 0.5 s old
    row = conn.cursor().execute(SESSIONS).fetchone()
    assert row is not None
    return bool(row[0] > mark[0])


def set_consistency(conn: SqlfixConnection, consistency: str) -> None:
    """stats_fetch_consistency (PostgreSQL 15+) for the session, outside any transaction."""
    if conn.info.server_version >= 150000:  # 14 has no such setting: it caches per transaction
        conn.pgconn.exec_(f"SET stats_fetch_consistency = {consistency}".encode())


@pytest.mark.parametrize("consistency", ["cache", "snapshot"])
def test_begin_reads_the_mark_and_the_test_still_sees_fresh_statistics(session, consistency):
    set_consistency(session.connection(), consistency)
    boundary = session.begin()
    try:
        assert boundary.mark is not None
        sessions, at = boundary.mark
        conn = boundary.conn
        assert conn.execute("SELECT %s::timestamptz <= clock_timestamp()", [at]).fetchone() == (True,)
        assert sees_a_new_session(conn, session.dsn, boundary.mark)
    finally:
        boundary.end()  # its session reset puts stats_fetch_consistency back


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseSession]:
    """One session for the module: each test ends its stack (end() without `keep`)."""
    tmp_path = tmp_path_factory.mktemp("layered")
    fixtures = tmp_path / "fixtures_sql"
    shutil.copytree(EXAMPLE_FIXTURES, fixtures)
    (fixtures / "copied.sql").write_text(PRODUCTS_COPY)
    settings = Settings(root=tmp_path, fixtures_dir=fixtures, layers=True,
                        schema=(fixtures / "schema.sql",))
    started = DatabaseSession(settings)
    started.start()
    yield started
    started.stop()


# (what the test before loaded, what this test loads): the three ways a continued
# stack loads: nothing left to load; more files as layers; a file of COPY blocks
@pytest.mark.parametrize(("before", "now"), [
    (("orders.sql",), ("orders.sql",)),
    (("users.sql",), ("orders.sql",)),
    (("users.sql",), ("copied.sql",)),
], ids=["all-shared", "more-layers", "copy-blocks"])
def test_a_continued_layer_stack_reads_the_mark_with_the_load(layered, before, now):
    first = layered.begin(layered=True)
    Sqlfix(layered, first).load(*before)
    first.end(keep=layered.library.order(list(now)))
    boundary = layered.begin(layered=True)
    try:
        assert isinstance(boundary, LayeredBoundary)
        assert boundary.continued and boundary.mark is None  # begin sent nothing
        Sqlfix(layered, boundary).load(*now)
        assert boundary.mark is not None
        assert sees_a_new_session(boundary.conn, layered.dsn, boundary.mark)
    finally:
        boundary.end()


def test_the_mark_of_a_new_layer_stack_comes_with_its_begin(layered):
    boundary = layered.begin(layered=True)
    try:
        assert isinstance(boundary, LayeredBoundary) and not boundary.continued
        assert boundary.mark is not None
        Sqlfix(layered, boundary).load("users.sql")
        assert sees_a_new_session(boundary.conn, layered.dsn, boundary.mark)
    finally:
        boundary.end()
