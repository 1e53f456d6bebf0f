"""A smart shutdown (SIGTERM, `pg_ctl stop -m smart`) of the embedded server during a run.

The postmaster then refuses new connections ("the database system is shutting down")
until its last connection closes, and exits a moment later. A restore that meets that
refusal must wait for the exit and start the server again, as it does when it finds the
socket already gone; it used to take the words for a server in recovery, stop retrying
the instant the postmaster was gone, and stop the run with "cannot connect".
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sqlfix.config import Settings
from sqlfix.database.session import DatabaseSession
from sqlfix.errors import DatabaseError


@pytest.fixture
def session(tmp_path: Path) -> Iterator[DatabaseSession]:
    (tmp_path / "fx").mkdir()
    (tmp_path / "schema.sql").write_text("CREATE TABLE t (id int PRIMARY KEY);\n")
    settings = Settings(root=tmp_path, fixtures_dir=tmp_path / "fx",
                        schema=(tmp_path / "schema.sql",))
    db = DatabaseSession(settings)
    db.start()
    yield db
    db.stop()


def _refused_while_shutting_down(dsn: str) -> psycopg.OperationalError:
    deadline = time.monotonic() + 10
    while True:
        try:
            psycopg.connect(dsn).close()
        except psycopg.OperationalError as exc:
            if "shutting down" in str(exc):
                return exc
        if time.monotonic() > deadline:
            pytest.fail("the server never said it was shutting down")
        time.sleep(0.05)


def test_a_restore_refused_by_a_shutting_down_server_waits_for_its_exit(session):
    assert session.dsn is not None and session.server is not None
    holder = psycopg.connect(session.dsn)  # the smart shutdown waits for it
    try:
        os.kill(session.server.pid, signal.SIGTERM)
        refused = _refused_while_shutting_down(session.dsn)
        # As the restore wraps it; the holder goes away while sqlfix waits.
        error = DatabaseError(f"cannot connect to the test database to restore it: {refused}")
        error.__cause__ = refused
        threading.Timer(0.5, holder.close).start()
        assert session._server_stopping(error), "the refusal was taken for a recovery"
    finally:
        holder.close()
    said = session.restore()
    assert "sqlfix started the embedded PostgreSQL again (same DSN)" in said, said
    with psycopg.connect(session.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)

