"""`python -m sqlfix lint | render | check`: the DBA's tools.

Exit codes: 0 clean, 1 findings (or a fixture that did not load), 2 usage or
internal error. Settings come from the options, then SQLFIX_* variables, then the `sqlfix_*`
options of pytest's configuration file, then `[tool.sqlfix]` of the pyproject.toml
in pytest's rootdir: found from the working directory as pytest finds them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from sqlfix import __version__, docs_url
from sqlfix.cli import EXIT_ERROR, EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, importer, report
from sqlfix.cli import check as dbcheck
from sqlfix.cli.lint import lint, lint_options
from sqlfix.cli.serve import serve
from sqlfix.cli.targets import Target, UsageError, Workspace
from sqlfix.compiler.discovery import normalize_name
from sqlfix.compiler.library import display_path
from sqlfix.config import (
    Settings,
    find_project,
    ini_of,
    load_settings,
    parse_seed,
    refuse_unread_tables,
)
from sqlfix.database.session import DatabaseSession, make_library
from sqlfix.errors import FixtureError, SqlfixError

Handler = Callable[[argparse.Namespace, TextIO], int]

DESCRIPTION = """\
Check, render and load sqlfix fixtures outside pytest: the DBA's tools.
Run `python -m sqlfix COMMAND --help` for a command's options and examples.
"""
EPILOG = """\
examples:
  python -m sqlfix lint                         # every fixture in the fixtures directory
  python -m sqlfix lint --format github         # annotations in a GitHub Actions log
  python -m sqlfix render orders.sql | psql -d myapp_test -1 -v ON_ERROR_STOP=1
  python -m sqlfix check                        # on the embedded PostgreSQL

exit codes: 0 clean, 1 findings or a fixture that did not load, 2 usage or internal error,
130 interrupted (Ctrl-C)
rules: {rules}
commands: {commands}
""".format(rules=docs_url("lint"), commands=docs_url("cli"))
LINT_EPILOG = """\
Prints `path:line:col: CODE message` per finding, then a summary. Any finding
(a warning too) gives exit code 1; silence one on its line with
`-- sqlfix: noqa: SQLF501`, or every rule there with `-- sqlfix: noqa`.

examples:
  python -m sqlfix lint
  python -m sqlfix lint fixtures_sql/orders.sql --format json
  python -m sqlfix lint --ignore SQLF501 --tests tests
  python -m sqlfix lint --select SQLF1,SQLF3     # DDL/statements and requires only
"""
RENDER_EPILOG = """\
Each fixture is preceded by a `-- sqlfix: NAME (seed N)` line. Errors go to stderr.

examples:
  python -m sqlfix render orders.sql
  python -m sqlfix render orders.sql --seed 7 | psql -d myapp_test -1 -v ON_ERROR_STOP=1
"""
CHECK_EPILOG = """\
Lints first (errors stop before the database), then applies the schema and loads
each fixture with its requirements in a transaction that is rolled back: OK with
rows inserted per table and load time, or the server's error at file:line.
Nothing is ever committed.

examples:
  python -m sqlfix check                                   # embedded PostgreSQL
  python -m sqlfix check fixtures_sql/orders.sql
  python -m sqlfix check --dsn postgresql://localhost/myapp_test
