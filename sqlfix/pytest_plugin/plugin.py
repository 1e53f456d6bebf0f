"""The pytest plugin's entry point: options, ini keys, the `sqlfix` mark, hooks, fixtures.

Per test: begin a transaction, load the test's fixtures, mark a savepoint, run
the test, check the boundary held, roll back (always).

Every pytest run of a project with sqlfix installed loads this module, so it holds
only the registrations: option names (`sqlfix.config_keys`), the mark's names, the
hooks that run once per run, and fixtures whose bodies are imported on first use
(`runtime.py`, `async_fixtures.py`, `sqla.py`). pytest rewrites the asserts of every
module of sqlfix's distribution and reads them back from its own `.pyc` files at a
cost per byte of code, so what this module does not import a run without a sqlfix
test does not pay for. The configuration (`sqlfix.config`, tomllib, the compiler) is
read once a collected test needs sqlfix, or at configure time when a `--sqlfix-*`
option is given or pytest-xdist distributes; the database side (psycopg, Jinja, the
server) is imported by the first test that uses sqlfix. Per test, a test without
sqlfix costs nothing: `_sqlfix_uses` is no autouse fixture but is added to the marked
tests at collection, and the run's hook wrappers (`runtime.RunHooks`) are registered
only when the run has a sqlfix test. tests/pytest_plugin/test_startup.py holds that;
docs/architecture.md has the figures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from sqlfix import docs_url
from sqlfix.config_keys import (
    INI_KEYS,
    INI_LINE_KEYS,
    INI_PREFIX,
    LEGACY_MARKER,
    MARKER,
    MARKER_HELP,
    OPTION_KEYS,
    TIMEOUT_KEYS,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from sqlalchemy.orm import Session

    from sqlfix.config import Settings
    from sqlfix.database.aboundary import AsyncSqlfixConnection
    from sqlfix.database.boundary import Boundary, SqlfixConnection  # noqa: F401 (stash keys)
    from sqlfix.database.session import DatabaseSession
    from sqlfix.database.verify import Fingerprint  # noqa: F401 (a stash key's type)
    from sqlfix.pytest_plugin.handle import Sqlfix

SETTINGS_KEY = pytest.StashKey["Settings"]()  # read on first need: settings_of()
LATE_HEADER_KEY = pytest.StashKey[bool]()  # read after collection: the header comes then
SESSION_KEY = pytest.StashKey["DatabaseSession"]()
BOUNDARY_KEY = pytest.StashKey["Boundary"]()
ESCAPE_KEY = pytest.StashKey[str]()  # an escape found after a test that failed anyway
COMMITTED_CONN_KEY = pytest.StashKey["SqlfixConnection"]()  # a committed test's, while it runs
USED_KEY = pytest.StashKey[bool]()  # the test ran with sqlfix: its failure report shows the seed
FINGERPRINT_KEY = pytest.StashKey["Fingerprint"]()  # the verifier's reference state
NO_ANSWER_KEY = pytest.StashKey[str]()  # the xdist controller could not connect: why
HANDLE_KEY = pytest.StashKey["Sqlfix"]()  # for the failure report and --sqlfix-report
KEEP_LOG_KEY = pytest.StashKey[bool]()  # a sqlfix test failed: keep the server's log
UNREAD_KEY = pytest.StashKey[str]()  # an xdist worker's unread [tool.sqlfix]: said at first use
CACHE_WARNED_KEY = pytest.StashKey[bool]()  # said once that its cache folder cannot be made
NEXT_KEY = pytest.StashKey["pytest.Item | None"]()  # the test pytest runs after this one
SEED_CACHE_KEY = "sqlfix/seed"  # the last run's seed, in pytest's cache, for --sqlfix-seed=last


def _seed_option(text: str) -> str:
    from sqlfix.config import parse_seed

    if text.strip().lower() == "last":
        return "last"
    try:
        parse_seed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _duration_option(text: str) -> str:
    from sqlfix.config import parse_duration

    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_boundary_options(group: Any) -> None:
    """Timeouts and the verifier; see docs/boundary.md."""
    for key in TIMEOUT_KEYS:
        group.addoption(
            OPTION_KEYS[key], dest=f"sqlfix_{key}", metavar="DURATION", default=None,
            type=_duration_option,
            help=f"{key.replace('_', ' ')} ('10s', '500ms', 0 = none; default: "
            f"[tool.sqlfix] {key}, else as in {docs_url('configuration')})")
    group.addoption(
        OPTION_KEYS["verify"], dest="sqlfix_verify", action="store_const", const=True,
        default=None, help="after each test, check every table and sequence is as before "
        "the first test (default: [tool.sqlfix] verify, else off)")
    group.addoption(
        OPTION_KEYS["layers"], dest="sqlfix_layers", action="store_const", const=True,
        default=None, help="keep loaded fixtures under savepoints for the next test that "
        "shares them (default: [tool.sqlfix] layers, else off)")


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
        metavar="N|random|last",
        default=None,
        type=_seed_option,
        help="seed for fixture values (default 0); 'random' picks one and prints it, "
        "'last' replays the previous run's",
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
    _add_boundary_options(group)
    group.addoption(
        "--sqlfix-report",
        action="store_true",
        default=False,
        help="at the end, per fixture file: the tests that used it, render and load time, "
        "rows loaded; and the slowest loads",
    )
    for key in sorted(INI_KEYS):
        what = f"sqlfix: [tool.sqlfix] {key}, as a pytest option ({docs_url('configuration')})"
        if key in INI_LINE_KEYS:
            parser.addini(INI_PREFIX + key, what, type="linelist")
        else:
            parser.addini(INI_PREFIX + key, what)


def settings_of(config: pytest.Config) -> Settings:
    """The run's settings, read on first need and kept; raises pytest.UsageError if bad."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is not None:
        return settings
    from sqlfix.pytest_plugin.runtime import read_settings

    return read_settings(config)


