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


DEFERRED_SCHEMA = """
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY,
                    parent_id int REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
"""


def test_a_session_commit_checks_deferred_constraints_like_a_real_commit(pytester):
    """session.commit() releases a savepoint, which checks nothing: a deferred foreign key
    that production's COMMIT refuses passed silently (sync session, async session, a
    session the code under test makes from the engine). Nested commits are RELEASE in
    production too, and stay unchecked."""
    (pytester.path / "fixtures_sql").mkdir()
    (pytester.path / "fixtures_sql" / "schema.sql").write_text(DEFERRED_SCHEMA)
    pytester.makepyprojecttoml(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
        '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    pytester.makepyfile('''
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

ORPHAN = text("INSERT INTO child VALUES (1, 99)")

def count(conn):
    return conn.execute("SELECT count(*) FROM child").fetchone()[0]

def test_sync_session(sqlfix_sqla_session, sqlfix_conn):
    sqlfix_sqla_session.execute(ORPHAN)
    with pytest.raises(IntegrityError, match="child_parent_id_fkey"):
        sqlfix_sqla_session.commit()
    sqlfix_sqla_session.rollback()
    assert count(sqlfix_conn) == 0

def test_engine_session(sqlfix_sqla_engine, sqlfix_conn):
    with Session(sqlfix_sqla_engine) as session:
        session.execute(ORPHAN)
        with pytest.raises(IntegrityError, match="child_parent_id_fkey"):
            session.commit()
    assert count(sqlfix_conn) == 0  # a failed COMMIT keeps nothing

def test_nested_commit_is_a_release(sqlfix_sqla_session):
    with sqlfix_sqla_session.begin_nested():
        sqlfix_sqla_session.execute(ORPHAN)  # the nested commit does not check
    sqlfix_sqla_session.execute(text("INSERT INTO parent VALUES (99)"))
    sqlfix_sqla_session.commit()  # fixed before the real check

def test_deferred_mode_survives_a_good_commit(sqlfix_sqla_session):
    sqlfix_sqla_session.execute(text("INSERT INTO parent VALUES (1)"))
    sqlfix_sqla_session.execute(text("INSERT INTO child VALUES (1, 1)"))
    sqlfix_sqla_session.commit()
    sqlfix_sqla_session.execute(text("INSERT INTO child VALUES (2, 2)"))  # still deferred
    sqlfix_sqla_session.execute(text("INSERT INTO parent VALUES (2)"))
    sqlfix_sqla_session.commit()

@pytest.mark.asyncio
async def test_async_session(sqlfix_async_session, sqlfix_aconn):
    await sqlfix_async_session.execute(ORPHAN)
    with pytest.raises(IntegrityError, match="child_parent_id_fkey"):
        await sqlfix_async_session.commit()
    await sqlfix_async_session.rollback()
    cur = await sqlfix_aconn.execute("SELECT count(*) FROM child")
    assert (await cur.fetchone())[0] == 0
''')
    result = pytester.runpytest(*NO_RANDOM, "-p", "no:anyio")
    result.assert_outcomes(passed=5)
