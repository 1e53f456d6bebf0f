"""The pytest plugin: options, the `uses` marker, the `sqlfix` and `sqlfix_conn` fixtures.

Per test: begin a transaction, load the test's fixtures, mark a savepoint, run
the test, check the boundary held, roll back (always).

Every pytest run of a project with sqlfix installed loads this module, so it
imports only what options and configuration need. The database side (psycopg,
Jinja, the server) is imported by the first test that uses sqlfix: a run
without one pays nothing for it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sqlfix.config import Settings, load_settings, parse_seed
from sqlfix.errors import SqlfixError
from sqlfix.marker import MARKER, MARKER_HELP, requested_names
from sqlfix.pytest_plugin.sqla import sqlfix_sqla_engine, sqlfix_sqla_session

if TYPE_CHECKING:
    from sqlfix.database.boundary import Boundary, SqlfixConnection
    from sqlfix.database.session import DatabaseSession
    from sqlfix.pytest_plugin.handle import Sqlfix

__all__ = ["sqlfix_sqla_engine", "sqlfix_sqla_session"]  # fixtures re-exported for pytest

SETTINGS_KEY = pytest.StashKey[Settings]()
SESSION_KEY = pytest.StashKey["DatabaseSession"]()
BOUNDARY_KEY = pytest.StashKey["Boundary"]()
ESCAPE_KEY = pytest.StashKey[str]()  # an escape found after a test that failed anyway
USED_KEY = pytest.StashKey[bool]()  # the test ran with sqlfix: its failure report shows the seed


def _seed_option(text: str) -> str:
    try:
        parse_seed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sqlfix", "sqlfix: SQL fixtures in a rollback boundary")
    group.addoption(
        "--sqlfix-dsn",
        metavar="DSN",
        default=None,
        help="PostgreSQL to test against (default: SQLFIX_DSN, [tool.sqlfix] dsn, "
        "else an embedded throwaway server)",
    )
    group.addoption(
        "--sqlfix-seed",
        metavar="N|random",
        default=None,
        type=_seed_option,
        help="seed for fixture values (default 0); 'random' picks one and prints it",
    )
    group.addoption(
        "--sqlfix-rebuild",
        action="store_true",
        default=False,
        help="build the schema again (schema files, setup_command) instead of reusing the "
        "embedded server's cluster saved by an earlier run",
    )
    group.addoption(
        "--sqlfix-fixtures",
        metavar="DIR",
        default=None,
        help="fixtures directory (default: [tool.sqlfix] fixtures_dir or fixtures_sql)",
    )


def _settings(config: pytest.Config) -> Settings:
    fixtures = config.getoption("sqlfix_fixtures")
    if fixtures is not None:
        fixtures = str(config.invocation_params.dir / Path(fixtures))
    cli = {
        "dsn": config.getoption("sqlfix_dsn"),
        "seed": config.getoption("sqlfix_seed"),
        "fixtures_dir": fixtures,
    }
    return load_settings(config.rootpath, cli, os.environ)


class _XdistSeed:
    """On the pytest-xdist controller: every worker gets the controller's seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["sqlfix_seed"] = self.seed


def _worker_settings(config: pytest.Config, settings: Settings) -> Settings:
    """A pytest-xdist worker uses the controller's seed (`random` would differ per worker)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return settings
    if "sqlfix_seed" not in workerinput:
        return settings
    sources = {**settings.sources, "seed": "the pytest-xdist controller"}
    return replace(settings, seed=int(workerinput["sqlfix_seed"]), sources=sources)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        settings = _worker_settings(config, _settings(config))
    except SqlfixError as exc:
        raise pytest.UsageError(f"sqlfix: {exc}") from None
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_XdistSeed(settings.seed), "sqlfix-xdist-seed")
    config.stash[SETTINGS_KEY] = settings


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = config.stash[SETTINGS_KEY]
    where = s.database if s.dsn else f"{s.database} (started on first use)"
    return [
        f"sqlfix: seed={s.seed} ({s.source('seed')}); replay with --sqlfix-seed={s.seed}",
        f"sqlfix: fixtures {s.fixtures_dir} ({s.source('fixtures_dir')}); database: {where}",
    ]


def _fixture_cache(config: pytest.Config) -> Path | None:
    """Where compiled fixtures are kept between runs: SQLFIX_CACHE_DIR, else pytest's cache."""
    if os.environ.get("SQLFIX_CACHE_DIR"):
        return Path(os.environ["SQLFIX_CACHE_DIR"]).expanduser()
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    return None if cache is None else Path(cache.mkdir("sqlfix"))


