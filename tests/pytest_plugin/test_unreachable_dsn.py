"""A DSN sqlfix cannot connect with (refused, an unknown database, text libpq cannot
read): the same message and exit code (3) with pytest-xdist as without, said once. A
database sqlfix refuses by its own rules: exit 4 either way.

Under `-n` the controller meets the failure first (it checks the database before the
workers clone it); its words go to the workers, which say them at their first database
test instead of each trying, and failing, on their own (with advice about CONNECT
rights that does not fit a server that is down).
"""

from __future__ import annotations

import socket

import pytest
from helpers import NO_RANDOM
from psycopg.conninfo import make_conninfo


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: connections to it are refused


@pytest.mark.parametrize("kind", ["refused", "unknown-database", "unreadable"])
def test_the_same_failure_with_and_without_xdist(shop, pg_server, kind):
    if kind == "refused":
        dsn = f"host=127.0.0.1 port={_closed_port()} user=app password=s3cret dbname=app_test"
        words = ["cannot connect to the test database (", "Connection refused",
                 "Check the DSN (the DSN option, SQLFIX_DSN or [tool.sqlfix] dsn)"]
    elif kind == "unknown-database":
        dsn = make_conninfo(pg_server.dsn, dbname="nowhere_test")
        words = ['database "nowhere_test" does not exist', "Check the DSN"]
    else:  # the configuration's to fix: refused as it is read (once, by xdist's controller)
        dsn = "host=127.0.0.1 nonsense"
        words = ['option --sqlfix-dsn: dsn is not a connection string libpq can read (missing '
                 '"=" after "nonsense" in connection info string); write ']
    shop.makepyfile("def test_db(sqlfix_conn): pass\ndef test_db_too(sqlfix_conn): pass\n"
                    "def test_plain(): pass\n")
    said = {}
    for workers in ((), ("-n", "2")):
        result = shop.runpytest_subprocess(f"--sqlfix-dsn={dsn}", *workers, *NO_RANDOM)
        output = result.stdout.str() + result.stderr.str()
        assert "grant CONNECT" not in output and "s3cret" not in output
        assert "Traceback" not in output and "INTERNALERROR" not in output
        assert all(w in output for w in words), output
        if kind == "unreadable":
            assert result.ret == 4 and output.count("is not a connection string") == 1, output
            said[workers] = "refused"
            continue
        assert result.ret == 3, output  # sqlfix's "could not prepare the test database"
        line = next(x for x in output.splitlines() if "could not prepare the test database" in x)
        said[workers] = line[line.index("sqlfix could not prepare"):].rstrip(" !")
    assert said[()] == said[("-n", "2")]


def test_a_database_sqlfix_refuses_is_a_usage_error_with_and_without_xdist(shop, pg_server):
    # sqlfix's own refusal (a name without 'test') is the configuration's to fix: exit 4,
    # as the xdist controller's refusal is; not 3, a database that could not be prepared
    dsn = make_conninfo(pg_server.dsn, dbname="postgres")
    shop.makepyfile("def test_db(sqlfix_conn): pass\ndef test_plain(): pass\n")
    for workers in ((), ("-n", "2")):
        result = shop.runpytest_subprocess(f"--sqlfix-dsn={dsn}", *workers, *NO_RANDOM)
        output = result.stdout.str() + result.stderr.str()
        assert result.ret == pytest.ExitCode.USAGE_ERROR, output
        assert output.count("refusing to use database 'postgres': its name does not contain "
                            "'test'") == 1, output
        assert "Traceback" not in output and "INTERNALERROR" not in output