def asked_for(config: pytest.Config) -> bool:
    """A `--sqlfix-*` option on the command line: read (and check) the configuration now."""
    names = ("sqlfix_dsn", "sqlfix_seed", "sqlfix_fixtures", *(f"sqlfix_{k}" for k in OPTION_KEYS))
    return any(config.getoption(name) is not None for name in names) or bool(
        config.getoption("sqlfix_report") or config.getoption("sqlfix_rebuild"))


def xdist_workers(config: pytest.Config) -> int:
    """How many pytest-xdist workers this controller starts (0: not distributing)."""
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist"):
        return 0
    if config.getoption("collectonly") or config.getoption("dist", "no") == "no":
        return 0
    # What xdist itself checks before it starts workers (after it turned -n N into tx).
    return len(config.getoption("tx", None) or [])


class _XdistSeed:
    """On the pytest-xdist controller: every worker gets the controller's seed."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["sqlfix_seed"] = settings_of(self.config).seed
        silent = self.config.stash.get(NO_ANSWER_KEY, None)
        if silent is not None:
            node.workerinput["sqlfix_no_answer"] = silent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    workers = xdist_workers(config)
    if workers:  # the controller of workers (xdist starts them on the same condition)
        from sqlfix.pytest_plugin.stop import Controller as StopController

        config.pluginmanager.register(_XdistSeed(config), "sqlfix-xdist-seed")
        config.pluginmanager.register(StopController(), "sqlfix-xdist-stop")
    # The rest (runtime.configure) when an option asks for sqlfix or pytest-xdist
    # distributes; else the configuration waits for a collected sqlfix test.
    if workers or asked_for(config):
        from sqlfix.pytest_plugin.runtime import configure

        configure(config)


_MARKS = frozenset((MARKER, LEGACY_MARKER))
USES_FIXTURE = "_sqlfix_uses"  # added to the closure of the tests that carry a mark


@pytest.hookimpl(trylast=True)  # after -k/-m deselected theirs, and others added their marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give the marked tests `_sqlfix_uses`; if any test needs sqlfix, read the configuration.

    One walk over each test's marks; a test with neither mark nor sqlfix fixture is
    left as it is, so it costs nothing when it runs.
    """
    needed = False
    memo: dict[int, bool] = {}  # per node id(): a module's or class's marks are read once
    folders = set()  # of the tests that need sqlfix
    for item in items:
        uses = _carries_mark(item, memo) and _request_uses(item)
        if uses or "_sqlfix_session" in getattr(item, "fixturenames", ()):
            needed = True  # (a fixture that reaches the database: they all need the session)
            folders.add(item.path.parent)
    if needed:
        register_run_hooks(config)
        if SETTINGS_KEY not in config.stash:
            settings_of(config)  # a bad configuration stops the run here, before any test
            config.stash[LATE_HEADER_KEY] = True
        from sqlfix.pytest_plugin.runtime import refuse_unread_below

        refuse_unread_below(config, folders)  # `pytest` from a monorepo's top, no paths


