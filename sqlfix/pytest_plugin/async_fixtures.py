"""Async fixtures' bodies: `sqlfix_aconn`, `sqlfix_async_engine`, `sqlfix_async_session`.

Declared in the plugin's entry module (`plugin.py`), which imports this module when
one of them is first set up. All three are plain (sync) pytest fixtures around the
test's own transaction (see `sqlfix.database.aboundary`): they work under
pytest-asyncio in strict and auto mode and under anyio's plugin (asyncio backend;
psycopg has no trio support), whatever event loop each test runs on.
"""

from __future__ import annotations

import importlib
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from sqlfix.pytest_plugin.sqla import check_deferred_on_commit, seed_factory_boy

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from sqlfix.database.aboundary import AsyncSqlfixConnection
    from sqlfix.pytest_plugin.handle import Sqlfix

T = TypeVar("T")
SYNC_FIXTURES = ("sqlfix_conn", "sqlfix_sqla_engine", "sqlfix_sqla_session")
ASYNC_FIXTURES = ("sqlfix_aconn", "sqlfix_async_engine", "sqlfix_async_session")


# Which front end (sync or async) this test's connection was first handed out as,
# and under which fixture name: set by whichever is set up first, argument or
# request.getfixturevalue(...).
_FRONT_END = pytest.StashKey[tuple[bool, str]]()


def _mixing_error(sqlfix: object, names: str) -> str:
    # The committed mode has no test transaction: the two share the test's connection.
    target = ("the test's database connection" if getattr(sqlfix, "committed", False)
              else "the test's transaction")
    return (
        f"sqlfix: this test requests {names}: a test uses either the sync or the async "
        f"connection to {target}, not both. They are two front ends on one database "
        "connection, and a sync call while a coroutine waits on it would interleave two "
        "conversations on one socket. In an async test use the async fixtures only "
        "(sqlfix.load(...) and sqlfix.id(...) are fine); in a sync test the sync ones.")


def refuse_mixing(request: pytest.FixtureRequest, sqlfix: object, name: str,
                  is_async: bool) -> None:
    """A test gets the sync or the async connection, not both: say so clearly.

    `name` is the fixture being set up; the check covers the test's arguments and
    fixtures set up earlier through `request.getfixturevalue(...)`.
    """
    names = set(request.fixturenames)
    sync = sorted(names.intersection(SYNC_FIXTURES))
    asyn = sorted(names.intersection(ASYNC_FIXTURES))
    if sync and asyn:
        pytest.fail(_mixing_error(sqlfix, f"{', '.join(sync)} and {', '.join(asyn)}"),
                    pytrace=False)
    stash = request.node.stash
    first = stash.get(_FRONT_END, None)
    if first is None:
        stash[_FRONT_END] = (is_async, name)
    elif first[0] != is_async:
        pytest.fail(_mixing_error(sqlfix, f"{first[1]} and {name}"), pytrace=False)


def _run_privately(coro: Coroutine[Any, Any, T]) -> T:
    """Run set-up/tear-down awaits on a loop of their own (nothing async keeps a loop)."""
    import asyncio  # here: the plugin's import stays cheap for runs without async tests

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()
    coro.close()
    pytest.fail("sqlfix: sqlfix_async_session cannot be set up from inside a running event "
                "loop (getfixturevalue in an async test or fixture); request it as a test "
                "argument instead.", pytrace=False)


def aconn(request: pytest.FixtureRequest, sqlfix: Sqlfix) -> Iterator[AsyncSqlfixConnection]:
    """The body of `sqlfix_aconn`: the test's connection as an AsyncConnection."""
    refuse_mixing(request, sqlfix, "sqlfix_aconn", is_async=True)
    from sqlfix.database.aboundary import AsyncFrontEnd

    front = AsyncFrontEnd(sqlfix.conn)
    sqlfix.async_front_end = _mixing_error(sqlfix, "sqlfix_aconn and sqlfix.conn")
    try:
        yield front.conn
    finally:
        sqlfix.async_front_end = None
        front.detach()


def _sqlalchemy_async() -> Any:
    try:
        importlib.import_module("greenlet")
        return importlib.import_module("sqlalchemy.ext.asyncio")
    except ImportError:
        pytest.fail("sqlfix_async_engine and sqlfix_async_session need SQLAlchemy 2 with "
                    "asyncio support: pip install 'sqlfix[sqlalchemy]' 'sqlalchemy[asyncio]'",
                    pytrace=False)


def async_engine(
    request: pytest.FixtureRequest, sqlfix: Sqlfix, sqlfix_aconn: AsyncSqlfixConnection
) -> Iterator[AsyncEngine]:
    """The body of `sqlfix_async_engine`: an AsyncEngine on the test's async connection."""
    from sqlfix.pytest_plugin.own_connections import refuse_in_committed_mode
    from sqlfix.pytest_plugin.sqla import savepoint_transactions

    refuse_in_committed_mode(sqlfix, request, "sqlfix_async_engine", "sqlfix_async_session")

    sa_async = _sqlalchemy_async()
    pool = importlib.import_module("sqlalchemy.pool")

    async def creator() -> AsyncSqlfixConnection:
        return sqlfix_aconn

    engine: AsyncEngine = sa_async.create_async_engine(
        "postgresql+psycopg://", async_creator=creator, poolclass=pool.StaticPool,
        pool_reset_on_return=None)
    # Before the first connect: its closing rollback is then a no-op, not a real one.
    savepoint_transactions(engine.sync_engine.dialect)
    yield engine
    # No dispose(): it would close the session's shared connection.


def async_session(
    request: pytest.FixtureRequest, sqlfix: Sqlfix, sqlfix_async_engine: AsyncEngine
) -> Iterator[AsyncSession]:
    """The body of `sqlfix_async_session`: an AsyncSession joined to the test's transaction."""
    sa_async = _sqlalchemy_async()
    seed_factory_boy(sqlfix, request.node.nodeid)

    async def open_session() -> tuple[Any, AsyncSession]:
        connection = await sqlfix_async_engine.connect()
        await connection.begin()
        session = sa_async.AsyncSession(bind=connection, join_transaction_mode="create_savepoint")
        check_deferred_on_commit(session.sync_session)
        return connection, session

    connection, session = _run_privately(open_session())
    try:
        yield session
    finally:
        async def close() -> list[Exception]:
            failed: list[Exception] = []
            for step in (session.close, connection.close):  # the second even if the first fails
                try:
                    await step()
                except Exception as exc:  # noqa: BLE001 - raised below unless explained
                    failed.append(exc)
            return failed

        from sqlfix.pytest_plugin.sqla import savepoint_gone

        for error in _run_privately(close()):
            if not (sqlfix.escaped or savepoint_gone(error)):
                raise error
