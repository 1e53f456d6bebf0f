"""A test's backend killed right after a COMMIT: the postmaster restarts, and the restore
(which may connect in between and lose its connection) is retried as a whole."""

from __future__ import annotations

import re

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


KILLS_THE_SERVER = """
import os, signal, time
from pathlib import Path

import pytest

@pytest.mark.parametrize("i", range(3))
def test_kill(sqlfix_conn, i):
    data = sqlfix_conn.execute("SHOW data_directory").fetchone()[0]
    # and return at once: the test's backend outlives its postmaster for a moment
    os.kill(int((Path(data) / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)

@pytest.mark.parametrize("i", range(3))
def test_pause(i):  # no sqlfix: the next kill is not of a server already dead
    time.sleep(0.3)

def test_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
"""


@pytest.mark.slow  # 3 server restarts
def test_a_test_that_kills_the_embedded_server_is_never_passed_over(shop: pytest.Pytester
                                                                   ) -> None:
    # The backend still answered the check and the ROLLBACK, the test passed, and the
    # next test's start brought the server back without a word. Now the test fails (or
    # errs at tear-down); if the postmaster was not even gone by the end of the test's
    # ROLLBACK, the next sqlfix test's start warns (that test starts from the baseline).
    # Each kill once: its test failed or erred (by the boundary's check of the server, or
    # by the lost connection when the backend had noticed), or the next sqlfix test warned
    out, warned = _three_kills(shop, KILLS_THE_SERVER)
    assert out.count("the embedded PostgreSQL was killed by SIGKILL") == 3, out
    assert re.search(r"sqlfix started (the|a new) embedded PostgreSQL", out), out


def _three_kills(shop: pytest.Pytester, source: str) -> tuple[str, int]:
    """Run `source`'s three killing tests, a pause after each, then test_clean; each kill
    must be reported once. The output, and how many kills the next test's warning told."""
    shop.makepyfile(test_kill=source)
    result = shop.runpytest("-p", "no:randomly", "-W", "always::sqlfix.errors.ReconnectedWarning",
                            *[f"test_kill.py::test_{name}[{i}]" for i in range(3)
                              for name in ("kill", "pause")], "test_kill.py::test_clean")
    out = result.stdout.str()
    outcomes = result.parseoutcomes()
    warned = out.count("ReconnectedWarning: sqlfix")  # found it dead, or its connection lost
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) + warned == 3, out
    result.stdout.no_fnmatch_line("*FAILED*test_clean*")  # it starts from the baseline
    result.stdout.no_fnmatch_line("*ERROR*test_clean*")
    return out, warned


COMMITTED_KILLS = """
import os, signal, time
from pathlib import Path

import pytest
from sqlfix import uses

@pytest.mark.parametrize("i", range(3))
@uses("users.sql", commit=True)
def test_kill(sqlfix_conn, i):
    data = sqlfix_conn.execute("SHOW data_directory").fetchone()[0]
    os.kill(int((Path(data) / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)

@pytest.mark.parametrize("i", range(3))
def test_pause(i):
    time.sleep(0.3)

def test_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
"""


@pytest.mark.slow  # 3 server restarts
def test_a_committed_test_that_kills_the_embedded_server_is_never_passed_over(
        shop: pytest.Pytester) -> None:
    # Seen dead only after _revive had looked (the postmaster not yet reaped), the server
    # was started again by a reconnect, and the restore's words were dropped: 2 passed
    out, warned = _three_kills(shop, COMMITTED_KILLS)
    assert out.count("the embedded PostgreSQL exited during this committed test") + warned == 3


BETWEEN_TESTS = """
import os, signal
from pathlib import Path

import pytest
from sqlfix import uses

DATA = []

def test_1_notes_the_server(sqlfix_conn):
    DATA.append(sqlfix_conn.execute("SHOW data_directory").fetchone()[0])

@pytest.mark.parametrize("i", range(3))
def test_2_kills_it_without_sqlfix(i):
    os.kill(int((Path(DATA[0]) / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)

@pytest.mark.parametrize("i", range(3))
@uses("users.sql")
def test_3_innocent(sqlfix_conn, i):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (4,)
"""


@pytest.mark.slow  # 3 server restarts
def test_a_server_killed_between_tests_is_not_blamed_on_the_next_tests_fixtures(
        shop: pytest.Pytester) -> None:
    # The next test's start ran on the dead postmaster's backend for a moment, its load
    # then lost the connection, and the message told it not to end its own session
    shop.makepyfile(test_between=BETWEEN_TESTS)
    order = ["test_between.py::test_1_notes_the_server"] + [
        f"test_between.py::{name}[{i}]" for i in range(3)
        for name in ("test_2_kills_it_without_sqlfix", "test_3_innocent")]
    result = shop.runpytest("-p", "no:randomly", "-W", "always::sqlfix.errors.ReconnectedWarning",
                            *order)
    out = result.stdout.str()
    assert "A fixture must not end its own session" not in out, out
    warned = out.count("ReconnectedWarning: sqlfix")  # found it dead, or its connection lost
    blamed_right = out.count("The embedded PostgreSQL itself had died")
    assert warned + blamed_right == 3, out


@pytest.mark.parametrize("workers", [(), ("-n", "2", "--dist", "loadfile")],
                         ids=["one-process", "xdist"])
def test_a_server_killed_after_the_last_sqlfix_test_is_said_at_the_end(
        shop: pytest.Pytester, workers: tuple[str, ...]) -> None:
    # no later sqlfix test to find it dead: the run ended green without a word (and an
    # xdist worker's terminal summary is not shown: its controller says it)
    shop.makepyfile(test_last="""
import os, signal, time
from pathlib import Path

DATA = []

def test_1_uses_the_database(sqlfix_conn):
    DATA.append(sqlfix_conn.execute("SHOW data_directory").fetchone()[0])

def test_2_kills_it_without_sqlfix():
    os.kill(int((Path(DATA[0]) / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
    time.sleep(0.3)
""")
    result = shop.runpytest_subprocess("-p", "no:randomly", *workers)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*= sqlfix =*",
        "*the embedded PostgreSQL died after the run's last check of it*no test reported it.",
        "the embedded PostgreSQL was killed by SIGKILL: its log*",
        "*server log: *.pytest_cache/d/sqlfix/postgres*.log (copied there when the run ends)"])
    kept = list((shop.path / ".pytest_cache" / "d" / "sqlfix").glob("postgres*.log"))
    assert kept and "database system is ready" in kept[0].read_text()
