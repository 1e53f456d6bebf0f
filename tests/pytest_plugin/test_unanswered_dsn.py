"""A DSN whose server accepts connections and never answers: the run stops within sqlfix's
connect timeout, saying where and what to do, instead of waiting the OS's TCP timeout
(~2 minutes a connection, several connections a run)."""

from __future__ import annotations

import pytest
from helpers import NO_RANDOM, blackhole

# Generous: the runs take a few seconds, the hang they replace minutes. No wall-clock
# assertion beyond "it ended": a run past this raises pytester's TimeoutExpired.
ENDED_WITHIN = 90
# sqlfix's own default (10 s), made 2 s in the inner run; libpq's minimum is 2 s.
SHORT_DEFAULT = """
import sqlfix.database.schema, sqlfix.database.workers
sqlfix.database.schema.CONNECT_TIMEOUT = 2
sqlfix.database.workers._CLEAN_UP_TIMEOUT = 2
"""


@pytest.mark.parametrize(("timeout", "workers"), [
    ("PGCONNECT_TIMEOUT", ()), ("sqlfix default", ()), ("sqlfix default", ("-n", "2"))])
def test_a_sqlfix_test_against_a_dsn_that_never_answers_stops_with_where_and_what_to_do(
        shop, monkeypatch, timeout, workers):
    if timeout == "PGCONNECT_TIMEOUT":
        monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    else:
        monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
        shop.makeconftest(SHORT_DEFAULT)
    shop.makepyfile("def test_db(sqlfix_conn): pass\ndef test_db_too(sqlfix_conn): pass\n")
    held: list = []
    with blackhole(held) as port:
        dsn = f"postgresql://app:s3cret@127.0.0.1:{port}/app_test"
        result = shop.runpytest_subprocess(f"--sqlfix-dsn={dsn}", *workers, *NO_RANDOM,
                                           timeout=ENDED_WITHIN)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 3, output
    # one wait for the server: the xdist controller's, whose words the workers then give
    # at once (not a second check of the controller's, nor one per worker, nor a clean-up)
    assert len(held) == 1, (len(held), output)
    assert (f"cannot connect to the test database: no answer from the server at host "
            f"127.0.0.1, port {port} within 2 s (connect_timeout)") in output
    assert "set connect_timeout in the DSN" in output and "PGCONNECT_TIMEOUT" in output
    assert "s3cret" not in output
    assert "Traceback" not in output and "INTERNALERROR" not in output


def test_xdist_with_a_dsn_that_never_answers_and_no_sqlfix_test_passes(shop, monkeypatch):
    # The controller's run-lock check and its clean-up of clones each connect: both give
    # up after the timeout, silently (no worker needs the database).
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    shop.makeconftest(SHORT_DEFAULT)
    shop.makepyfile("def test_plain(): pass\ndef test_db(sqlfix_conn): pass\n")
    with blackhole() as port:
        dsn = f"postgresql://app:s3cret@127.0.0.1:{port}/app_test"
        result = shop.runpytest_subprocess(f"--sqlfix-dsn={dsn}", "-n", "2", "-k", "plain",
                                           *NO_RANDOM, timeout=ENDED_WITHIN)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 0, output
    result.stdout.fnmatch_lines(["*1 passed*"])
    assert "Traceback" not in output and "s3cret" not in output
