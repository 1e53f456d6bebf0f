"""Shared helpers: a pytester project with the example shop's schema and fixtures."""

from __future__ import annotations

import shutil

# Imported here, before any in-process pytester run: pytester drops the modules an inner run
# imported, and a second import of psycopg would raise errors of classes the first import's
# C extension no longer matches ("the database system is starting up" escaping `except`).
import psycopg
import pytest
from helpers import EXAMPLE_FIXTURES


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with fixtures_sql/ (schema and fixtures) from the example shop."""
    shutil.copytree(EXAMPLE_FIXTURES, pytester.path / "fixtures_sql")
    pytester.makepyprojecttoml(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
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
