"""A test's backend killed right after a COMMIT: the postmaster restarts, and the restore
(which may connect in between and lose its connection) is retried as a whole."""

from __future__ import annotations

import pytest
from helpers import NO_RANDOM

KILLS = """
import os, signal
import pytest

@pytest.mark.parametrize("i", range(5))
def test_kill(sqlfix_conn, i):
    sqlfix_conn.execute(
        "INSERT INTO users (email, full_name, created_at) VALUES ('k@x', 'k', now()); COMMIT")
    os.kill(sqlfix_conn.info.backend_pid, signal.SIGKILL)

def test_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
"""


@pytest.mark.slow  # 15 crash restarts: the whole suite runs it, not the per-version matrix
def test_a_killed_backend_after_a_commit_does_not_stop_the_run(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_kill=KILLS)
    for _ in range(3):  # the race with the postmaster's restart is not the same each time
        result = shop.runpytest(*NO_RANDOM)
        out = result.stdout.str()
        assert result.ret == 1, out  # failures, not an exit 3 that stops the run
        result.assert_outcomes(passed=1, failed=5)
        assert "could not be restored" not in out, out
        result.stdout.fnmatch_lines(["FAILED test_kill.py::test_kill*sqlfix:*"])
