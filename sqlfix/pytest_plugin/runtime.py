"""The pytest plugin's hook and fixture bodies, imported on first use.

The entry module (`plugin.py`, loaded by every pytest run of a project with sqlfix
installed) holds only the registrations: options, ini keys, the mark, the hooks that run
once per run and thin fixtures. What they do for a run with sqlfix tests is here, and
this module is imported only when such a run needs it: a collected sqlfix test, a
`--sqlfix-*` option, pytest-xdist distributing, a fixture set up. pytest rewrites the
asserts of every module of an installed plugin's distribution and loads them from its
own cached `.pyc` files, slowly (`marshal.load` on a file object); what a run without a
sqlfix test does not import, it does not pay for (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Generator, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sqlfix.config_keys import INI_PREFIX, MARKER, OPTION_KEYS
from sqlfix.marker import commit_requested, requested_names
from sqlfix.pytest_plugin.plugin import (
    BOUNDARY_KEY,
    CACHE_WARNED_KEY,
    COMMITTED_CONN_KEY,
    ESCAPE_KEY,
    FINGERPRINT_KEY,
    HANDLE_KEY,
    KEEP_LOG_KEY,
    NEXT_KEY,
    NO_ANSWER_KEY,
    RUN_HOOKS,
    SEED_CACHE_KEY,
    SESSION_KEY,
    SETTINGS_KEY,
    UNREAD_KEY,
    USED_KEY,
    asked_for,
    register_run_hooks,
    settings_of,
    xdist_workers,
)
from sqlfix.pytest_plugin.stop import DEATH_OUTPUT, stop_run

if TYPE_CHECKING:
    from sqlfix.config import Settings
    from sqlfix.database.boundary import Boundary
    from sqlfix.database.session import DatabaseSession
    from sqlfix.database.verify import Fingerprint
    from sqlfix.pytest_plugin.handle import Sqlfix


def _settings(config: pytest.Config) -> Settings:
    from sqlfix.config import (
        check_ini_names,
        ini_values,
        load_settings,
        pytest_file_options,
        refuse_unread_tables,
    )
    from sqlfix.pytest_plugin.ini import raw_ini

    fixtures = config.getoption("sqlfix_fixtures")
    if fixtures is not None:
        fixtures = str(config.invocation_params.dir / Path(fixtures))
    seed = config.getoption("sqlfix_seed")
    cli = {
        "dsn": config.getoption("sqlfix_dsn"),
        "seed": _last_seed(config) if seed == "last" else seed,
        "fixtures_dir": fixtures,
        **{key: config.getoption(f"sqlfix_{key}") for key in OPTION_KEYS},
    }
    where = str(config.inipath) if config.inipath is not None else "pytest -o"
    # `-o sqlfix_<key>=...` values: an error in one names the option, not the file
    given = [entry.split("=", 1)[0].strip() for entry in config.getoption("override_ini") or ()]
    check_ini_names(given, "pytest -o")
    overridden = frozenset(name[len(INI_PREFIX):] for name in given if name.startswith(INI_PREFIX))
    if config.inipath is not None:
        check_ini_names(pytest_file_options(config.inipath), where)
    raw = raw_ini(config)
    ini = {**ini_values({k: v for k, v in raw.items() if k not in overridden}, where),
           **ini_values({k: v for k, v in raw.items() if k in overridden}, "pytest -o")}
    # From where pytest runs, and from each path it was given (or testpaths): `pytest
    # app/tests` from the top of a monorepo passes by app/pyproject.toml's table as well
    for arg in [".", *config.args]:
        start = config.invocation_params.dir / arg.split("::", 1)[0]
        refuse_unread_tables(start if start.is_dir() else start.parent, config.rootpath,
                             config.inipath)
    settings = load_settings(config.rootpath, cli, os.environ, ini=ini, ini_file=where,
                             ini_overridden=overridden)
    if seed == "last":
        sources = {**settings.sources, "seed": "option --sqlfix-seed=last, the previous run's"}
        settings = replace(settings, sources=sources)
    return settings


def _last_seed(config: pytest.Config) -> str:
    cache = getattr(config, "cache", None)
    if cache is None:
        raise pytest.UsageError("sqlfix: --sqlfix-seed=last reads pytest's cache, which is "
                                "off (-p no:cacheprovider); give the seed as a number")
    seed = cache.get(SEED_CACHE_KEY, None)  # None too for a file that is not JSON
    where = cache._getvaluepath(SEED_CACHE_KEY)  # pytest's cache: <cachedir>/v/sqlfix/seed
    if seed is None and not where.exists():
        raise pytest.UsageError(f"sqlfix: --sqlfix-seed=last: no previous run's seed in pytest's "
                                f"cache ({cache._cachedir}); run once first, or give the seed "
                                "as a number")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        shown = "unreadable" if seed is None else f"{seed!r}, not a seed"
        raise pytest.UsageError(f"sqlfix: --sqlfix-seed=last: the seed stored in {where} is "
                                f"{shown}; delete that file, or "
                                "give the seed as a number")
    return str(seed)


def read_settings(config: pytest.Config) -> Settings:
    """The run's settings, read and kept (`plugin.settings_of`); pytest.UsageError if bad."""
    from sqlfix.errors import SqlfixError

    try:
        settings = _worker_settings(config, _settings(config))
    except SqlfixError as exc:
        raise pytest.UsageError(f"sqlfix: {exc}") from None
    config.stash[SETTINGS_KEY] = settings
    return settings


