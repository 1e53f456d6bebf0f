"""A run that must stop (a restore that cannot work) says why, with and without pytest-xdist.

`pytest.exit()` on an xdist worker left its scheduled tests behind and the controller
failed with an INTERNALERROR (`assert not crashitem`) that did not show sqlfix's reason.
"""

from __future__ import annotations

import pytest
from helpers import NO_RANDOM

# The session user may no longer log in: the restore cannot connect, whatever sqlfix does.
LOCKED_OUT = """
import pytest

def test_1_locks_sqlfix_out(sqlfix_conn):
    sqlfix_conn.execute("ALTER ROLE CURRENT_USER NOLOGIN; COMMIT")

@pytest.mark.parametrize("i", range(6))
def test_2_others(sqlfix_conn, i):
    pass
"""


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_a_restore_that_cannot_work_stops_the_run_saying_why(
        shop: pytest.Pytester, workers: tuple[str, ...]) -> None:
    shop.makepyfile(test_locked_out=LOCKED_OUT)
    result = shop.runpytest_subprocess(*workers, *NO_RANDOM)
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out, out
    assert result.ret == 3, out
    assert "the baseline could not be restored" in out, out
    assert 'is not permitted to log in' in out, out
    if workers:  # the test that broke it fails with the reason, the run stops after it
        result.stdout.fnmatch_lines(["FAILED test_locked_out.py::test_1_locks_sqlfix_out*"])
        assert "Interrupted: sqlfix: a test's changes escaped" in out, out


# The same in the committed mode: the restore after the test cannot connect.
COMMITTED_LOCKED_OUT = """
import psycopg
import pytest
from sqlfix import uses

@uses(commit=True)
def test_1_locks_sqlfix_out(sqlfix_dsn):
    with psycopg.connect(sqlfix_dsn, autocommit=True) as own:
        own.execute("ALTER ROLE CURRENT_USER NOLOGIN")

@pytest.mark.parametrize("i", range(6))
def test_2_others(sqlfix_conn, i):
    pass
"""


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one-process", "xdist"])
def test_a_committed_restore_that_cannot_work_stops_the_run_saying_why(
        shop: pytest.Pytester, workers: tuple[str, ...]) -> None:
    shop.makepyfile(test_locked_out=COMMITTED_LOCKED_OUT)
    result = shop.runpytest_subprocess(*workers, *NO_RANDOM)
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out, out
    assert result.ret == 3, out
    assert "after a committed test (@uses(..., commit=True)), the baseline" in out, out
    assert "is not permitted to log in" in out, out
    if workers:
        assert "Interrupted: sqlfix: after a committed test" in out, out
