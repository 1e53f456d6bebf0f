"""SQLAlchemy sessions, engines and factory_boy inside the test's boundary."""

from __future__ import annotations

# Imported here, in the outer session, so pytester's in-process runs share one copy:
# it unloads modules first imported by an inner run, and SQLAlchemy does not survive
# being imported twice into one process.
import factory  # noqa: F401
import sqlalchemy.orm  # noqa: F401
from helpers import NO_RANDOM

MODELS = '''
import datetime
from sqlalchemy import DateTime, select, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, Session, sessionmaker
import factory
from factory.alchemy import SQLAlchemyModelFactory
import pytest
from sqlfix import uses

class Base(DeclarativeBase):
    pass

class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    full_name: Mapped[str]
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    is_admin: Mapped[bool] = mapped_column(default=False)

class UserFactory(SQLAlchemyModelFactory):
    class Meta:
        model = User
        sqlalchemy_session_persistence = "flush"

    email = factory.Sequence(lambda n: f"user{n}@example.org")
    full_name = factory.Faker("name")
    created_at = factory.Faker("date_time", tzinfo=datetime.timezone.utc)

@pytest.fixture(autouse=True)
def _bind_factories(sqlfix_sqla_session):
    UserFactory._meta.sqlalchemy_session = sqlfix_sqla_session

def count(session):
    return session.scalar(select(func.count()).select_from(User))
'''


def test_session_commit_sees_fixtures_and_leaves_nothing_behind(shop):
    shop.makepyfile(
        MODELS
        + """
@uses("users.sql")
def test_1_session(sqlfix_sqla_session, sqlfix_conn):
    session = sqlfix_sqla_session
    assert count(session) == 4
    session.add(User(email="new@example.org", full_name="New", created_at=func.now()))
    session.commit()
    # the raw connection sees the ORM's committed write, and the other way round
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (5,)
    sqlfix_conn.execute("DELETE FROM users WHERE email = 'bob@example.com'")
    assert count(session) == 4
    session.rollback()

def test_2_nothing_left(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
"""
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=2)


def test_code_that_makes_its_own_sessions_from_the_engine(shop):
    shop.makepyfile(
        MODELS
        + """
def create_user(engine, email):
    Session = sessionmaker(engine)
    with Session() as session, session.begin():
        session.add(User(email=email, full_name="Service", created_at=func.now()))

def failing_service(engine):
    with Session(engine) as session:
        session.add(User(email="bad", full_name="x", created_at=func.now()))
        session.commit()  # violates the email check

@uses("users.sql")
def test_1_engine(sqlfix_sqla_engine, sqlfix_conn):
    create_user(sqlfix_sqla_engine, "svc@example.org")
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (5,)
    with pytest.raises(Exception):
        failing_service(sqlfix_sqla_engine)
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (5,)

def test_2_nothing_left(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
"""
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=2)


def test_factory_boy_rows_and_sql_fixture_rows_in_one_test(shop):
    shop.makepyfile(
        MODELS
        + """
NAMES = []

@uses("users.sql")
def test_1_factories(sqlfix_sqla_session, sqlfix_conn):
    users = UserFactory.create_batch(3)
    NAMES.append([u.full_name for u in users])
    assert count(sqlfix_sqla_session) == 7
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (7,)

def test_2_nothing_left(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)

def test_3_print_names():
    print("NAMES=" + repr(NAMES))
"""
    )
    first = shop.runpytest_subprocess("-s", *NO_RANDOM)
    first.assert_outcomes(passed=3)
    again = shop.runpytest_subprocess("-s", *NO_RANDOM)
    names = [line for line in first.outlines if "NAMES=" in line]
    assert names and names == [line for line in again.outlines if "NAMES=" in line]


def test_a_service_session_closed_without_commit_undoes_only_its_own_work(shop):
    shop.makepyfile(
        MODELS
        + """
def find_user(engine, email):
    with Session(engine) as s:
        return s.scalar(select(User).where(User.email == email))

def forgetful_service(engine):
    with Session(engine) as s:
        s.add(User(email="forgotten@example.org", full_name="F", created_at=func.now()))
        s.flush()  # and closes without commit: its row must go, nothing else

@uses("users.sql")
def test_flushed_rows_survive(sqlfix_sqla_session, sqlfix_sqla_engine, sqlfix_conn):
    UserFactory(email="spam@x.org")
    assert find_user(sqlfix_sqla_engine, "spam@x.org")
    forgetful_service(sqlfix_sqla_engine)
    assert find_user(sqlfix_sqla_engine, "spam@x.org")
    assert find_user(sqlfix_sqla_engine, "forgotten@example.org") is None
    sqlfix_conn.commit()  # the test's own commit keeps the session usable
    sqlfix_sqla_session.add(User(email="late@example.org", full_name="L", created_at=func.now()))
    sqlfix_sqla_session.commit()
    assert count(sqlfix_sqla_session) == 6
"""
    )
    shop.runpytest(*NO_RANDOM).assert_outcomes(passed=1)


def test_an_escape_under_a_session_is_reported_once_without_teardown_noise(shop):
    shop.makepyfile(
        MODELS
        + """
def test_1_escapes(sqlfix_sqla_session, sqlfix_conn):
    sqlfix_conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('x', 'y', 1); COMMIT")

def test_2_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
"""
    )
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=1)
    assert "does not exist" not in result.stdout.str()


def test_a_caught_integrity_error_leaves_no_tear_down_error(shop):
    # `with pytest.raises(IntegrityError)` and no rollback: sqlfix's end-of-test check rolls
    # the failed transaction back to its savepoint, which removes SQLAlchemy's; the
    # session's close() must not turn that into an error at tear-down (sync and async).
    shop.makepyfile('''
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlfix import uses

DUP = text("INSERT INTO users (id, email, full_name, created_at) "
           "SELECT id, email, full_name, created_at FROM users LIMIT 1")

@uses("users.sql")
def test_1_sync(sqlfix_sqla_session):
    with pytest.raises(IntegrityError):
        sqlfix_sqla_session.execute(DUP)

@pytest.mark.asyncio
@uses("users.sql")
async def test_2_async(sqlfix_async_session):
    with pytest.raises(IntegrityError):
        await sqlfix_async_session.execute(DUP)

def test_3_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
''')
    shop.runpytest(*NO_RANDOM, "-p", "no:anyio", "-o", "asyncio_mode=strict").assert_outcomes(passed=3)
