"""A killed embedded postmaster whose test backend still answers for a moment: the
boundary asks the server's process, not only the connection (see Boundary._check_open)."""

from __future__ import annotations

import pytest

from sqlfix.database.boundary import SERVER_DIED_HELP, Boundary
from sqlfix.database.schema import connect


@pytest.fixture
def gone_and_boundary(fresh_dsn: str):
    # The connection is real and alive: what the postmaster's death looks like in the
    # moment before its backends notice. Only the process check is the test's own.
    gone = [False]
    conn = connect(fresh_dsn)
    boundary = Boundary(conn, server_gone=lambda: gone[0])
    boundary.begin()
    yield gone, boundary
    conn.close()


def test_the_check_after_the_test_reports_a_dead_server(gone_and_boundary):
    gone, boundary = gone_and_boundary
    assert boundary.broken() is None  # alive: holds
    gone[0] = True
    assert boundary.broken() == SERVER_DIED_HELP
    assert boundary.lost and not boundary.lost_at_end


def test_end_reports_a_server_that_died_after_the_check(gone_and_boundary):
    gone, boundary = gone_and_boundary
    assert boundary.broken() is None
    gone[0] = True  # after the checks, before the ROLLBACK (which its backend still answered)
    boundary.end()
    assert (boundary.escape, boundary.lost, boundary.lost_at_end) == (SERVER_DIED_HELP, True, True)
    assert boundary.conn.closed  # not handed to the next test


def test_a_live_server_ends_as_before(gone_and_boundary):
    _, boundary = gone_and_boundary
    assert boundary.broken() is None
    boundary.end()
    assert (boundary.escape, boundary.lost, boundary.conn.closed) == (None, False, False)
