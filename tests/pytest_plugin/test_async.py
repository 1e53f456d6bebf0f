"""The async connection, engine and session in the test's boundary, under pytest-asyncio and anyio."""

from __future__ import annotations

# Imported here, in the outer session, so pytester's in-process runs share one copy
# (see test_sqlalchemy.py): SQLAlchemy does not survive being imported twice.
import fastapi  # noqa: F401
import httpx  # noqa: F401
import psycopg  # noqa: F401  (the binary module cannot be imported twice either)
import sqlalchemy.ext.asyncio  # noqa: F401
import sqlalchemy.orm  # noqa: F401
from helpers import NO_RANDOM

STRICT = (*NO_RANDOM, "-p", "no:anyio", "-o", "asyncio_mode=strict")
AUTO = (*NO_RANDOM, "-p", "no:anyio", "-o", "asyncio_mode=auto")
ANYIO = (*NO_RANDOM, "-p", "no:asyncio")

CONN_TESTS = '''
import pytest
from sqlfix import uses

async def rename(conn, email, name):          # code under test: commits on its own
    await conn.execute("UPDATE users SET full_name = %s WHERE email = %s", [name, email])
    await conn.commit()

async def count(conn, where="true"):
    cur = await conn.execute(f"SELECT count(*) FROM users WHERE {where}")
    return (await cur.fetchone())[0]

@MARK
@uses("users.sql")
async def test_1_commit_and_rollback(sqlfix_aconn):
    assert await count(sqlfix_aconn) == 4
    await rename(sqlfix_aconn, "alice@example.com", "Alice B.")
    await sqlfix_aconn.execute("DELETE FROM users")
    await sqlfix_aconn.rollback()            # back to the commit, not before it
    assert await count(sqlfix_aconn, "full_name = 'Alice B.'") == 1
    async with sqlfix_aconn.transaction():   # a savepoint inside the test's transaction
        await sqlfix_aconn.execute("DELETE FROM users WHERE email = 'bob@example.com'")
    assert await count(sqlfix_aconn) == 3

@MARK
async def test_2_nothing_left_and_sequences_reset(sqlfix_aconn):
    assert await count(sqlfix_aconn) == 0
    cur = await sqlfix_aconn.execute(
        "INSERT INTO products (sku, name, price_cents) VALUES ('x', 'X', 1) RETURNING id")
    assert (await cur.fetchone())[0] == 1
    await sqlfix_aconn.commit()

@MARK
async def test_3_same_id_again(sqlfix_aconn):
    cur = await sqlfix_aconn.execute(
        "INSERT INTO products (sku, name, price_cents) VALUES ('y', 'Y', 1) RETURNING id")
    assert (await cur.fetchone())[0] == 1
'''


def _conn_tests(mark: str, prelude: str = "") -> str:
    return prelude + CONN_TESTS.replace("@MARK", mark)


def test_async_connection_under_pytest_asyncio_strict_mode(shop):
    shop.makepyfile(_conn_tests("@pytest.mark.asyncio"))
    shop.runpytest(*STRICT).assert_outcomes(passed=3)


def test_async_connection_under_pytest_asyncio_auto_mode(shop):
    shop.makepyfile(_conn_tests("# no mark in auto mode"))
    shop.runpytest(*AUTO).assert_outcomes(passed=3)


def test_async_connection_with_one_loop_for_the_whole_session(shop):
    shop.makepyfile(_conn_tests("@pytest.mark.asyncio(loop_scope='session')"))
    shop.runpytest(*STRICT).assert_outcomes(passed=3)


def test_async_connection_under_anyio(shop):
    prelude = '''
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"
'''
    shop.makepyfile(_conn_tests("@pytest.mark.anyio", prelude))
    shop.runpytest(*ANYIO).assert_outcomes(passed=3)


def test_escapes_through_the_async_connection_are_caught(shop):
    shop.makepyfile(
        '''
import pytest
from sqlfix import uses

@pytest.mark.asyncio
@uses("users.sql")
async def test_1_raw_commit(sqlfix_aconn):
    await sqlfix_aconn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('e', 'E', 1)")
    await sqlfix_aconn.execute("COMMIT")

@pytest.mark.asyncio
async def test_2_closes(sqlfix_aconn):
    await sqlfix_aconn.close()

@pytest.mark.asyncio
async def test_3_clean(sqlfix_aconn):
    cur = await sqlfix_aconn.execute("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM products)")
    assert await cur.fetchone() == (0, 0)
'''
    )
    result = shop.runpytest(*STRICT)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*test_1_raw_commit*", "*transaction was COMMITTED before the test ended*",
        "*restored the baseline*",
    ])
    result.stdout.fnmatch_lines(["*test_2_closes*", "*The connection was closed during the test*"])


