"""Shared helpers: a pytester project with the example shop's schema and fixtures."""

from __future__ import annotations

import ast
import os
import shutil
import sys
from pathlib import Path

# Imported here, once: pytester's in-process runs drop the modules they imported, and a
# psycopg imported afresh in each run no longer matches the exception classes its C
# extension (imported once per process) raises, so `except psycopg.Error` would miss them.
import psycopg
import pytest
from helpers import EXAMPLE_FIXTURES

# Imported once too: hypothesis's pytest plugin imports it at each inner run's terminal
# summary, and that import's assertion rewriting raced a thread of the inner run under
# CPython 3.11.7 ("AST constructor recursion depth mismatch", gh-106905, see below).
import hypothesis  # noqa: F401, E402  # isort: skip

if sys.version_info < (3, 12, 1):
    # CPython before 3.11.9 / 3.12.1 keeps ast's recursion-depth counters process-wide
    # (gh-106905): two threads building AST objects at once (pytest's assertion rewriting
    # of a module imported in a test's thread, ast.parse in the main one) fail with
    # "AST constructor recursion depth mismatch". A parse that failed so is simply
    # repeated: its input is fine. Tests only; pytest's rewriter looks ast.parse up per call.
    _parse = ast.parse

    def _parse_again(*args, **kwargs):  # type: ignore[no-untyped-def]
        for attempt in range(3):
            try:
                return _parse(*args, **kwargs)
            except SystemError as exc:
                if "recursion depth mismatch" not in str(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    ast.parse = _parse_again


@pytest.fixture(scope="session")
def initdb_cluster() -> Path | None:
    """The initdb'ed cluster in the machine's sqlfix cache (built once if missing), as any
    earlier run of sqlfix leaves it: the template that every start copies. None when no
    server can be set up here (the inner runs then fail, or not, on their own)."""
    from sqlfix.database import server
    from sqlfix.database.binaries import find_binaries, runnable_by
    from sqlfix.database.server_options import ServerOptions
    from sqlfix.errors import SqlfixError

    root = server._cache_root(None)
    try:
        original = find_binaries(unpack_dir=root)
        ident = server._server_identity()
        runnable = runnable_by(original, ident.ids, server._runtime_base())
        return server._cached_cluster(runnable, original, root, ident, ServerOptions())
    except (SqlfixError, OSError):
        return None


@pytest.fixture
def pytester(pytester: pytest.Pytester, initdb_cluster: Path | None,
             monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's pytester, its HOME's sqlfix cache holding the machine's initdb'ed cluster.

    pytester points HOME at each test's own folder, so without this every inner run
    would run initdb again (several seconds of a 2-core CI machine, ~400 times a run).
    Only that cluster is seeded, hard-linked (nothing writes to it: every start copies
    it): schema clusters, other majors, locales and SQLFIX_CACHE_DIR behave as before.
    """
    # With CI (or BUILD_NUMBER) set, pytest repeats whole messages in its short summary:
    # the inner runs' output is the same on a developer's machine and in CI.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    # An inner run with pytest-xdist in a subprocess of its own: in-process, execnet's
    # threads import modules while the main thread's assertion rewriting parses others,
    # and CPython 3.11 before 3.11.9 then fails ast.parse with "AST constructor recursion
    # depth mismatch" (cpython gh-106905, a process-wide counter), an INTERNALERROR.
    inprocess = pytester.runpytest

    def runpytest(*args: str | os.PathLike[str], **kwargs: object) -> pytest.RunResult:
        if "-n" in args:
            return pytester.runpytest_subprocess(*args, **kwargs)  # type: ignore[arg-type]
        return inprocess(*args, **kwargs)

    monkeypatch.setattr(pytester, "runpytest", runpytest)
    if initdb_cluster is None:
        return pytester
    cache = pytester.path / ".cache" / "sqlfix"
    cache.mkdir(parents=True)
    shutil.copytree(initdb_cluster, cache / initdb_cluster.name, symlinks=True, copy_function=_link)
    return pytester


def _link(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


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
# Pure: no PostgreSQL at all (the compiler, lint, configuration, the docs). They ran in the
# full suite; the matrix (-m "not slow and not pure") gives each major only what it can change.
_PURE_PATHS = ("compiler/", "cli/test_lint.py", "test_architecture.py", "test_config.py",
               "test_docs_site.py", "test_errors.py", "test_ci_scripts.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        where = item.path.relative_to(tests_dir).as_posix() if item.path.is_relative_to(tests_dir) else ""
        if where.startswith(_SLOW_PATHS):
            item.add_marker(pytest.mark.slow)
        if where.startswith(_PURE_PATHS):
            item.add_marker(pytest.mark.pure)