def refuse_unread_below(config: pytest.Config, folders: Iterable[Path]) -> None:
    """pytest.UsageError if a test that needs sqlfix sits below a pyproject.toml whose
    `[tool.sqlfix]` table is not read (see config.refuse_unread_tables): the run's paths
    alone miss `pytest` from a monorepo's top with no path and no testpaths."""
    from sqlfix.config import refuse_unread_tables
    from sqlfix.errors import SqlfixError

    try:
        seen: set[Path] = set()  # a folder's chain up to the root is read once
        for folder in sorted(set(folders)):
            refuse_unread_tables(folder, config.rootpath, config.inipath, seen)
    except SqlfixError as exc:
        if hasattr(config, "workerinput"):
            # A UsageError in a worker's collection is an INTERNALERROR of the controller:
            # the first sqlfix test stops the run with it instead (stop_run, exit 4)
            config.stash[UNREAD_KEY] = str(exc)
            return
        raise pytest.UsageError(f"sqlfix: {exc}") from None


def _remember_seed(config: pytest.Config, seed: int) -> None:
    """The seed for `--sqlfix-seed=last`, in pytest's cache: stored by a run whose tests
    reached the database (on each pytest-xdist worker: the controller's seed), not by
    `--collect-only`, `--fixtures` or a selection without sqlfix tests."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        cache.set(SEED_CACHE_KEY, seed)


def _worker_settings(config: pytest.Config, settings: Settings) -> Settings:
    """A pytest-xdist worker uses the controller's seed (`random` would differ per worker)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return settings
    if "sqlfix_seed" not in workerinput:
        return settings
    sources = {**settings.sources, "seed": "the pytest-xdist controller"}
    return replace(settings, seed=int(workerinput["sqlfix_seed"]), sources=sources)


def configure(config: pytest.Config) -> None:
    """`plugin.pytest_configure`'s part for a `--sqlfix-*` option or pytest-xdist
    distributing: the configuration read (and checked) now, a DSN checked once."""
    controller = not hasattr(config, "workerinput")
    if config.getoption("sqlfix_report") and controller:
        from sqlfix.pytest_plugin.report import LoadReport

        config.pluginmanager.register(LoadReport(), "sqlfix-report")
    # Else the configuration waits for a collected sqlfix test (pytest_collection_modifyitems):
    # an xdist controller collects nothing, and an option given is meant to be used.
    # (A DSN with pytest-xdist: each worker clones the database, see database/workers.py.)
    if asked_for(config) or xdist_workers(config):
        settings = settings_of(config)
        if controller and settings.dsn and xdist_workers(config):
            silent = _refuse_unsafe_dsn_once(settings.dsn, settings.allow_any_database)
            if silent is not None:  # no connection: the workers say so at once, no waiting
                config.stash[NO_ANSWER_KEY] = silent
            else:
                _refuse_busy_dsn_once(settings.dsn)
                config.add_cleanup(
                    lambda: _drop_clones_left(settings.dsn, xdist_workers(config)))
        if controller and not settings.dsn and settings.server_port is not None \
                and xdist_workers(config) > 1:
            # Each worker starts its own embedded server; one of them gets the port.
            raise pytest.UsageError(
                f"sqlfix: server_port = {settings.server_port} (from "
                f"{settings.source('server_port')}) with {xdist_workers(config)} pytest-xdist "
                "workers: each worker starts its own embedded PostgreSQL, and only one can "
                "listen on that port. Run with -n 0 or -n 1 when a tool needs the port, or "
                "remove server_port (the tests reach each worker's server by sqlfix_dsn)")