def test_commit_of_a_kept_async_connection_between_tests_is_refused(shop):
    shop.makepyfile(
        '''
import pytest

kept = []

@pytest.mark.asyncio
async def test_1_keeps(sqlfix_aconn):
    kept.append(sqlfix_aconn)

@pytest.mark.asyncio
async def test_2_uses_it_without_sqlfix():
    with pytest.raises(Exception, match="outside a test's rollback boundary"):
        await kept[0].commit()
'''
    )
    shop.runpytest(*STRICT).assert_outcomes(passed=2)


def test_sync_and_async_connection_in_one_test_is_refused(shop):
    shop.makepyfile(
        '''
import pytest

@pytest.mark.asyncio
async def test_both(sqlfix_conn, sqlfix_aconn):
    pass

@pytest.mark.asyncio
async def test_session_and_aconn(sqlfix_sqla_session, sqlfix_async_session):
    pass
'''
    )
    result = shop.runpytest(*STRICT)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "*this test requests sqlfix_conn and sqlfix_aconn*either the sync or the async*"])


MODELS = '''
import datetime
import pytest
from sqlalchemy import DateTime, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
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

async def count(session):
    return await session.scalar(select(func.count()).select_from(User))
'''


def test_async_session_commit_and_rollback_stay_inside(shop):
    shop.makepyfile(
        MODELS
        + '''
@pytest.mark.asyncio
@uses("users.sql")
async def test_1_session(sqlfix_async_session, sqlfix_aconn):
    session = sqlfix_async_session
    assert await count(session) == 4
    session.add(User(email="new@example.org", full_name="New", created_at=func.now()))
    await session.commit()
    cur = await sqlfix_aconn.execute("SELECT count(*) FROM users")
    assert await cur.fetchone() == (5,)
    session.add(User(email="gone@example.org", full_name="Gone", created_at=func.now()))
    await session.flush()
    await session.rollback()                 # back to the commit above
    assert await count(session) == 5

async def create_user(engine, email):         # code under test: its own sessions
    async with async_sessionmaker(engine).begin() as session:
        session.add(User(email=email, full_name="Service", created_at=func.now()))

async def failing_service(engine):
    async with AsyncSession(engine) as session:
        session.add(User(email="bad", full_name="x", created_at=func.now()))
        await session.commit()                # violates the email check

@pytest.mark.asyncio
@uses("users.sql")
async def test_2_engine(sqlfix_async_engine, sqlfix_aconn):
    await create_user(sqlfix_async_engine, "svc@example.org")
    with pytest.raises(Exception, match="check"):
        await failing_service(sqlfix_async_engine)
    cur = await sqlfix_aconn.execute("SELECT count(*) FROM users")
    assert await cur.fetchone() == (5,)

@pytest.mark.asyncio
async def test_3_nothing_left(sqlfix_async_session):
    assert await count(sqlfix_async_session) == 0
'''
    )
    shop.runpytest(*STRICT).assert_outcomes(passed=3)


def test_async_session_under_anyio(shop):
    shop.makepyfile(
        MODELS
        + '''
@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
@uses("users.sql")
async def test_1(sqlfix_async_session):
    await sqlfix_async_session.execute(User.__table__.delete())
    await sqlfix_async_session.commit()
    assert await count(sqlfix_async_session) == 0

@pytest.mark.anyio
@uses("users.sql")
async def test_2(sqlfix_async_session):
    assert await count(sqlfix_async_session) == 4
'''
    )
    shop.runpytest(*ANYIO).assert_outcomes(passed=2)


