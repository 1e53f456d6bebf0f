"""SQLAlchemy sessions, engines and factory_boy inside the test's boundary."""

from __future__ import annotations

NO_RANDOM = ("-p", "no:randomly")

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
