"""Round trips a test costs through the pytest plugin itself, everything it sends included.

tests/database/test_round_trips.py counts the boundary's own; here a conftest
traces the session connection (libpq's protocol trace) from the start of each
test's protocol to its end, so whatever the plugin adds per test (the
second-connection hint's mark, checks, reports) is counted too. The tests'
bodies send nothing.
"""

from __future__ import annotations

import json

from helpers import NO_RANDOM

CONFTEST = '''
import json, tempfile
import pytest
from psycopg import pq
from sqlfix.pytest_plugin.plugin import SESSION_KEY

COUNTS = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    session = item.config.stash.get(SESSION_KEY, None)
    conn = session.connection_if_open() if session is not None else None
    if conn is None:  # the first test opens it: not counted
        return (yield)
    with tempfile.TemporaryFile() as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            return (yield)
        finally:
            if not conn.closed:
                conn.pgconn.untrace()
            trace.seek(0)
            sent = [line.split("\\t") for line in trace.read().decode(errors="replace").splitlines()
                    if line.startswith("F\\t")]
            COUNTS[item.name] = sum(1 for p in sent if len(p) > 2 and p[2] in ("Query", "Sync"))


def pytest_sessionfinish(session):
    with open("round_trips.json", "w") as out:
        json.dump(COUNTS, out)
'''

TESTS = '''
import psycopg
import pytest
from sqlfix import uses

def test_0_opens_the_connection(sqlfix):
    pass

@uses("users.sql")
def test_1_users(sqlfix):
    pass

@uses("orders.sql")
def test_2_orders(sqlfix):
    pass

@uses("orders.sql")
def test_3_orders_again(sqlfix):
    pass

def test_4_no_fixtures(sqlfix):
    pass

@uses("users.sql")
def test_5_users(sqlfix):
    pass

@uses("users.sql")
def test_6_users_again_with_a_second_connection(sqlfix_dsn, sqlfix):
    with psycopg.connect(sqlfix_dsn) as other:
        other.execute("SELECT 1")
    assert False, "fails: the hint must still count this test's connection"
'''


def run(shop, *args: str) -> dict[str, int]:
    shop.makeconftest(CONFTEST)
    shop.makepyfile(TESTS)
    result = shop.runpytest(*NO_RANDOM, *args)
    result.assert_outcomes(passed=6, failed=1)
    failure = " ".join(result.stdout.str().split("\n____")[-1].split())
    assert ("1 other connection(s) to the test database were opened and closed during this "
            "test") in failure, failure
    counts = json.loads((shop.path / "round_trips.json").read_text())
    assert len(counts) == 6, counts  # every test but the first
    return counts


def test_three_round_trips_a_test_through_the_plugin(shop):
    counts = run(shop)
    assert all(count <= 3 for count in counts.values()), counts


def test_two_round_trips_for_a_test_on_shared_layers_through_the_plugin(shop):
    counts = run(shop, "--sqlfix-layers")
    # Tests that continue the stack the test before left send no begin: test_2 loads
    # orders.sql's layers on test_1's users.sql; test_3 and test_6 share every layer
    # (load: the hint's mark rides with the test's savepoint; end: back to the layer)
    for name in ("test_2_orders", "test_3_orders_again",
                 "test_6_users_again_with_a_second_connection"):
        assert counts[name] == 2, counts
    assert all(count <= 3 for count in counts.values()), counts