def _carries_mark(node: pytest.Item | pytest.Collector, memo: dict[int, bool]) -> bool:
    """`any(m.name in _MARKS for m in node.iter_markers())`, each parent looked at once."""
    found = memo.get(id(node))
    if found is None:
        found = (any(mark.name in _MARKS for mark in node.own_markers)
                 or (node.parent is not None and _carries_mark(node.parent, memo)))
        memo[id(node)] = found
    return found


def _request_uses(item: pytest.Item) -> bool:
    """Add `_sqlfix_uses` to a test marked `sqlfix`, or with an old-style `uses` mark.

    Where an autouse fixture would be: after the wider-scoped fixtures (a user's
    session fixture still runs before the database starts), before the test's
    function-scoped ones (they see the loaded data). A new list: parametrized tests
    share the one pytest computed. Another plugin's `uses("network")` gets nothing.
    Returns True if the test is marked `sqlfix` (it needs the database).
    """
    marked = item.get_closest_marker(MARKER) is not None
    names = getattr(item, "fixturenames", None)
    info = getattr(item, "_fixtureinfo", None)  # None: not a Python test, no fixtures
    if names is None or info is None or USES_FIXTURE in names:
        return marked
    if not marked:
        from sqlfix.marker import legacy_warning

        if legacy_warning(item) is None:
            return False
    defs = info.name2fixturedefs
    at = next((i for i, name in enumerate(names)
               if name not in defs or defs[name][-1].scope == "function"), len(names))
    item.fixturenames = [*names[:at], USES_FIXTURE, *names[at:]]  # type: ignore[attr-defined]
    return marked


RUN_HOOKS = "sqlfix-run"  # the plugin name of runtime.RunHooks


def register_run_hooks(config: pytest.Config) -> None:
    """Register `runtime.RunHooks` once: at collection, or when a test reaches the database."""
    if not config.pluginmanager.has_plugin(RUN_HOOKS):
        from sqlfix.pytest_plugin.runtime import RunHooks

        config.pluginmanager.register(RunHooks(), RUN_HOOKS)


