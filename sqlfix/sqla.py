"""SQLAlchemy 2.x joined to the test's boundary (extra `sqlfix[sqlalchemy]`).

The engine's only connection is the test's own psycopg connection (a
StaticPool around it), so ORM code and `sqlfix_conn` see each other's writes.
The session joins the open transaction with `join_transaction_mode=
"create_savepoint"`: `session.commit()` releases a savepoint and the test's
end rolls everything back. SQLAlchemy is imported only when these fixtures
are used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .fixtures import Sqlfix
from .seeds import derive_seed

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session


def _sqlalchemy() -> Any:
    try:
        return importlib.import_module("sqlalchemy")
    except ImportError:
        pytest.fail("sqlfix_sqla_engine and sqlfix_sqla_session need SQLAlchemy 2: "
                    "pip install 'sqlfix[sqlalchemy]'", pytrace=False)


def make_engine(sqlfix: Sqlfix) -> Engine:
    """An engine whose every connection is the test's own connection."""
    sa = _sqlalchemy()
    pool = importlib.import_module("sqlalchemy.pool")
    conn = sqlfix.conn
    engine: Engine = sa.create_engine(
        "postgresql+psycopg://", creator=lambda: conn, poolclass=pool.StaticPool)
    # Connect now: SQLAlchemy's first connect inspects the server and rolls back,
    # which must happen before the test writes anything.
    with engine.connect():
        pass
    return engine


def seed_factory_boy(sqlfix: Sqlfix, nodeid: str) -> None:
    """Seed factory_boy's Faker and random like sqlfix seeds templates, if it is in use."""
    if "factory" not in sys.modules:
        return
    random_module = importlib.import_module("factory.random")
    random_module.reseed_random(derive_seed(sqlfix.seed, "factory_boy", nodeid))


@pytest.fixture
def sqlfix_sqla_engine(sqlfix: Sqlfix) -> Iterator[Engine]:
    """An Engine for code that makes its own sessions: everything stays in the test's boundary.

    `Session(engine)` / `sessionmaker(engine)` in the code under test may commit:
    the commit lands on sqlfix's savepoint and is rolled back with the test.
    """
    engine = make_engine(sqlfix)
    yield engine
    # No engine.dispose(): it would close the session's shared connection.


@pytest.fixture
def sqlfix_sqla_session(
    request: pytest.FixtureRequest, sqlfix: Sqlfix, sqlfix_sqla_engine: Engine
) -> Iterator[Session]:
    """A Session joined to the test's transaction; `session.commit()` leaves nothing behind."""
    orm = importlib.import_module("sqlalchemy.orm")
    seed_factory_boy(sqlfix, request.node.nodeid)
    with sqlfix_sqla_engine.connect() as connection:
        connection.begin()
        session: Session = orm.Session(bind=connection, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