FASTAPI_APP = '''
# app.py: the application, as it would be written for production
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

engine = create_async_engine("postgresql+psycopg://prod-host/app")  # never reached in tests
SessionLocal = async_sessionmaker(engine)
app = FastAPI()

@app.exception_handler(IntegrityError)
async def conflict(request, exc) -> JSONResponse:
    return JSONResponse({"detail": "already exists"}, status_code=409)

async def get_session() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session

@app.post("/users", status_code=201)
async def create_user(email: str, session: AsyncSession = Depends(get_session)) -> dict:
    await session.execute(
        text("INSERT INTO users (email, full_name, created_at) VALUES (:e, 'New', now())"),
        {"e": email})
    await session.commit()
    return {"email": email}

@app.post("/users/batch", status_code=201)
async def create_users(emails: list[str] = Query(),
                       session: AsyncSession = Depends(get_session)) -> dict:
    for email in emails:                      # all or nothing: an error before the commit
        if "@" not in email:
            raise HTTPException(422, f"not an email: {email}")
        await session.execute(
            text("INSERT INTO users (email, full_name, created_at) VALUES (:e, 'B', now())"),
            {"e": email})
    await session.commit()
    return {"created": len(emails)}

@app.get("/users/count")
async def count_users(session: AsyncSession = Depends(get_session)) -> dict:
    return {"count": await session.scalar(text("SELECT count(*) FROM users"))}
'''

FASTAPI_TESTS = '''
import httpx
import pytest
from sqlfix import uses

from app import app, get_session

@FIXTURE
async def client(sqlfix_async_session):
    async def session_override():
        # Each request ends as the app's `async with SessionLocal()` ends it: what it did not
        # commit is rolled back (to the session's savepoint), after an error too, so an
        # endpoint's error does not leave the shared session broken for the next request.
        try:
            yield sqlfix_async_session
        finally:
            await sqlfix_async_session.rollback()
    app.dependency_overrides[get_session] = session_override
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    app.dependency_overrides.clear()

@MARK
@uses("users.sql")
async def test_1_create_user(client):
    response = await client.post("/users", params={"email": "new@example.org"})
    assert response.status_code == 201
    assert (await client.get("/users/count")).json() == {"count": 5}

@MARK
@uses("users.sql")
async def test_2_errors_leave_the_session_usable(client):
    duplicate = await client.post("/users", params={"email": "alice@example.com"})
    assert duplicate.status_code == 409                    # IntegrityError in the database
    half = await client.post("/users/batch", params={"emails": ["b1@example.org", "oops"]})
    assert half.status_code == 422                         # raised after one INSERT
    response = await client.post("/users", params={"email": "new@example.org"})
    assert response.status_code == 201
    assert (await client.get("/users/count")).json() == {"count": 5}  # b1 rolled back

@MARK
async def test_3_nothing_left(client):
    assert (await client.get("/users/count")).json() == {"count": 0}
'''

ANYIO_CONFTEST = '''
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"
'''


def _fastapi(shop, fixture: str, mark: str) -> None:
    shop.makepyfile(app=FASTAPI_APP)
    shop.makeconftest(ANYIO_CONFTEST)
    shop.makepyfile(test_api=FASTAPI_TESTS.replace("@FIXTURE", fixture).replace("@MARK", mark))


def test_fastapi_example_with_httpx_async_client(shop):
    _fastapi(shop, "@pytest.fixture", "@pytest.mark.anyio")
    shop.runpytest(*ANYIO).assert_outcomes(passed=3)


def test_fastapi_example_under_pytest_asyncio_strict_mode(shop):
    _fastapi(shop, "@pytest_asyncio.fixture", "@pytest.mark.asyncio")
    shop.makepyfile(test_api=shop.path.joinpath("test_api.py").read_text()
                    .replace("import pytest\n", "import pytest\nimport pytest_asyncio\n", 1))
    shop.runpytest(*STRICT).assert_outcomes(passed=3)


def test_fastapi_override_without_the_rollback_breaks_the_next_request(shop):
    # what the override's rollback is for: without it the failed statement's transaction
    # stays aborted in the shared session and the next request of the test fails
    _fastapi(shop, "@pytest.fixture", "@pytest.mark.anyio")
    path = shop.path / "test_api.py"
    path.write_text(path.read_text().replace("await sqlfix_async_session.rollback()", "pass"))
    result = shop.runpytest(*ANYIO)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*current transaction is aborted*",
                                 "*FAILED test_api.py::test_2_errors_leave_the_session_usable*"])