def _refuse_busy_dsn_once(dsn: str) -> None:
    """A database another test run tests in, refused once on the xdist controller (exit 4)
    rather than by each worker as it prepares its clone (see database/run_lock.py)."""
    import psycopg

    from sqlfix.database import run_lock
    from sqlfix.errors import DatabaseError

    try:
        run_lock.refuse_if_running(dsn)
    except DatabaseError as exc:
        raise pytest.UsageError(f"sqlfix: {exc}") from None
    except psycopg.Error:
        return  # unreachable, refused: each worker says what is wrong, as before


def _drop_clones_left(dsn: str | None, workers: int) -> None:
    """On the controller, as the run ends: the clones of workers that could not drop
    theirs (Ctrl-C, a crash) go too, not at the next run with as many workers."""
    if dsn is None:
        return
    from sqlfix.database.workers import drop_clones_left

    drop_clones_left(dsn, [f"gw{n}" for n in range(workers)])


def _refuse_unsafe_dsn_once(dsn: str, allow_any_database: bool) -> str | None:
    """The DSN's database, checked once on the xdist controller (exit 4), not by each
    worker as it clones it (a failure per worker, exit 3): its name, from the DSN's
    text and then as the server reads it, and the user's right to copy it
    (`workers.refuse_unclonable`). Returns why the controller could not connect with
    the DSN (or read it), for the workers to say; else None."""
    from psycopg.conninfo import conninfo_to_dict

    from sqlfix.database.schema import unsafe_database
    from sqlfix.database.workers import refuse_unclonable
    from sqlfix.errors import DatabaseError

    try:
        name = conninfo_to_dict(dsn).get("dbname")
    except Exception as exc:  # noqa: BLE001  # a DSN libpq cannot read: as without -n
        return str(exc).strip() or type(exc).__name__
    why = unsafe_database(str(name), allow_any_database) if name else None
    if why:
        raise pytest.UsageError(f"sqlfix: {why}")
    try:  # what the server says: the name it uses, the user's right to make the copies
        return refuse_unclonable(dsn, allow_any_database)
    except DatabaseError as exc:
        raise pytest.UsageError(f"sqlfix: {exc}") from None


def header(config: pytest.Config) -> list[str]:
    s = settings_of(config)
    where = s.database if s.dsn else f"{s.database} (started on first use)"
    return [
        f"sqlfix: seed={s.seed} ({s.source('seed')}); replay with --sqlfix-seed={s.seed}",
        f"sqlfix: fixtures {s.fixtures_dir} ({s.source('fixtures_dir')}); database: {where}",
    ]


def _fixture_cache(config: pytest.Config) -> Path | None:
    """Where compiled fixtures are kept between runs: SQLFIX_CACHE_DIR, else pytest's cache."""
    if os.environ.get("SQLFIX_CACHE_DIR"):
        return Path(os.environ["SQLFIX_CACHE_DIR"]).expanduser()
    return _cache_dir(config)


