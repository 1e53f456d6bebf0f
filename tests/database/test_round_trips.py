"""Round trips around a test's fixture load: three at most (begin, load, end).

Counted from libpq's protocol trace: every simple `Query` and every pipeline
`Sync` the client sends is one round trip, however many statements it carries.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
from helpers import EXAMPLE_FIXTURES, REPO

from sqlfix.config import Settings
from sqlfix.database.boundary import SqlfixConnection
from sqlfix.database.session import DatabaseSession
from sqlfix.pytest_plugin.handle import Sqlfix


@pytest.fixture(scope="module")
def session() -> Iterator[DatabaseSession]:
    settings = Settings(root=REPO, fixtures_dir=EXAMPLE_FIXTURES,
                        schema=(EXAMPLE_FIXTURES / "schema.sql",))
    started = DatabaseSession(settings)
    started.start()
    yield started
    started.stop()


class Trips:
    """Counts the round trips a connection makes while `with`-ed."""

    def __init__(self, conn: SqlfixConnection) -> None:
        self.conn = conn
        self.count = 0

    def __enter__(self) -> Trips:
        from psycopg import pq

        self._file = tempfile.TemporaryFile()
        self.conn.pgconn.trace(self._file.fileno())
        self.conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.pgconn.untrace()
        self._file.seek(0)
        lines = self._file.read().decode(errors="replace").splitlines()
        self._file.close()
        sent = [line.split("\t") for line in lines if line.startswith("F\t")]
        self.count = sum(1 for parts in sent if len(parts) > 2 and parts[2] in ("Query", "Sync"))


def one_test(session: DatabaseSession, names: tuple[str, ...], body: str = "") -> int:
    """A test as the plugin runs it: begin, load + protect, body, two checks, end."""
    boundary = session.boundary()
    assert session.fixture_role is not None and session.fixture_role.name  # loads switch roles
    handle = Sqlfix(session, boundary)
    with Trips(boundary.conn) as trips:
        boundary.begin()
        handle.load(*names)
        if not boundary.is_protected:
            boundary.protect()
        if body:
            boundary.conn.execute(body.encode())
        assert boundary.broken() is None  # after the call
        assert boundary.broken() is None  # after the fixtures' tear-down
        boundary.end()
    return trips.count - (1 if body else 0)


@pytest.mark.parametrize("names", [("orders.sql",), ("users.sql",), ()], ids=["orders", "users", "none"])
def test_three_round_trips_around_the_load(session, names):
    one_test(session, names)  # warm: the first test of a session may prepare things
    assert one_test(session, names) <= 3


def test_three_round_trips_after_a_test_that_moved_a_sequence(session):
    body = "INSERT INTO products (sku, name, price_cents) VALUES ('rt', 'RT', 1)"
    assert one_test(session, ("users.sql",), body) <= 3
    conn = session.connection()  # the sequence went back
    assert conn.execute("SELECT is_called FROM products_id_seq").fetchone() == (False,)
    conn.rollback()


def test_a_test_that_changes_application_name_is_still_checked_right(session):
    trips = one_test(session, ("users.sql",), "SET LOCAL application_name = 'mine'")
    assert trips == 3 + 2  # the cheap check could not tell: each check asked the server


def test_the_test_runs_as_the_session_user_after_the_load_and_after_its_rollback(session):
    # The switch to the fixture role and back rides in the load's round trip; the test's
    # savepoint is taken after the switch back, so rolling back to it keeps the role.
    boundary = session.begin()
    handle = Sqlfix(session, boundary)
    handle.load("users.sql")
    conn = boundary.conn
    try:
        assert conn.execute("SELECT current_user, current_setting('role')").fetchone() == (
            "postgres", "none")
        conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('r', 'R', 1)")
        conn.rollback()  # to the test's savepoint
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (4,)
        handle.load("orders.sql")  # a load in the test body: the role is asked for
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    finally:
        boundary.end()


def test_two_round_trips_for_a_test_on_shared_savepoint_layers(tmp_path):
    settings = Settings(root=REPO, fixtures_dir=EXAMPLE_FIXTURES, layers=True,
                        schema=(EXAMPLE_FIXTURES / "schema.sql",))
    layered = DatabaseSession(settings)
    layered.start()
    try:
        keep = layered.library.order(["orders.sql"])

        def shared_test() -> int:
            with Trips(layered.connection()) as trips:
                boundary = layered.begin(layered=True)
                Sqlfix(layered, boundary).load("orders.sql")
                boundary.conn.execute(b"DELETE FROM order_items")
                assert boundary.broken() is None and boundary.broken() is None
                boundary.end(keep=keep)
            return trips.count - 1

        shared_test()  # builds the stack
        # begin: none; load: the test's savepoint only; end: rollback to the layer + resets
        assert [shared_test() for _ in range(3)] == [2, 2, 2]
    finally:
        layered.stop()
