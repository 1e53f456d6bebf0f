"""What sqlfix adds to pytest's output: a failing test's replay section, `--sqlfix-report`.

Per test the plugin attaches a JSON-able record of its loads to the setup
report (`report.sqlfix_loads`), so that with pytest-xdist the records reach the
controller like the rest of the report; `LoadReport` gathers them there.
"""

from __future__ import annotations

import os
import shlex
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sqlfix.config_keys import INI_PREFIX, OPTION_KEYS

if TYPE_CHECKING:
    from sqlfix.pytest_plugin.handle import Sqlfix

ATTR = "sqlfix_loads"  # the report attribute the records travel in
_SLOWEST = 5
_TESTS_SHOWN = 5


def replay_command(item: pytest.Item, seed: int) -> str:
    """`pytest 'path::test' --sqlfix-seed=N [options]`, runnable from where pytest was started.

    The path is the test file's own, relative to that folder (a node id is relative to
    the rootdir, which `--rootdir` can put anywhere). With the run's options that change
    what the test's database holds, or which tests pytest finds (see `replay_options`):
    without them the command would replay another run.
    """
    config = item.config
    here = config.invocation_params.dir
    try:
        shown = os.path.relpath(item.path, here)
    except ValueError:  # another drive on Windows
        shown = str(item.path)
    # The names below the file (class, function, parameters), as pytest's node id has them.
    chain = item.listchain()
    files = [i for i, node in enumerate(chain) if isinstance(node, pytest.File)]
    below = chain[files[-1] + 1:] if files else [item]
    target = "::".join([shown, *(node.name for node in below)])
    options = replay_options(config)
    config_file = _config_file_to_name(config, item.path)
    if config_file is not None:
        options.append(f"--config-file={config_file}")
    if type(item).__name__ == "DoctestItem" and item.path.suffix == ".py" \
            and "--doctest-modules" not in options:
        options.append("--doctest-modules")  # else pytest does not look for doctests there
    shown_options = " ".join(shlex.quote(o) for o in options)
    return (f"pytest {shlex.quote(target)} --sqlfix-seed={seed}"
            + (f" {shown_options}" if shown_options else ""))


def _config_file_to_name(config: pytest.Config, path: Path) -> str | None:
    """The run's configuration file, relative to where pytest was started, when pytest
    given only the test's path would find another one: it looks for its configuration
    from the test's folder up, and a subfolder's own pytest.ini would set other values
    (`now`, the schema) than the run had. None when it would find the same (or `-c` was
    given: replay_options names it)."""
    from sqlfix.config import find_project

    used = config.inipath
    if used is None or any(o.startswith("--config-file=") for o in _given(
            list(config.invocation_params.args))):
        return None
    project = find_project(path.parent)
    found = project.inifile or (project.pyproject if project.pyproject.is_file() else None)
    if found is not None and found.resolve() == used.resolve():
        return None
    try:
        return os.path.relpath(used, config.invocation_params.dir)
    except ValueError:  # another drive on Windows
        return str(used)


def replay_options(config: pytest.Config) -> list[str]:
    """The command line's options that decide the test's data and boundary, as
    `--option=value`: sqlfix's own (the seed aside), `-o sqlfix_*=...` overrides, the
    configuration file (`-c`), `--rootdir` and `--doctest-modules`. A DSN's password is
    left out (libpq finds it in PGPASSWORD or ~/.pgpass): the command is printed in
    reports and CI logs.
    """
    found: list[str] = []
    dsn = config.getoption("sqlfix_dsn", None)
    if dsn:
        found.append(f"--sqlfix-dsn={_without_password(dsn)}")
    fixtures = config.getoption("sqlfix_fixtures", None)
    if fixtures is not None:
        found.append(f"--sqlfix-fixtures={fixtures}")
    for key, flag in OPTION_KEYS.items():
        value = config.getoption(f"sqlfix_{key}", None)
        if value is True:
            found.append(flag)
        elif value is not None:
            found.append(f"{flag}={value}")
    found += _given(list(config.invocation_params.args))
    if config.getoption("rootdir", None):  # where the configuration (and fixtures) are read
        found.append(f"--rootdir={os.path.relpath(config.rootpath, config.invocation_params.dir)}")
    if config.getoption("doctestmodules", False):
        found.append("--doctest-modules")
    return found


def _given(args: list[str]) -> list[str]:
    """`-o sqlfix_*=...` and `-c FILE` among `args`, in any of argparse's spellings."""
    found: list[str] = []
    pairs = iter(enumerate(args))
    for i, arg in pairs:
        for short, long, keep in (("-o", "--override-ini", _ours), ("-c", "--config-file", None)):
            value = None
            if arg in (short, long) and i + 1 < len(args):
                value = args[i + 1]
                next(pairs, None)
            elif arg.startswith(long + "="):
                value = arg[len(long) + 1:]
            elif arg.startswith(short) and len(arg) > 2 and not arg.startswith("--"):
                value = arg[2:]
            if value is not None:
                if keep is None or keep(value):
                    name, _, given = value.partition("=")
                    if name.strip() == f"{INI_PREFIX}dsn":  # no password in a printed command
                        value = f"{name}={_without_password(given)}"
                    found.append(f"{long}={value}")
                break
    return found


def _ours(override: str) -> bool:
    return override.startswith(INI_PREFIX)


def _database_of(dsn: str) -> str | None:
    """`myapp_test_gw0 on db.internal:5432` from a DSN, never its password; None if unread."""
    from psycopg.conninfo import conninfo_to_dict

    from sqlfix.database.schema import server_address

    try:
        params = conninfo_to_dict(dsn)
        host, port = server_address(dsn)
    except Exception:  # noqa: BLE001  # the run already said what is wrong with it
        return None
    name = params.get("dbname") or os.environ.get("PGDATABASE") or params.get("user")
    return f"{name} on {host}:{port}" if name else None