def _cache_dir(config: pytest.Config) -> Path | None:
    """sqlfix's folder in pytest's cache; None with -p no:cacheprovider or when it cannot
    be made (a read-only checkout): then compiled fixtures stay in memory and no server
    log is kept, with a warning, as pytest itself warns when it cannot write its cache."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return None
    try:
        return Path(cache.mkdir("sqlfix"))
    except OSError as exc:
        if not config.stash.get(CACHE_WARNED_KEY, False):
            config.stash[CACHE_WARNED_KEY] = True
            warnings.warn(pytest.PytestCacheWarning(
                f"sqlfix: could not create its folder in pytest's cache ({exc}): compiled "
                "fixtures are kept in memory only and a failing run's server log is not "
                "copied; set SQLFIX_CACHE_DIR to a writable folder, or pytest's cache_dir"),
                stacklevel=2)
        return None


def session_fixture(pytestconfig: pytest.Config, request: pytest.FixtureRequest
                    ) -> DatabaseSession:
    """The body of the `_sqlfix_session` fixture: the database session, started."""
    import psycopg  # here, not at the top: see the module's docstring

    from sqlfix.database.session import DatabaseSession
    from sqlfix.errors import DatabaseError, RefusedDatabase, SqlfixError, UnfinishedRunWarning

    try:  # read already unless a test reached sqlfix's fixtures by getfixturevalue
        settings = settings_of(pytestconfig)
    except pytest.UsageError as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
    unread = pytestconfig.stash.get(UNREAD_KEY, None)
    if unread is not None:
        stop_run(pytestconfig, request.session, f"sqlfix: {unread}", pytest.ExitCode.USAGE_ERROR)
    register_run_hooks(pytestconfig)  # a test reached the database by getfixturevalue
    workerinput = getattr(pytestconfig, "workerinput", {})  # a DSN is cloned per worker
    session = DatabaseSession(settings, _fixture_cache(pytestconfig), workerinput.get("workerid"),
                              rebuild=pytestconfig.getoption("sqlfix_rebuild"),
                              run=workerinput.get("testrunuid"))
    pytestconfig.stash[SESSION_KEY] = session
    pytestconfig.add_cleanup(session.stop)
    pytestconfig.add_cleanup(lambda: _keep_server_log(pytestconfig, session))  # before stop
    try:
        silent = workerinput.get("sqlfix_no_answer")
        if silent is not None:  # the controller could not connect (or waited) already
            raise DatabaseError(silent)
        session.start()
        _remember_seed(pytestconfig, settings.seed)  # its tests reach the database
        for note in session.start_notes:  # a killed run's sequences put back
            warnings.warn(UnfinishedRunWarning(note), stacklevel=1)
        if session.settings.verify:
            _fingerprint(pytestconfig, session)
        return session
    except (SqlfixError, psycopg.Error) as exc:
        problem = str(exc)
        # sqlfix's own refusal (a name without 'test', another run in it): the
        # configuration's to fix, exit 4 as the pytest-xdist controller's refusal
        code = (pytest.ExitCode.USAGE_ERROR if isinstance(exc, RefusedDatabase) else 3)
    # Every database test would fail the same way: stop the run, say why once.
    stop_run(pytestconfig, request.session,
             f"sqlfix could not prepare the test database: {problem}", code)


def death_at_end(session: DatabaseSession) -> str | None:
    """At the run's end: a death of the embedded server no report named, in words."""
    died = session.untold_death()
    if died is None and session.server is not None and session.server.gone():
        died = session.server.exited()  # after the last sqlfix test: nothing revived it
    return died


def stop_on_worker(config: pytest.Config, started: DatabaseSession) -> None:
    """`plugin.pytest_sessionfinish` on a pytest-xdist worker whose database started.

    A death of its server no test reported goes to the controller (a worker's terminal
    summary is not shown), which prints it (`stop.Controller`)."""
    died = death_at_end(started)
    if died is not None:
        config.workeroutput[DEATH_OUTPUT] = _death_lines(config, died)  # type: ignore[attr-defined]
    _keep_server_log(config, started)
    started.stop()


def _kept_log(config: pytest.Config) -> Path | None:
    """Where a failing run's server log is copied to: pytest's cache, one file per worker."""
    folder = _cache_dir(config)
    if folder is None:
        return None
    worker = getattr(config, "workerinput", {}).get("workerid")
    return folder / (f"postgres-{worker}.log" if worker else "postgres.log")


def _keep_server_log(config: pytest.Config, session: DatabaseSession) -> None:
    target = _kept_log(config) if config.stash.get(KEEP_LOG_KEY, False) else None
    if target is not None and session.server is not None:
        with contextlib.suppress(OSError):  # no log to keep is no reason to fail the run
            shutil.copyfile(session.server.log, target)