@pytest.fixture(scope="session")
def _sqlfix_session(pytestconfig: pytest.Config) -> DatabaseSession:
    import psycopg  # here, not at the top: see the module's docstring

    from sqlfix.database.session import DatabaseSession

    worker = getattr(pytestconfig, "workerinput", {}).get("workerid")  # a DSN is cloned per worker
    session = DatabaseSession(pytestconfig.stash[SETTINGS_KEY], _fixture_cache(pytestconfig),
                              worker, rebuild=pytestconfig.getoption("sqlfix_rebuild"))
    pytestconfig.stash[SESSION_KEY] = session
    pytestconfig.add_cleanup(session.stop)
    try:
        session.start()
        return session
    except (SqlfixError, psycopg.Error) as exc:
        problem = str(exc)
    # Every database test would fail the same way: stop the run, say why once.
    pytest.exit(f"sqlfix could not prepare the test database: {problem}", returncode=3)


def _settle(item: pytest.Item, boundary: Boundary) -> str | None:
    """If the boundary broke: restore the baseline and say what happened, else None."""
    if boundary.escape is not None:
        return None  # found and reported already
    reason = boundary.broken()
    if reason is None:
        return None
    import psycopg

    try:
        restored = item.config.stash[SESSION_KEY].restore()
    except (SqlfixError, psycopg.Error) as exc:
        pytest.exit(f"sqlfix: a test's changes escaped its rollback boundary and the baseline "
                    f"could not be restored ({exc}); later tests would see them.\n{reason}",
                    returncode=3)
    return f"sqlfix: the rollback boundary did not hold. {reason}\n{restored}."


@pytest.fixture
def sqlfix(request: pytest.FixtureRequest, _sqlfix_session: DatabaseSession) -> Iterator[Sqlfix]:
    """The test's handle: fixtures from @uses loaded, inside a transaction rolled back after."""
    from sqlfix.pytest_plugin.handle import Sqlfix

    boundary = _sqlfix_session.boundary()
    boundary.begin()
    item = request.node
    item.stash[BOUNDARY_KEY] = boundary
    item.stash[USED_KEY] = True
    handle = Sqlfix(_sqlfix_session, boundary)
    try:
        handle.load(*requested_names(item))
        if not boundary.is_protected:
            boundary.protect()  # nothing was loaded: the savepoint did not ride along
        problem = None
    except (SqlfixError, TypeError) as exc:
        boundary.end()
        problem = str(exc)
    if problem is not None:  # outside `except`: the report shows the message once
        pytest.fail(f"sqlfix could not load the fixtures of this test:\n{problem}", pytrace=False)
    try:
        yield handle
    finally:
        del item.stash[BOUNDARY_KEY]
        # Fixtures' set-up and tear-down run outside the call check: look again.
        late = _settle(item, boundary)
        boundary.end()
    message = late or item.stash.get(ESCAPE_KEY, None)
    if message is not None:
        item.stash[ESCAPE_KEY] = message  # makereport keeps xfail from hiding it
        pytest.fail(message, pytrace=False)


@pytest.fixture
def sqlfix_conn(sqlfix: Sqlfix) -> SqlfixConnection:
    """The test's psycopg connection, inside its rollback boundary, fixtures loaded."""
    return sqlfix.conn


@pytest.fixture(autouse=True)
def _sqlfix_uses(request: pytest.FixtureRequest) -> None:
    """Tests marked with @uses get their fixtures even if they request no sqlfix fixture."""
    if request.node.get_closest_marker(MARKER) is not None:
        request.getfixturevalue("sqlfix")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test body: did the boundary hold? If not, restore and fail the test.

    A test that failed, skipped or xfailed for its own reason keeps that outcome;
    the escape is then reported as an error at tear-down, so it is never hidden.
    """
    outcome_error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        outcome_error = exc
    boundary = item.stash.get(BOUNDARY_KEY, None)
    message = _settle(item, boundary) if boundary is not None else None
    if outcome_error is not None:
        if message is not None:
            item.stash[ESCAPE_KEY] = message
        raise outcome_error
    if message is not None:
        pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "teardown" and ESCAPE_KEY in item.stash and hasattr(report, "wasxfail"):
        # an expected failure of the test is no excuse for data escaping its boundary
        del report.wasxfail
        report.outcome = "failed"
    if report.failed and item.stash.get(USED_KEY, False):
        seed = item.config.stash[SETTINGS_KEY].seed
        report.sections.append(("sqlfix", f"seed={seed}; replay with --sqlfix-seed={seed}"))
    return report
