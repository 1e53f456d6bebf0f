"""SQLAlchemy 2.x joined to the test's boundary (extra `sqlfix[sqlalchemy]`).

The engine's only connection is the test's own psycopg connection (a
StaticPool around it), so ORM code and `sqlfix_conn` see each other's writes.
The session joins the open transaction with `join_transaction_mode=
"create_savepoint"`: `session.commit()` releases a savepoint and the test's
end rolls everything back. SQLAlchemy is imported only when these fixtures
are used: the fixtures are declared in the plugin's entry module (`plugin.py`), which
imports this module when one of them is first set up.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from sqlfix.pytest_plugin.handle import Sqlfix


def _sqlalchemy() -> Any:
    try:
        return importlib.import_module("sqlalchemy")
    except ImportError:
        pytest.fail("sqlfix_sqla_engine and sqlfix_sqla_session need SQLAlchemy 2: "
                    "pip install 'sqlfix[sqlalchemy]'", pytrace=False)


_ENGINE_SAVEPOINT = "sqlfix_engine"


def _execute(dbapi_conn: Any, statement: str) -> None:
    # Through a DBAPI cursor: psycopg's Connection and SQLAlchemy's adapter around an
    # AsyncConnection (the async engine) both have one.
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _check_deferred(dbapi_conn: Any) -> None:
    """What a real COMMIT checks and RELEASE SAVEPOINT does not: deferred constraints.

    Raises the server's error (e.g. psycopg.errors.ForeignKeyViolation); the check runs
    in a throwaway savepoint, so every constraint keeps the mode it had.
    """
    _execute(dbapi_conn, "SAVEPOINT sqlfix_check")
    try:
        _execute(dbapi_conn, "SET CONSTRAINTS ALL IMMEDIATE")
    finally:
        _execute(dbapi_conn, "ROLLBACK TO SAVEPOINT sqlfix_check; RELEASE SAVEPOINT sqlfix_check")


def check_deferred_on_commit(session: Any) -> None:
    """`session.commit()` of a Session joined with "create_savepoint" checks deferred
    constraints as the real COMMIT would, raising SQLAlchemy's IntegrityError (a
    release of its savepoint checks nothing). A nested transaction's commit (a
    RELEASE in production too) is not checked. `session`: a sync Session (an
    AsyncSession's `sync_session`)."""
    sa = _sqlalchemy()

    def _before_commit(session: Any) -> None:
        if session.in_nested_transaction():
            return
        session.flush()  # SQLAlchemy flushes after this event: the rows must be there
        connection = session.connection()
        nested = connection.begin_nested()
        try:
            connection.exec_driver_sql("SET CONSTRAINTS ALL IMMEDIATE")
        finally:
            nested.rollback()  # back to each constraint's own mode

    sa.event.listen(session, "before_commit", _before_commit)


class _SavepointTransactions:
    """The engine's transactions as savepoints nested in whatever the connection is in.

    A session the code under test opens, commits or closes then only ever touches
    its own savepoint: closing it without a commit cannot undo rows the test (or a
    factory) flushed before, nor destroy another session's savepoint.
    """

    def __init__(self) -> None:
        self.depth = 0

    def begin(self, dbapi_conn: Any) -> None:
        _execute(dbapi_conn, f"SAVEPOINT {_ENGINE_SAVEPOINT}")
        self.depth += 1

    def commit(self, dbapi_conn: Any) -> None:
        if not self.depth:
            return
        self.depth -= 1
        try:
            _check_deferred(dbapi_conn)
        except Exception:
            # A failed COMMIT ends the transaction: its savepoint's work goes with it.
            _execute(dbapi_conn, f"ROLLBACK TO SAVEPOINT {_ENGINE_SAVEPOINT}; "
                     f"RELEASE SAVEPOINT {_ENGINE_SAVEPOINT}")
            raise
        _execute(dbapi_conn, f"RELEASE SAVEPOINT {_ENGINE_SAVEPOINT}")

    def rollback(self, dbapi_conn: Any) -> None:
        if not self.depth:
            return  # nothing of ours is open
        self.depth -= 1
        try:
            _execute(dbapi_conn, f"ROLLBACK TO SAVEPOINT {_ENGINE_SAVEPOINT}; "
                     f"RELEASE SAVEPOINT {_ENGINE_SAVEPOINT}")
        except importlib.import_module("psycopg").errors.InvalidSavepointSpecification:
            dbapi_conn.rollback()  # the test rolled back past it already: back to its state


def make_engine(sqlfix: Sqlfix) -> Engine:
    """An engine whose every connection is the test's own connection."""
    sa = _sqlalchemy()
    pool = importlib.import_module("sqlalchemy.pool")
    conn = sqlfix.conn
    # No reset on return: every rollback must pair with a begin (see _SavepointTransactions).
    engine: Engine = sa.create_engine(
        "postgresql+psycopg://", creator=lambda: conn, poolclass=pool.StaticPool,
        pool_reset_on_return=None)
    # Connect now: SQLAlchemy's first connect inspects the server and rolls back,
    # which must happen before the test writes anything.
    with engine.connect():
        pass
    savepoint_transactions(engine.dialect)
    return engine


def savepoint_transactions(dialect: Any) -> None:
    """Make an engine's transactions savepoints (the dialect is per engine)."""
    transactions = _SavepointTransactions()
    dialect.do_begin = transactions.begin
    dialect.do_commit = transactions.commit
    dialect.do_rollback = transactions.rollback


def seed_factory_boy(sqlfix: Sqlfix, nodeid: str) -> None:
    """Seed factory_boy's Faker and random like sqlfix seeds templates, if it is in use."""
    if "factory" not in sys.modules:
        return
    from sqlfix.compiler.seeds import derive_seed  # here: the plugin's import stays light

    random_module = importlib.import_module("factory.random")
    random_module.reseed_random(derive_seed(sqlfix.seed, "factory_boy", nodeid))


def sqla_engine(request: pytest.FixtureRequest, sqlfix: Sqlfix) -> Iterator[Engine]:
    """The body of `sqlfix_sqla_engine`: an Engine on the test's own connection."""
    from sqlfix.pytest_plugin.async_fixtures import refuse_mixing  # it imports this module
    from sqlfix.pytest_plugin.own_connections import refuse_in_committed_mode

    refuse_in_committed_mode(sqlfix, request, "sqlfix_sqla_engine", "sqlfix_sqla_session")
    refuse_mixing(request, sqlfix, "sqlfix_sqla_engine", is_async=False)
    engine = make_engine(sqlfix)
    yield engine
    # No engine.dispose(): it would close the session's shared connection.


def savepoint_gone(exc: BaseException) -> bool:
    """Whether closing a session failed only because its savepoint is gone.

    A test that catches a database error (`pytest.raises(IntegrityError)`) and does
    not roll back leaves the transaction failed; sqlfix's check at the test's end
    rolls it back to its own savepoint, which removes SQLAlchemy's savepoint inside it.
    The session's close() then cannot roll back to it: nothing is lost, say nothing.
    """
    import psycopg

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(getattr(seen, "orig", None), psycopg.errors.InvalidSavepointSpecification):
            return True
        if isinstance(seen, psycopg.errors.InvalidSavepointSpecification):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def sqla_session(
    request: pytest.FixtureRequest, sqlfix: Sqlfix, sqlfix_sqla_engine: Engine
) -> Iterator[Session]:
    """The body of `sqlfix_sqla_session`: a Session joined to the test's transaction."""
    orm = importlib.import_module("sqlalchemy.orm")
    seed_factory_boy(sqlfix, request.node.nodeid)
    connection = sqlfix_sqla_engine.connect()
    connection.begin()
    session: Session = orm.Session(bind=connection, join_transaction_mode="create_savepoint")
    check_deferred_on_commit(session)
    try:
        yield session
    finally:
        failed: list[Exception] = []
        for close in (session.close, connection.close):  # the second even if the first fails
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - raised below unless explained
                failed.append(exc)
        for error in failed:
            if not (sqlfix.escaped or savepoint_gone(error)):
                raise error