def _settle(item: pytest.Item, boundary: Boundary, found: str | None = None) -> str | None:
    """If the boundary broke: restore the baseline and say what happened, else None.

    `found`: the escape end() found (the checks had passed), to restore and report.
    """
    if boundary.escape is not None and found is None:
        return None  # found and reported already
    reason = found or boundary.broken()
    if reason is None:
        return None
    import psycopg

    from sqlfix.database.session import ServerRecovering, damage_note
    from sqlfix.errors import SqlfixError

    stop = None
    session = item.config.stash[SESSION_KEY]
    # A server setting of the user's (a 1 ms idle_in_transaction_session_timeout) can end
    # sqlfix's own connection too: each of these messages names them, as start-up does.
    try:
        restored = _restore_saying(session)
    except ServerRecovering as exc:
        stop = (f"sqlfix: {exc}; the baseline could not be restored after "
                f"{item.nodeid}, and later tests would not start from it.\n"
                + _with_settings(session, reason) + damage_note(session, exc))
    except (SqlfixError, psycopg.Error) as exc:
        stop = (f"sqlfix: a test's changes escaped its rollback boundary and the baseline "
                f"could not be restored ({exc}); later tests would see them.\n"
                + _with_settings(session, reason) + damage_note(session, exc))
    if stop is not None:  # outside `except`: the report shows the message once
        stop_run(item.config, item.session, stop)
    if boundary.lost:
        return _with_settings(
            session, f"sqlfix: the test's database connection was lost. {reason}\n{restored}.")
    return f"sqlfix: the rollback boundary did not hold. {reason}\n{restored}."


def _restore_saying(session: DatabaseSession) -> str:
    """`session.restore()`'s words, with a death of the embedded server no report has named
    yet (revived by a reconnect in between): this report names it."""
    restored = session.restore()
    died = session.untold_death()
    return restored if died is None or died in restored else f"{died}\n{restored}"


def _with_settings(session: DatabaseSession, message: str) -> str:
    """`message`, naming the server_settings unless the server said who ended the
    session (pg_terminate_backend(): "due to administrator command"), not a setting."""
    if "administrator command" in message:
        return message
    return session.with_server_settings(message)


def _lost_at_end(item: pytest.Item, boundary: Boundary) -> str:
    """The connection died during the test, found by end(): reconnect, say so."""
    import psycopg

    from sqlfix.errors import SqlfixError

    session = item.config.stash[SESSION_KEY]
    try:
        restored = _restore_saying(session)
    except (SqlfixError, psycopg.Error) as exc:
        restored = f"sqlfix could not reconnect: {exc}"
    lost = f"sqlfix: the test's database connection was lost. {boundary.escape}\n{restored}."
    return _with_settings(session, lost)


def _load_problem(session: DatabaseSession, names: tuple[str, ...], exc: Exception) -> str:
    """What went wrong loading `names`, in sqlfix's words (never a bare psycopg error)."""
    from sqlfix.errors import LoadError, SqlfixError
    from sqlfix.pytest_plugin.faults import timeout_hint

    if isinstance(exc, LoadError):
        hint = timeout_hint(exc.sqlstate, session.settings, load=True, message=str(exc))
        return f"{exc}\n{hint}" if hint else str(exc)
    if isinstance(exc, SqlfixError | TypeError):
        return str(exc)
    conn = session.connection_if_open()
    if conn is not None and not conn.broken:
        return (f"the database refused the load of {', '.join(names) or 'fixtures'} "
                f"({type(exc).__name__}: {str(exc).strip()}); nothing of it was kept.")
    deaths = session.deaths
    try:  # a database error the loader could not place: the connection went away
        restored = _restore_saying(session)
    except Exception as again:  # noqa: BLE001 - reported, the run goes on
        restored = f"sqlfix could not reconnect either: {again}"
    why = ("The embedded PostgreSQL itself had died (killed, or crashed: not a fixture's "
           "doing; a test before may have stopped it)" if session.deaths > deaths else
           "A fixture must not end its own session (pg_terminate_backend(pg_backend_pid()) "
           "and the like)")
    return (f"the database connection was lost while loading {', '.join(names) or 'fixtures'} "
            f"({type(exc).__name__}: {str(exc).strip()}). {why}.\n{restored}.")