def _without_password(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001  # the run already said what is wrong with it
        return dsn
    if "password" not in params:
        return dsn
    params.pop("password")
    return make_conninfo(**params)  # type: ignore[arg-type]


def failure_section(item: pytest.Item, seed: int, handle: Sqlfix | None, where: str) -> str:
    """The `sqlfix` section of a failing test's report: what to replay it with."""
    lines = [f"seed={seed}; replay with:", f"  {replay_command(item, seed)}"]
    if handle is not None and handle.loaded:
        loaded = ", ".join(f"{name} (seed {s})" for name, s in handle.fixture_seeds)
        lines.append(f"fixtures loaded: {loaded}")
    elif handle is not None:
        lines.append("fixtures loaded: none")
    lines.append(where)
    return "\n".join(lines)


def records(handle: Sqlfix) -> list[list[Any]]:
    """The handle's loads as JSON-able lists: [names, rows or None, seconds, render seconds];
    seconds None for files the test used from savepoint layers, not loaded."""
    render = handle.render_seconds
    loaded = [
        [list(r.names), list(r.rows) if r.rows is not None else None, r.seconds,
         [render.get(n, 0.0) for n in r.names]]
        for r in handle.loads
    ]
    kept = [[list(handle.kept), None, None, [render.get(n, 0.0) for n in handle.kept]]]
    return loaded + (kept if handle.kept else [])


@dataclass
class _File:
    tests: list[str] = field(default_factory=list)
    render: float = 0.0
    loads: list[float] = field(default_factory=list)  # seconds of each load it was part of
    rows: set[int] = field(default_factory=set)


# eq=False keeps it hashable: pytest before 9.1 keeps plugin objects in a set.
@dataclass(eq=False)
class LoadReport:
    """`--sqlfix-report`: the loads of the run, per fixture file, printed at the end."""

    files: dict[str, _File] = field(default_factory=dict)
    slowest: list[tuple[float, str, Sequence[str], int | None]] = field(default_factory=list)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for names, rows, seconds, render in getattr(report, ATTR, None) or ():
            self.add(report.nodeid, names, rows, seconds, render)

    def add(self, test: str, names: Sequence[str], rows: Sequence[int] | None,
            seconds: float | None, render: Sequence[float]) -> None:
        for i, name in enumerate(names):
            entry = self.files.setdefault(name, _File())
            if test not in entry.tests:
                entry.tests.append(test)
            entry.render = max(entry.render, render[i])  # each xdist worker renders once
            if seconds is None:
                continue  # kept by savepoint layers: used by the test, not loaded
            entry.loads.append(seconds)
            if rows is not None:
                entry.rows.add(rows[i])
        if seconds is not None:
            self.slowest.append((seconds, test, names, sum(rows) if rows is not None else None))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        terminalreporter.section("sqlfix report")
        if not self.files:
            write("no test loaded sqlfix fixtures")
            return
        verbose = terminalreporter.config.getoption("verbose") > 0
        for line in self.lines(verbose):
            write(line)

    def lines(self, verbose: bool) -> list[str]:
        width = max(len("fixture"), *(len(n) for n in self.files))
        out = [f"{'fixture':<{width}}  tests  render ms  loads  load ms  rows/load"]
        for name in sorted(self.files):
            f = self.files[name]
            mean = f"{statistics.mean(f.loads) * 1e3:>7.1f}" if f.loads else f"{'-':>7}"
            out.append(f"{name:<{width}}  {len(f.tests):>5}  {f.render * 1e3:>9.1f}  "
                       f"{len(f.loads):>5}  {mean}  {_rows(f.rows):>9}")
        out.append("")
        out.append("tests per fixture:")
        for name in sorted(self.files):
            out.append(f"  {name}: {_tests(self.files[name].tests, verbose)}")
        out.append("")
        out.append(f"slowest loads (of {len(self.slowest)}):")
        for seconds, test, names, rows in sorted(self.slowest, key=lambda s: -s[0])[:_SLOWEST]:
            written = f"{rows} rows" if rows is not None else "rows unknown"
            out.append(f"  {seconds * 1e3:7.1f} ms  {test}  {', '.join(names)} ({written})")
        out.append("load ms: mean time of the loads (one round trip each) a file was part of")
        out.append("tests: the tests that used it, loaded or kept from the test before by "
                   "savepoint layers (loads counts only the loads)")
        return out


def _rows(counts: Iterable[int]) -> str:
    values = sorted(set(counts))
    if not values:
        return "?"
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def _tests(tests: Sequence[str], verbose: bool) -> str:
    if verbose or len(tests) <= _TESTS_SHOWN:
        return ", ".join(tests)
    more = len(tests) - _TESTS_SHOWN
    return ", ".join(tests[:_TESTS_SHOWN]) + f" and {more} more (-v lists all)"


def server_log_note(kept: Path | None, live: Path | None, database: str,
                    dsn: str | None = None) -> str:
    """Where the embedded server's log is, for a failing test's report; with a DSN (no
    log of sqlfix's), the database the test ran in (`dsn`: a pytest-xdist worker's clone)."""
    if live is None:
        named = _database_of(dsn) if dsn else None
        return f"database: {named} ({database})" if named else f"database: {database}"
    if kept is not None:
        return f"server log: {kept} (copied there when the run ends)"
    return f"server log: {live} (removed when the run ends)"