def test_a_statement_still_running_when_the_test_ends_is_stopped_and_named(shop):
    # An asyncio task (or a thread) still running a statement on the test's connection
    # used to make sqlfix's own check fail with psycopg's "another command is already in
    # progress". The statement is cancelled, the connection closed, the test fails saying
    # why, and the next tests run on a new connection.
    shop.makepyfile(
        '''
import asyncio, threading
import pytest
from sqlfix import uses

KEEP = []

@pytest.mark.asyncio
@uses("users.sql")
async def test_1_leaves_a_task(sqlfix_aconn):
    KEEP.append(asyncio.get_running_loop().create_task(
        sqlfix_aconn.execute("SELECT pg_sleep(30)")))
    await asyncio.sleep(0.3)

@uses("users.sql")
def test_2_leaves_a_thread(sqlfix_conn):
    def run():
        try:
            sqlfix_conn.execute("SELECT pg_sleep(30)")
        except Exception:
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    KEEP.append(thread)
    thread.join(0.3)

@uses("users.sql")
def test_3_next(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone()[0] > 0
    assert sqlfix_conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
    ).fetchone()[0] == 0
'''
    )
    result = shop.runpytest(*STRICT, "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*test_1_leaves_a_task*", "*A statement was still running on the test's connection*",
    ])
    result.stdout.fnmatch_lines([
        "*test_2_leaves_a_thread*", "*A statement was still running on the test's connection*",
    ])
    result.stdout.no_fnmatch_line("*another command is already in progress*")


def test_a_task_that_outlives_its_test_cannot_write_into_the_next_one(shop):
    # With one loop for the session, a task left behind wakes up during the next test:
    # its sqlfix_aconn is refused, so the next test's transaction stays its own.
    shop.makepyfile(
        '''
import asyncio
import pytest

ERRORS = []

async def late(conn):
    await asyncio.sleep(0.2)
    try:
        await conn.execute("INSERT INTO products (sku, name, price_cents) VALUES ('late', 'L', 1)")
    except Exception as exc:
        ERRORS.append(str(exc))

@pytest.mark.asyncio(loop_scope="session")
async def test_1_leaves_a_sleeping_task(sqlfix_aconn):
    test_1_leaves_a_sleeping_task.task = asyncio.get_running_loop().create_task(late(sqlfix_aconn))

@pytest.mark.asyncio(loop_scope="session")
async def test_2_next(sqlfix_aconn):
    await asyncio.sleep(0.5)
    cur = await sqlfix_aconn.execute("SELECT count(*) FROM products")
    assert await cur.fetchone() == (0,)
    assert ERRORS and "belongs to a test that has ended" in ERRORS[0]
'''
    )
    shop.runpytest(*STRICT, "-p", "no:randomly").assert_outcomes(passed=2)


def test_a_task_left_running_a_statement_gets_an_error_not_a_crash(shop):
    # The test's end closes (frees) the libpq connection the task is waiting on; on a
    # session-wide loop the task resumes in the next test. Without the guard in
    # AsyncSqlfixConnection.wait psycopg's C generator used the freed pointer: the
    # whole pytest process died of a segmentation fault. In a subprocess for that.
    shop.makepyfile(
        '''
import asyncio, pytest

LEFT = []

@pytest.mark.asyncio(loop_scope="session")
async def test_1_leaves_task(sqlfix_aconn):
    LEFT.append(asyncio.get_running_loop().create_task(
        sqlfix_aconn.execute("SELECT pg_sleep(2)")))
    await asyncio.sleep(0.05)

@pytest.mark.asyncio(loop_scope="session")
async def test_2_next(sqlfix_aconn):
    cur = await sqlfix_aconn.execute("SELECT 1")
    assert await cur.fetchone() == (1,)
    await asyncio.sleep(2.5)
    with pytest.raises(Exception, match="closed") as caught:
        await LEFT[0]
    assert type(caught.value).__module__.startswith("psycopg")
    cur = await sqlfix_aconn.execute("SELECT 2")
    assert await cur.fetchone() == (2,)
'''
    )
    result = shop.runpytest_subprocess(*STRICT)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_1_leaves_task*", "*A statement was still running*"])


