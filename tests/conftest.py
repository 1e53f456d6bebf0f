"""Shared helpers: a pytester project with the example shop's schema and fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

# Imported here, once: pytester's in-process runs drop the modules they imported, and a
# psycopg imported afresh in each run no longer matches the exception classes its C
# extension (imported once per process) raises, so `except psycopg.Error` would miss them.
import psycopg
import pytest
from helpers import EXAMPLE_FIXTURES


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with fixtures_sql/ (schema and fixtures) from the example shop."""
    shutil.copytree(EXAMPLE_FIXTURES, pytester.path / "fixtures_sql")
    pytester.makepyprojecttoml(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
        # pytest-asyncio (a dev dependency) warns in every run of a project without it
        '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n'
    )
    return pytester


@pytest.fixture(scope="session")
def pg_server():
    """An embedded server of the outer test session, for tests that pass a DSN."""
    from sqlfix.database.server import EmbeddedServer

    with EmbeddedServer.start() as server:
        yield server


@pytest.fixture
def fresh_dsn(pg_server, request) -> str:
    """The DSN of a new, empty database on `pg_server`, named after the test."""
    import hashlib

    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = "t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12] + "_test"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(pg_server.dsn, dbname=name)


# The fast part, run by CI on every PostgreSQL version: `-m "not slow"`. Slow are the
# pytest front end's tests (each runs whole pytest sessions; nothing version-specific) and
# the benchmark; anything else that is slow says so with @pytest.mark.slow.
_SLOW_PATHS = ("pytest_plugin/", "test_benchmark.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        where = item.path.relative_to(tests_dir).as_posix() if item.path.is_relative_to(tests_dir) else ""
        if where.startswith(_SLOW_PATHS):
            item.add_marker(pytest.mark.slow)