"""


def _seed(text: str) -> str:
    try:
        parse_seed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _folder(text: str) -> Path:
    if not text.strip():  # Path("") is the working directory, every .sql file in it
        raise argparse.ArgumentTypeError("an empty path: give the fixtures folder")
    return Path(text)


def _codes(text: str) -> list[str]:
    return [code.strip() for code in text.split(",") if code.strip()]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fixtures",
        metavar="DIR",
        type=_folder,
        help="fixtures directory (default: [tool.sqlfix] fixtures_dir or fixtures_sql)",
    )
    parser.add_argument(
        "--seed",
        metavar="N|random",
        type=_seed,
        help="seed for template values (default: SQLFIX_SEED, [tool.sqlfix] seed, else 0)",
    )


def _paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        metavar="PATH",
        nargs="*",
        type=Path,
        help="fixture files or directories (default: the fixtures directory); "
        "the schema files are skipped",
    )


def _lint_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _subparser(
        sub, "lint", "check fixtures without a database (render, guard, requires)", LINT_EPILOG
    )
    _paths(parser)
    parser.add_argument(
        "--format",
        choices=sorted(report.FORMATS),
        default="text",
        help="output format (default: text)",
    )
    for option, what in (("--select", "only these rules"), ("--ignore", "not these rules")):
        parser.add_argument(
            option,
            metavar="CODES",
            type=_codes,
            action="extend",
            help=f"{what}: comma-separated codes or prefixes such as SQLF101,SQLF5 "
            "(default: [tool.sqlfix.lint])",
        )
    parser.add_argument(
        "--tests",
        metavar="DIR",
        type=Path,
        help="test files to read uses() from, for SQLF601/SQLF602 "
        "(default: [tool.sqlfix.lint] tests)",
    )
    _common(parser)
    parser.set_defaults(handler=run_lint)


def _render_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _subparser(
        sub, "render", "print a fixture and its requirements as SQL, in load order", RENDER_EPILOG
    )
    parser.add_argument("name", metavar="NAME", help="fixture name (orders.sql) or its path")
    _common(parser)
    parser.set_defaults(handler=run_render)


def _check_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _subparser(
        sub, "check", "lint, then load each fixture into PostgreSQL and roll back", CHECK_EPILOG
    )
    _paths(parser)
    parser.add_argument(
        "--dsn",
        metavar="DSN",
        help="PostgreSQL to load into (default: SQLFIX_DSN, [tool.sqlfix] dsn, "
        "else an embedded throwaway server)",
    )
    _common(parser)
    parser.set_defaults(handler=run_check)


IMPORT_EPILOG = """\
Reads a data-only dump (pg_dump --data-only, COPY or --inserts form) and writes one
fixture per table into the fixtures directory (or --out), with `-- requires:` from the
foreign keys of the project's schema, which it applies on the embedded PostgreSQL (or
--dsn) first, with setup_command. SET, set_config(), setval(), \\restrict and the dump's
comments are dropped, and said so.

examples:
  pg_dump --data-only --table=users --table=orders myapp_dev > dev_data.sql
  python -m sqlfix import dev_data.sql
  python -m sqlfix import dev_data.sql --tables users,orders --fake users.email=email \\
      --fake users.full_name=name --out fixtures_sql/imported
"""


def _import_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _subparser(
        sub, "import", "turn a data-only pg_dump into fixture files, one per table", IMPORT_EPILOG)
    parser.add_argument("dump", metavar="DUMP", type=Path, help="the data-only dump (.sql)")
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help="where to write the fixtures (default: the fixtures directory)")
    parser.add_argument("--tables", metavar="NAMES", type=_codes, action="extend",
                        help="only these tables (comma-separated, `users` or `sales.invoice`)")
    parser.add_argument("--fake", metavar="TABLE.COLUMN=METHOD", action="append", default=[],
                        help="replace a column by {{ fake.METHOD() }}, e.g. users.email=email "
                        "(repeatable)")
    parser.add_argument("--force", action="store_true", help="overwrite existing fixture files")
    parser.add_argument("--dsn", metavar="DSN",
                        help="database for the schema (default: as check; embedded server)")
    _common(parser)
    parser.set_defaults(handler=run_import)


SERVER_EPILOG = """\
Starts the embedded PostgreSQL exactly as a test session would (same binaries,
server_* options, schema files and setup_command), prints its connection string
and waits. Ctrl-C stops it and removes its data. Fixtures are not loaded: tests
load them in transactions that are rolled back.

examples:
  python -m sqlfix server     # then in another terminal: psql '<the dsn it printed>'