def sqlfix_fixture(request: pytest.FixtureRequest, _sqlfix_session: DatabaseSession
                   ) -> Iterator[Sqlfix]:
    """The body of the `sqlfix` fixture (see its docstring in `plugin.py`)."""
    import psycopg

    from sqlfix.errors import SqlfixError
    from sqlfix.pytest_plugin.handle import Sqlfix

    item = request.node
    if _committed(item):  # @uses(..., commit=True): no boundary, a restore after
        from sqlfix.pytest_plugin.committed import committed_test

        item.stash[USED_KEY] = True
        yield from committed_test(item, _sqlfix_session)
        return
    from sqlfix.pytest_plugin.own_connections import note_mark

    layered = _sqlfix_session.layers is not None
    boundary = _sqlfix_session.begin(layered=layered)
    if _sqlfix_session.recovered is not None:  # not this test's doing: a warning, not a failure
        from sqlfix.errors import ReconnectedWarning

        kept = None
        if _sqlfix_session.server is not None:  # its log goes with the run's end: kept
            request.config.stash[KEEP_LOG_KEY] = True
            kept = _kept_log(request.config)
        said = _sqlfix_session.recovered + (
            f"\nserver log: {kept} (copied there when the run ends)" if kept else "")
        try:
            warnings.warn(ReconnectedWarning(said), stacklevel=1)
        except BaseException:  # -W error::...: the boundary must not stay open
            boundary.end()
            raise
    note_mark(item, _sqlfix_session, boundary)  # for the second-connection hint
    item.stash[BOUNDARY_KEY] = boundary
    item.stash[USED_KEY] = True
    handle = Sqlfix(_sqlfix_session, boundary)
    names: tuple[str, ...] = ()
    item.stash[HANDLE_KEY] = handle
    try:
        names = requested_names(item)  # TypeError for a mark's bad arguments
        handle.load(*names)
        if not boundary.is_protected:
            boundary.protect()  # nothing was loaded: the savepoint did not ride along
        note_mark(item, _sqlfix_session, boundary)  # a continued layer stack read it now
        if layered and _sqlfix_session.settings.verify:
            _layer_reference(_sqlfix_session, boundary)
        problem = None
    except (SqlfixError, TypeError, psycopg.Error) as exc:
        boundary.end()
        problem = _load_problem(_sqlfix_session, tuple(names), exc)
    if problem is not None:  # outside `except`: the report shows the message once
        pytest.fail(f"sqlfix could not load the fixtures of this test:\n{problem}", pytrace=False)
    try:
        yield handle
    finally:
        del item.stash[BOUNDARY_KEY]
        # Fixtures' set-up and tear-down run outside the call check: look again.
        late = _settle(item, boundary)
        if layered and late is None and item.stash.get(ESCAPE_KEY, None) is None:
            boundary.end(keep=_next_load_order(item, _sqlfix_session))
        else:
            boundary.end()
        if late is None and boundary.lost_at_end:
            late = _lost_at_end(item, boundary)
        elif late is None and boundary.escaped_at_end:
            late = _settle(item, boundary, found=boundary.escape)
    message = late or item.stash.get(ESCAPE_KEY, None)
    if message is not None:
        item.stash[ESCAPE_KEY] = message  # makereport keeps xfail from hiding it
        pytest.fail(message, pytrace=False)