def test_a_task_left_behind_cannot_write_into_the_next_test(shop):
    # Each way to a statement after the test ended: a cursor obtained during the test,
    # COPY through it, a pipeline, transaction(). None may reach the next test's rows.
    shop.makepyfile(
        '''
import asyncio, pytest

SKU = "INSERT INTO products (sku, name, price_cents) VALUES (%s, 'g', 1)"
R = {}

async def later(name, op):
    await asyncio.sleep(0.3)
    try:
        await op()
        R[name] = "done"
    except Exception as e:
        R[name] = repr(e)

@pytest.mark.asyncio(loop_scope="session")
async def test_1_leaves_tasks(sqlfix_aconn):
    conn, cur = sqlfix_aconn, sqlfix_aconn.cursor()

    async def copy():
        async with cur.copy("COPY products (sku, name, price_cents) FROM STDIN") as cp:
            await cp.write_row(("ghost-copy", "g", 1))

    async def pipeline():
        async with conn.pipeline():
            await conn.execute(SKU, ["ghost-pipe"])

    async def transaction():
        async with conn.transaction():
            await cur.execute(SKU, ["ghost-tx"])

    loop = asyncio.get_running_loop()
    loop.create_task(later("cursor", lambda: cur.execute(SKU, ["ghost-cur"])))
    loop.create_task(later("copy", copy))
    loop.create_task(later("pipeline", pipeline))
    loop.create_task(later("transaction", transaction))

@pytest.mark.asyncio(loop_scope="session")
async def test_2_next(sqlfix_aconn):
    await asyncio.sleep(1.0)
    assert sorted(R) == ["copy", "cursor", "pipeline", "transaction"]
    for name, outcome in R.items():
        assert "belongs to a test that has ended" in outcome, (name, outcome)
    cur = await sqlfix_aconn.execute("SELECT sku FROM products")
    assert await cur.fetchall() == []
'''
    )
    shop.runpytest(*STRICT).assert_outcomes(passed=2)


def test_sync_and_async_connection_through_getfixturevalue_is_refused(shop):
    # Either order, and from a fixture the test gets the other one from; in the
    # committed mode the message speaks of the test's connection (no transaction).
    shop.makepyfile(
        '''
import pytest
from sqlfix import uses

@pytest.mark.asyncio
async def test_aconn_then_conn(request, sqlfix_aconn):
    request.getfixturevalue("sqlfix_conn")

@pytest.fixture
def sync_engine(request):
    return request.getfixturevalue("sqlfix_sqla_engine")

@pytest.mark.asyncio
async def test_aconn_then_engine(sqlfix_aconn, sync_engine):
    pass

def test_conn_then_aconn(request, sqlfix_conn):
    request.getfixturevalue("sqlfix_aconn")

@uses("users.sql", commit=True)
def test_committed(request, sqlfix_conn):
    request.getfixturevalue("sqlfix_aconn")

def test_sync_alone(request, sqlfix_conn):
    request.getfixturevalue("sqlfix_conn")
'''
    )
    result = shop.runpytest(*STRICT)
    result.assert_outcomes(passed=1, failed=3, errors=1)
    result.stdout.fnmatch_lines([
        "*test_aconn_then_engine*",
        "*this test requests sqlfix_aconn and sqlfix_sqla_engine*the test's transaction*"])
    result.stdout.fnmatch_lines([
        "*test_aconn_then_conn*",
        "*this test requests sqlfix_aconn and sqlfix_conn*the test's transaction, not both*"])
    result.stdout.fnmatch_lines([
        "*test_conn_then_aconn*", "*this test requests sqlfix_conn and sqlfix_aconn*"])
    result.stdout.fnmatch_lines([
        "*test_committed*",
        "*requests sqlfix_conn and sqlfix_aconn*the test's database connection, not both*"])


def test_the_handles_sync_connection_is_refused_next_to_the_async_one(shop):
    """`sqlfix.conn` next to `sqlfix_aconn` went around the refusal: the two interleaved
    on one socket and the report blamed a close() nobody called. The handle's loads and
    ids still work in an async test, committed or not."""
    shop.makepyfile(
        '''
import asyncio
import pytest
from sqlfix import uses

@pytest.mark.asyncio
@uses("users.sql")
async def test_interleave(sqlfix, sqlfix_aconn):
    async def slow():
        cur = await sqlfix_aconn.execute("SELECT pg_sleep(0.3)")
        return await cur.fetchone()
    task = asyncio.create_task(slow())
    await asyncio.sleep(0.05)
    try:
        sqlfix.conn.execute("SELECT 'sync'")
    finally:
        await task

@pytest.mark.asyncio
@uses("users.sql")
async def test_handle_still_loads(sqlfix, sqlfix_aconn):
    assert sqlfix.load("products.sql") == ("products.sql",)
    cur = await sqlfix_aconn.execute("SELECT count(*) FROM products")
    assert (await cur.fetchone())[0] > 0

@pytest.mark.asyncio
@uses("users.sql", commit=True)
async def test_committed_handle_still_loads(sqlfix, sqlfix_aconn):
    assert sqlfix.load("products.sql") == ("products.sql",)
'''
    )
    result = shop.runpytest(*STRICT)
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*test_interleave*",
        "*this test requests sqlfix_aconn and sqlfix.conn*the test's transaction, not both*"])
    assert "called close()" not in out and "another command is already in progress" not in out