"""


def _server_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _subparser(
        sub, "server", "start the embedded PostgreSQL by hand and print its DSN", SERVER_EPILOG
    )
    parser.set_defaults(handler=run_server, seed=None, fixtures=None)


def run_server(args: argparse.Namespace, out: TextIO) -> int:
    return serve(settings_for(args), out)


# Each command's section of docs/cli.md (MkDocs' anchor of its heading)
COMMAND_ANCHORS = {"lint": "lint-path", "render": "render-name", "check": "check-path",
                   "import": "import-dump", "server": "server"}


def _subparser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, title: str, epilog: str
) -> argparse.ArgumentParser:
    rules = f"rules: {docs_url('lint')}\n" if name in ("lint", "check") else ""
    return sub.add_parser(
        name,
        help=title,
        description=f"{title[0].upper()}{title[1:]}.",
        epilog=f"{epilog}\n{rules}docs: {docs_url('cli', COMMAND_ANCHORS[name])}\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser(prog: str = "python -m sqlfix") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sqlfix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_lint_parser, _render_parser, _check_parser, _import_parser, _server_parser):
        add(sub)
    return parser


def settings_for(args: argparse.Namespace) -> Settings:
    """Settings of the project around the working directory, found as pytest finds it.

    The root is pytest's rootdir (the first folder up with a pytest configuration
    file); options beat env, then the inifile's `sqlfix_*` options, then
    `[tool.sqlfix]` of the root's pyproject.toml: the same as the plugin sees.
    """
    project = find_project(Path.cwd())
    refuse_unread_tables(Path.cwd(), project.root, project.inifile)
    fixtures = args.fixtures
    cli = {
        "dsn": getattr(args, "dsn", None),
        "seed": args.seed,
        "fixtures_dir": str(fixtures.resolve()) if fixtures is not None else None,
    }
    settings = load_settings(project.root, cli, os.environ, project.pyproject,
                             ini_of(project), str(project.inifile))
    # load_settings names command-line values after the pytest options (--sqlfix-dsn)
    sources = {k: v.replace("--sqlfix-", "--") for k, v in settings.sources.items()}
    return dataclasses.replace(settings, sources=sources)


def run_lint(args: argparse.Namespace, out: TextIO) -> int:
    settings = settings_for(args)
    options = lint_options(settings, args.select, args.ignore, args.tests)
    workspace = Workspace(make_library(settings))
    targets = workspace.targets(args.paths)
    result = lint(workspace, targets, options)
    out.write(report.FORMATS[args.format](result.findings, len(targets)))
    return EXIT_FINDINGS if result.findings else EXIT_OK


def _render_target(workspace: Workspace, name: str) -> Target:
    """A fixture name, else the path of a .sql file; FixtureNotFound says what exists."""
    if not name.strip():  # Path("") is the working directory
        raise UsageError("the fixture name is empty: render takes a fixture name "
                         "(e.g. 'users.sql') or the path of a .sql file")
    if not workspace.library.exists(name) and Path(name).is_symlink() \
            and not Path(name).exists():
        raise UsageError(f"{name}: no such file (a symbolic link to a missing file)")
    if not workspace.library.exists(name) and Path(name).exists():
        if not (Path(name).is_file() and name.endswith(".sql")):  # never another file's text
            what = "a directory" if Path(name).is_dir() else "not a .sql file"
            raise UsageError(f"{name} is {what}: render takes a fixture name "
                             "(e.g. 'users.sql') or the path of a .sql file")
        targets = workspace.targets([Path(name)])
        if not targets:
            raise UsageError(f"{name} is a schema file, not a fixture")
        return targets[0]
    name = normalize_name(name)
    return Target(name, workspace.library.path(name), name)


def run_render(args: argparse.Namespace, out: TextIO) -> int:
    settings = settings_for(args)
    workspace = Workspace(make_library(settings))
    try:
        plan = workspace.plan(_render_target(workspace, args.name))
    except FixtureError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_FINDINGS
    for fixture in plan:
        for warning in fixture.warnings:
            sys.stderr.write(f"{warning.format()}\n")
        out.write(f"-- sqlfix: {fixture.name} (seed {settings.seed})\n")
        sql = fixture.rendered.sql
        out.write(sql if sql.endswith("\n") else sql + "\n")
    return EXIT_OK


def run_check(args: argparse.Namespace, out: TextIO) -> int:
    settings = settings_for(args)
    # The test-file rules (SQLF601/602) are lint's: check is about the fixtures.
    lint_config = {k: v for k, v in settings.lint.items() if k != "tests"}
    # Nor SQLF407: the server it loads into judges the version (a DSN's may be another
    # major than server_version), fixture by fixture, in the same words.
    options = dataclasses.replace(
        lint_options(dataclasses.replace(settings, lint=lint_config)), server=None)
    workspace = Workspace(make_library(settings))
    targets = workspace.targets(args.paths)
    result = lint(workspace, targets, options)
    if result.findings:
        out.write("\n".join(f.format() for f in result.findings) + "\n")
    if result.errors:
        out.write(
            f"{report.summary(result.findings, len(targets))} Fix the errors first: "
            "nothing was sent to the database.\n"
        )
        return EXIT_FINDINGS
    if not targets:
        out.write("No fixtures to check.\n")
        return EXIT_OK
    return _load_all(settings, workspace, targets, out)


def _load_all(settings: Settings, workspace: Workspace, targets: list[Target], out: TextIO) -> int:
    session = DatabaseSession(settings)
    fixtures = report.plural(len(targets), "fixture")
    out.write(f"Loading {fixtures} (seed {settings.seed}) into {settings.database}\n")
    out.flush()
    session.start()
    try:
        # Sequences are put back whatever reset_sequences says: check promises to leave
        # the database as it was.
        outcomes = dbcheck.run(
            lambda: session.boundary(reset_sequences=True), workspace, targets, out,
            died=lambda: _server_death(session))
    finally:
        session.stop()
    failed = len(targets) - sum(o.ok for o in outcomes)  # those not checked included
    verdict = f"{len(targets) - failed} OK, {failed} failed" if failed else f"{fixtures} OK"
    verdict = f"All {verdict}" if not failed and len(outcomes) > 1 else verdict
    out.write(f"{verdict}; every load was rolled back, nothing was committed.\n")
    return EXIT_FINDINGS if failed else EXIT_OK


def run_import(args: argparse.Namespace, out: TextIO) -> int:
    settings = settings_for(args)
    text = importer.read_dump(args.dump)
    parsed = importer.parse_dump(text, display_path(args.dump))
    if not parsed.tables:
        raise UsageError(f"{args.dump} holds no table data (COPY ... FROM stdin or INSERT); "
                         "make it with pg_dump --data-only")
    if args.tables == []:  # given, but only commas and blanks
        raise UsageError("--tables names no table: give table names separated by commas "
                         "(`users,sales.invoice`), or leave the option out to import every table")
    options = importer.Options(
        out=args.out or settings.fixtures_dir,
        tables=frozenset(args.tables) if args.tables is not None else None,
        fakes=importer.parse_fakes(args.fake), force=args.force,
        faker_locale=settings.faker_locale)
    session = DatabaseSession(settings)
    if not settings.schema and not settings.setup_command:
        out.write("note: no schema or setup_command configured: no requires derived\n")
        importer.write_fixtures(parsed, options, None, args.dump.name, out)
        return EXIT_OK
    session.start()
    try:
        importer.write_fixtures(parsed, options, session.connection(), args.dump.name, out)
    finally:
        session.stop()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """The `sqlfix` command; returns its exit code."""
    prog = "sqlfix" if Path(sys.argv[0]).name == "sqlfix" else "python -m sqlfix"
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    handler: Handler = args.handler
    out = sys.stdout
    if out is None:  # started with stdout closed (`>&-`): Python gives None
        sys.stderr.write(f"sqlfix {args.command}: standard output is closed; give the "
                         "command an output (a file, a pipe, /dev/null)\n")
        return EXIT_ERROR
    try:
        return handler(args, out)
    except SqlfixError as exc:
        sys.stderr.write(f"sqlfix {args.command}: {exc}\n")
    except KeyboardInterrupt:  # Ctrl-C: the shell's convention, 128 + SIGINT, no traceback
        sys.stderr.write(f"sqlfix {args.command}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `render ... | head` stopped reading: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd error at exit
        return EXIT_FINDINGS
    except Exception:  # noqa: BLE001 - a bug: say so, with the traceback, exit 2
        sys.stderr.write(traceback.format_exc())
        sys.stderr.write(f"sqlfix {args.command}: internal error (a bug in sqlfix)\n")
    return EXIT_ERROR


def _server_death(session: DatabaseSession) -> str | None:
    """The embedded server's death in words, or None: asked when a load lost its connection.
    A killed postmaster may still be exiting when its backend's socket closes: give it a
    moment (on the error path only)."""
    server = session.server
    if server is None:
        return None
    server.exits_within(1.0)
    return server.exited()