@pytest.hookimpl(tryfirst=True)
def _runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Note the next test: savepoint layers are kept only for a test that shares them.

    A test that does not use sqlfix ends a layer stack still open: the test before it
    kept the stack for a sqlfix test that was then skipped (its set-up never ran), and
    the stack's transaction would hold its rows' locks against this test's own
    connections.
    """
    item.stash[NEXT_KEY] = nextitem
    session = item.config.stash.get(SESSION_KEY, None)
    if session is not None and session.layers is not None and not _uses_sqlfix(item):
        session.end_layers()


def _uses_sqlfix(item: pytest.Item) -> bool:
    return (item.get_closest_marker(MARKER) is not None
            or "sqlfix" in getattr(item, "fixturenames", ()))


def _next_load_order(item: pytest.Item, session: DatabaseSession) -> tuple[str, ...] | None:
    """The load order of the next test's fixtures if it runs in a rollback boundary, else None.

    None (end the layer stack's transaction): no next test, one that does not use
    sqlfix (no transaction is kept open for it), a committed one, one whose marks
    are wrong (its own set-up says so).
    """
    nextitem = item.stash.get(NEXT_KEY, None)
    if nextitem is None:
        return None
    if not _uses_sqlfix(nextitem):
        return None
    from sqlfix.errors import SqlfixError

    try:
        if commit_requested(nextitem):
            return None
        return tuple(session.library.order(requested_names(nextitem)))
    except (SqlfixError, TypeError, OSError):
        return None


def _committed(item: pytest.Item) -> bool:
    try:
        return commit_requested(item)
    except TypeError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)  # outside `except`: the report shows it once


@pytest.hookimpl(wrapper=True)
def _runtest_call(item: pytest.Item) -> Generator[None, None, None]:
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
    message = _settle(item, boundary) if boundary is not None else _committed_busy(item)
    if outcome_error is not None:
        if message is not None:
            item.stash[ESCAPE_KEY] = message
        raise outcome_error
    if message is not None:
        pytest.fail(message, pytrace=False)


def _committed_busy(item: pytest.Item) -> str | None:
    """A committed test's statement still running on sqlfix's connection: stopped, said."""
    conn = item.stash.get(COMMITTED_CONN_KEY, None)
    if conn is None:
        return None
    from sqlfix.pytest_plugin.committed import stop_busy

    return stop_busy(conn)


def _fingerprint(config: pytest.Config, session: DatabaseSession) -> Fingerprint:
    from sqlfix.pytest_plugin.verifier import fingerprint

    config.stash[FINGERPRINT_KEY] = fingerprint(session)
    return config.stash[FINGERPRINT_KEY]


@pytest.hookimpl(wrapper=True)
def _runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """The verifier (--sqlfix-verify): after the test's fixtures are gone, compare."""
    result = yield
    reference = item.config.stash.get(FINGERPRINT_KEY, None)
    session = item.config.stash.get(SESSION_KEY, None)
    if reference is None or session is None or session.dsn is None:
        return result
    stack = session.layers
    if stack is not None and stack.conn is not None:
        _verify_layers(session)  # kept for the next test: compare with its top as loaded
        return result
    from sqlfix.pytest_plugin.verifier import check

    message, item.config.stash[FINGERPRINT_KEY] = check(session, reference, item)
    if message is not None:
        pytest.fail(message, pytrace=False)
    return result


def _layer_reference(session: DatabaseSession, boundary: Boundary) -> None:
    """The verifier with layers: the stack's new top, as loaded, before the test runs."""
    from sqlfix.database.layers import LayeredBoundary
    from sqlfix.database.verify import take

    stack = session.layers
    if stack is None or not isinstance(boundary, LayeredBoundary) or stack.reference is not None:
        return
    stack.reference = take(boundary.conn, session.settings.reset_sequences, inside=True)


def _verify_layers(session: DatabaseSession) -> None:
    """After a test whose layers stay: the stack must be exactly as it was loaded."""
    from sqlfix.database.verify import take

    stack = session.layers
    assert stack is not None and stack.conn is not None
    if stack.reference is None or not stack.is_open(stack.conn):
        return  # a new top (nothing loaded yet to compare with): the next test takes it
    now = take(stack.conn, session.settings.reset_sequences, inside=True)
    changes = stack.reference.differences(now)
    if changes:
        session.end_layers()
        restored = _restore_saying(session)
        pytest.fail("sqlfix --sqlfix-verify: after this test its savepoint layers (the fixtures "
                    "kept for the next test) differ from how they were loaded:\n  "
                    + "\n  ".join(changes) + f"\n{restored}.", pytrace=False)


@pytest.hookimpl(wrapper=True)
def _runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "teardown" and ESCAPE_KEY in item.stash and hasattr(report, "wasxfail"):
        # an expected failure of the test is no excuse for data escaping its boundary
        del report.wasxfail
        report.outcome = "failed"
    if call.excinfo is not None and item.stash.get(USED_KEY, False):
        from sqlfix.pytest_plugin.faults import explain

        boundary = item.stash.get(BOUNDARY_KEY, None)  # closed by the client: not broken
        closed = boundary is not None and boundary.conn.closed and not boundary.conn.broken
        note = explain(call.excinfo.value, settings_of(item.config), closed)
        if note is not None:
            report.sections.append(("sqlfix", note))
    if report.failed and item.stash.get(USED_KEY, False):
        report.sections.append(("sqlfix", _failure_section(item)))
        from sqlfix.pytest_plugin.own_connections import add_hint

        add_hint(item, report, item.config.stash.get(SESSION_KEY, None))
    if call.when == "teardown" and HANDLE_KEY in item.stash:
        handle = item.stash[HANDLE_KEY]
        del item.stash[HANDLE_KEY]
        if item.config.getoption("sqlfix_report"):
            from sqlfix.pytest_plugin.report import ATTR, records

            setattr(report, ATTR, records(handle))  # JSON-able: xdist sends it along
    return report


def _assertrepr_compare(config: pytest.Config, op: str, left: object, right: object
                        ) -> list[str] | None:
    """`assert sqlfix_dsn == ...` explained without the DSN's password: pytest's diff of
    two strings shows the strings themselves, not their repr()."""
    from sqlfix.database.committed import DatabaseUrl

    if not isinstance(left, DatabaseUrl) and not isinstance(right, DatabaseUrl):
        return None
    shown = [side.masked if isinstance(side, DatabaseUrl) else side for side in (left, right)]
    return [f"{shown[0]!r} {op} {shown[1]!r}",
            "(sqlfix_dsn is shown with its password as ***; compare its parts instead, e.g. "
            "psycopg.conninfo.conninfo_to_dict(sqlfix_dsn)[\"dbname\"])"]


def _terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """A death of the embedded server that no test reported (after the run's last sqlfix
    test, or so late in it that its checks saw the server still there)."""
    started = config.stash.get(SESSION_KEY, None)
    died = death_at_end(started) if started is not None else None
    if died is not None:
        terminalreporter.section("sqlfix", yellow=True)
        for line in _death_lines(config, died):
            terminalreporter.write_line(line)


def _death_lines(config: pytest.Config, died: str) -> list[str]:
    """What the end-of-run section says of a death no test reported; the server's log is
    kept (its folder goes with the run)."""
    config.stash[KEEP_LOG_KEY] = True
    kept = _kept_log(config)
    return ["the embedded PostgreSQL died after the run's last check of it (by a test or "
            "fixture that ended it, or a crash): no test reported it.", died,
            *([f"server log: {kept} (copied there when the run ends)"] if kept else [])]


class RunHooks:
    """The hook wrappers that look at each test's result, registered by register_run_hooks.

    Not in the entry module's namespace as `pytest_*` functions: there they would
    run around every test of every run, sqlfix test or not. Everything they look
    at is set by `_sqlfix_session` and the fixtures that depend on it, which register
    them first.
    """

    NAME = RUN_HOOKS
    pytest_runtest_protocol = staticmethod(_runtest_protocol)
    pytest_runtest_call = staticmethod(_runtest_call)
    pytest_runtest_teardown = staticmethod(_runtest_teardown)
    pytest_runtest_makereport = staticmethod(_runtest_makereport)
    pytest_assertrepr_compare = staticmethod(_assertrepr_compare)
    pytest_terminal_summary = staticmethod(_terminal_summary)


def _failure_section(item: pytest.Item) -> str:
    from sqlfix.pytest_plugin.report import failure_section, server_log_note

    config = item.config
    settings = settings_of(config)
    config.stash[KEEP_LOG_KEY] = True
    session = config.stash.get(SESSION_KEY, None)
    server = session.server if session is not None else None
    live = server.log if server is not None else None
    where = server_log_note(_kept_log(config) if live else None, live, settings.database,
                            session.dsn if session is not None else None)
    return failure_section(item, settings.seed, item.stash.get(HANDLE_KEY, None), where)