def test_a_thread_left_running_statements_on_sqlfix_conn(shop):
    # The thread holds the connection's lock while it talks to the server; tear-down
    # must neither share the socket with it (a hang) nor free the connection under it.
    # A thread caught between two statements is not detected (docs/async.md says so);
    # test_3's thread is caught inside one: its test waits until the server runs it.
    shop.makepyfile(
        '''
import threading, time
import psycopg
E = []
STOP = threading.Event()

def run(conn):
    try:
        conn.execute("INSERT INTO products (sku, name, price_cents) "
                     "SELECT 'late', 'x', 1 FROM pg_sleep(2)")
    except Exception as e:
        E.append(e)

def busy(conn):
    try:
        while not STOP.is_set():
            conn.execute("SELECT pg_sleep(0.5)")
    except Exception as e:
        E.append(e)

def test_1_leaves_thread(sqlfix_conn):
    threading.Thread(target=run, args=(sqlfix_conn,)).start()
    time.sleep(0.1)

def test_2_next(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
    time.sleep(2.5)
    assert len(E) == 1 and type(E[0]).__module__.startswith("psycopg"), E
    assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (0,)

def test_3_leaves_busy_thread(sqlfix_conn):
    pid = sqlfix_conn.info.backend_pid
    threading.Thread(target=busy, args=(sqlfix_conn,), daemon=True).start()
    with psycopg.connect(sqlfix_conn.info.dsn, autocommit=True) as watcher:
        for _ in range(3000):  # until the server runs the thread's statement
            if watcher.execute("SELECT state FROM pg_stat_activity WHERE pid = %s",
                               [pid]).fetchone() == ("active",):
                break
            time.sleep(0.01)

def test_4_last(sqlfix_conn):
    STOP.set()
    assert sqlfix_conn.execute("SELECT count(*) FROM products").fetchone() == (0,)
'''
    )
    result = shop.runpytest_subprocess(*NO_RANDOM, "-o", "faulthandler_timeout=60")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*test_1_leaves_thread*", "*A statement was still running*"])
    result.stdout.fnmatch_lines(["*test_3_leaves_busy_thread*",
                                 "*A statement was still running*"])


LOAD_WHILE_BUSY = '''
import asyncio
import pytest
from sqlfix import uses

@pytest.mark.asyncio
async def test_1_load_while_a_task_runs(sqlfix_aconn, sqlfix):
    task = asyncio.get_running_loop().create_task(sqlfix_aconn.execute("SELECT pg_sleep(0.3)"))
    await asyncio.sleep(0.05)
    try:
        sqlfix.load("users.sql")
    finally:
        await task                                  # the task's statement is unharmed
    cur = await sqlfix_aconn.execute("SELECT count(*) FROM users")
    assert await cur.fetchone() == (0,)

@pytest.mark.asyncio
@uses("users.sql", commit=True)
async def test_2_committed_load_while_a_task_runs(sqlfix_aconn, sqlfix):
    task = asyncio.get_running_loop().create_task(sqlfix_aconn.execute("SELECT pg_sleep(0.3)"))
    await asyncio.sleep(0.05)
    try:
        sqlfix.load("products.sql")
    finally:
        await task

@pytest.mark.asyncio
async def test_3_after_awaiting_the_load_works(sqlfix_aconn, sqlfix):
    await (await sqlfix_aconn.execute("SELECT pg_sleep(0.05)")).fetchone()
    sqlfix.load("users.sql")
    cur = await sqlfix_aconn.execute("SELECT count(*) FROM users")
    assert await cur.fetchone() == (4,)
'''


def test_a_load_while_an_async_statement_runs_is_refused_in_sqlfixs_words(shop):
    """sqlfix.load() in an async test while a task's statement is in flight on sqlfix_aconn
    raised psycopg's 'another command is already in progress', broke the connection and
    was reported as a lost connection; now it is a SqlfixError and nothing breaks."""
    shop.makepyfile(LOAD_WHILE_BUSY)
    result = shop.runpytest(*STRICT)
    text = result.stdout.str()
    result.assert_outcomes(passed=1, failed=2)
    # counted in the failures only: with CI set, pytest's summary repeats whole messages
    assert text.split("short test summary info")[0].count(
        "SqlfixError: sqlfix.load() was called while a statement is still "
        "running on the test's connection") == 2, text
    assert "another command is already in progress" not in text, text
    assert "connection was lost" not in text and "did not hold" not in text, text