def _header(config: pytest.Config) -> list[str]:
    from sqlfix.pytest_plugin.runtime import header

    return header(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return _header(config) if SETTINGS_KEY in config.stash else []


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    """The header's lines, when the configuration was read after collection."""
    late = config.stash.get(LATE_HEADER_KEY, False)
    shown = config.option.verbose >= 0 and not config.getoption("no_header", False)
    return _header(config) if late and shown else []


@pytest.fixture(scope="session")
def _sqlfix_session(pytestconfig: pytest.Config, request: pytest.FixtureRequest
                    ) -> DatabaseSession:
    from sqlfix.pytest_plugin.runtime import session_fixture

    return session_fixture(pytestconfig, request)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: stop the database now, before the worker reports it is
    done; the controller may end the worker before its config clean-up ran (a DSN's
    worker database would then stay behind)."""
    config = session.config
    started = config.stash.get(SESSION_KEY, None)
    if started is None or not hasattr(config, "workerinput"):
        return
    from sqlfix.pytest_plugin.runtime import stop_on_worker

    stop_on_worker(config, started)


@pytest.fixture
def sqlfix(request: pytest.FixtureRequest, _sqlfix_session: DatabaseSession) -> Iterator[Sqlfix]:
    """The test's handle: fixtures from @uses loaded, inside a transaction rolled back after."""
    from sqlfix.pytest_plugin.runtime import sqlfix_fixture

    yield from sqlfix_fixture(request, _sqlfix_session)


@pytest.fixture(scope="session")
def sqlfix_dsn(_sqlfix_session: DatabaseSession) -> str:
    """The test database as a `postgresql://` URL, for the application's pools and DATABASE_URL.

    A `str`; its repr() (what pytest shows of a failing test's arguments) has the
    password, if any, as `***`.

    In the rollback mode connections made from it see none of the test's fixtures;
    use it with `@uses(..., commit=True)`.
    """
    from sqlfix.database.committed import DatabaseUrl, as_url

    assert _sqlfix_session.dsn is not None
    return DatabaseUrl(as_url(_sqlfix_session.dsn))  # its repr hides a password


@pytest.fixture
def sqlfix_conn(request: pytest.FixtureRequest, sqlfix: Sqlfix) -> SqlfixConnection:
    """The test's psycopg connection, inside its rollback boundary, fixtures loaded."""
    from sqlfix.pytest_plugin.async_fixtures import refuse_mixing

    refuse_mixing(request, sqlfix, "sqlfix_conn", is_async=False)
    return sqlfix.conn


@pytest.fixture
def _sqlfix_uses(request: pytest.FixtureRequest) -> None:
    """Tests marked with @uses get their fixtures even if they request no sqlfix fixture.

    Not autouse (set up for every test of the project): pytest_collection_modifyitems
    adds it to the marked tests.

    A `unittest.TestCase` cannot request fixtures: it gets the handle as `self.sqlfix`
    (set before `setUp` runs).
    """
    __tracebackhide__ = True  # under filterwarnings=error: the test's line, not this one
    from sqlfix.marker import legacy_warning

    if legacy_warning(request.node) is not None:  # a cheap look first: no settings read
        try:
            fixtures_dir = settings_of(request.config).fixtures_dir
        except pytest.UsageError:
            fixtures_dir = None  # the run stops with that error soon enough: warn anyway
        legacy = legacy_warning(request.node, fixtures_dir)
        if legacy is not None:  # here, so that filterwarnings=error fails this test only
            request.node.warn(legacy)  # at the test's own line, for filters by module
    if request.node.get_closest_marker(MARKER) is None:
        return
    unittest = sys.modules.get("unittest")  # not imported: no TestCase can exist
    method = getattr(request.node, "obj", None)
    if unittest is not None and getattr(method, "__unittest_skip__", False):
        # @unittest.skip on a method: unittest skips it only in runtest, after set-up;
        # skip now, before the database starts and the fixtures load for nothing.
        pytest.skip(str(getattr(method, "__unittest_skip_why__", "")))
    instance = request.instance
    testcase = unittest is not None and isinstance(instance, unittest.TestCase)
    if testcase and hasattr(instance, "sqlfix"):  # the test's own: never overwritten silently
        pytest.fail(f"{type(instance).__name__} has an attribute `sqlfix` of its own, and "
                    "sqlfix sets `self.sqlfix` (its handle) on a unittest.TestCase marked "
                    "with @uses: rename that attribute", pytrace=False)
    handle = request.getfixturevalue("sqlfix")
    if testcase:
        instance.sqlfix = handle


# SQLAlchemy and async fixtures: the bodies are in sqla.py and async_fixtures.py.


@pytest.fixture
def sqlfix_sqla_engine(request: pytest.FixtureRequest, sqlfix: Sqlfix) -> Iterator[Engine]:
    """An Engine for code that makes its own sessions: everything stays in the test's boundary.

    `Session(engine)` / `sessionmaker(engine)` in the code under test may commit:
    the commit lands on sqlfix's savepoint and is rolled back with the test.
    """
    from sqlfix.pytest_plugin.sqla import sqla_engine

    yield from sqla_engine(request, sqlfix)


@pytest.fixture
def sqlfix_sqla_session(
    request: pytest.FixtureRequest, sqlfix: Sqlfix, sqlfix_sqla_engine: Engine
) -> Iterator[Session]:
    """A Session joined to the test's transaction; `session.commit()` leaves nothing behind."""
    from sqlfix.pytest_plugin.sqla import sqla_session

    yield from sqla_session(request, sqlfix, sqlfix_sqla_engine)


@pytest.fixture
def sqlfix_aconn(request: pytest.FixtureRequest, sqlfix: Sqlfix) -> Iterator[AsyncSqlfixConnection]:
    """The test's `psycopg.AsyncConnection`, inside its rollback boundary, fixtures loaded.

    `await conn.commit()` / `rollback()` work on savepoints as on `sqlfix_conn`;
    escapes are detected and sequences reset the same way. Usable from any event loop.
    """
    from sqlfix.pytest_plugin.async_fixtures import aconn

    yield from aconn(request, sqlfix)


@pytest.fixture
def sqlfix_async_engine(
    request: pytest.FixtureRequest, sqlfix: Sqlfix, sqlfix_aconn: AsyncSqlfixConnection
) -> Iterator[AsyncEngine]:
    """An AsyncEngine whose every connection is the test's async connection.

    Its transactions are savepoints nested in the test's transaction: an
    `AsyncSession(engine)` of the code under test may commit; the test's end undoes it.
    """
    from sqlfix.pytest_plugin.async_fixtures import async_engine

    yield from async_engine(request, sqlfix, sqlfix_aconn)


@pytest.fixture
def sqlfix_async_session(
    request: pytest.FixtureRequest, sqlfix: Sqlfix, sqlfix_async_engine: AsyncEngine
) -> Iterator[AsyncSession]:
    """An AsyncSession joined to the test's transaction (`join_transaction_mode=
    "create_savepoint"`): `await session.commit()` leaves nothing behind."""
    from sqlfix.pytest_plugin.async_fixtures import async_session

    yield from async_session(request, sqlfix, sqlfix_async_engine)
