"""Settings and where each came from: command line, environment, pytest ini, pyproject.toml.

Pure: the caller hands in the command-line values, the environment and the
project root; nothing here connects or starts anything.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlfix.compiler.context import DEFAULT_NOW
from sqlfix.compiler.seeds import random_seed
from sqlfix.config_keys import (
    INI_KEYS,
    INI_LINE_KEYS,
    INI_PREFIX,
    KNOWN_KEYS,
    OPTION_KEYS,
    TIMEOUT_KEYS,
)
from sqlfix.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

# Defaults in milliseconds (0 = no limit): a lock that never comes or a statement that
# never ends becomes an error naming the test or the fixture, never a hang.
TIMEOUT_DEFAULTS = {
    "lock_timeout": 10_000,
    "statement_timeout": 300_000,
    "load_lock_timeout": 5_000,
    "load_statement_timeout": 60_000,
}
LINT_KEYS = frozenset({"select", "ignore", "tests"})


@dataclass(frozen=True)
class Settings:
    root: Path
    dsn: str | None = None
    seed: int = 0
    fixtures_dir: Path = Path("fixtures_sql")
    schema: tuple[Path, ...] = ()
    allow_any_database: bool = False
    now: dt.datetime = DEFAULT_NOW
    faker_locale: str = "en_US"
    lint: Mapping[str, Any] = field(default_factory=dict)
    setup_command: str | tuple[str, ...] | None = None
    reset_sequences: bool = True
    reset_session: bool = True  # SET, SET ROLE, PREPARE, temp tables, locks undone per test
    lock_timeout: int = TIMEOUT_DEFAULTS["lock_timeout"]  # ms, for each test; 0 = none
    statement_timeout: int = TIMEOUT_DEFAULTS["statement_timeout"]
    load_lock_timeout: int = TIMEOUT_DEFAULTS["load_lock_timeout"]  # ms, for fixture loads
    load_statement_timeout: int = TIMEOUT_DEFAULTS["load_statement_timeout"]
    verify: bool = False  # the isolation verifier: fingerprints compared after each test
    layers: bool = False  # savepoint layers: fixtures kept for the next test that shares them
    layers_max_tests: int = 500  # tests on one layer transaction at most, so vacuum can run
    # rows loaded between two VACUUMs of the tables that grew (0: never); see database/vacuum.py
    vacuum_threshold: int = 2000
    server_version: str | None = None  # a major such as "16"
    server_locale: str = "C"
    server_settings: Mapping[str, str] = field(default_factory=dict)  # postgresql.conf
    server_port: int | None = None  # TCP on 127.0.0.1 as well as the unix socket
    sources: Mapping[str, str] = field(default_factory=dict)  # key -> where it came from
    names: Mapping[str, str] = field(default_factory=dict)  # key -> how its source spells it

    def source(self, key: str) -> str:
        return self.sources.get(key, "default")

    def option(self, key: str) -> str:
        """How the key's source spells it: `sqlfix_server_version` in a pytest ini file,
        `[tool.sqlfix] server_version` in pyproject.toml; the key itself by default."""
        return self.names.get(key, key)

    @property
    def database(self) -> str:
        """Which database, for headers and reports."""
        return f"DSN from {self.source('dsn')}" if self.dsn else "embedded PostgreSQL"


def parse_seed(text: str) -> int | None:
    """An int seed, or None for `random`; a ValueError quotes the bad value."""
    if text.strip().lower() == "random":
        return None
    digits = text.strip().removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):  # int() also takes '٣', '1_000', '+5'
        raise ValueError(f"seed must be a non-negative integer or 'random', not {text!r}")
    value = int(text)
    if value < 0:
        raise ValueError(f"seed must be a non-negative integer or 'random', not {text!r}")
    return value


# lock_timeout and statement_timeout are int milliseconds in PostgreSQL (INT_MAX).
MAX_TIMEOUT_MS = 2_147_483_647
_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def shown(value: object) -> str:
    """`value` as the TOML or ini text that gave it, for an error: true/false, a date or
    time as written (2024-01-01, not datetime.date(2024, 1, 1)), lists and tables
    likewise; a string quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {shown(v)}" for k, v in value.items()) + "}"
    return repr(value)


def parse_duration(value: object) -> int:
    """Milliseconds from an int (ms) or a PostgreSQL-style string: '500ms', '10s', '2min', '0'.

    Raises ValueError quoting the bad value, also for a duration PostgreSQL's
    lock_timeout/statement_timeout cannot hold (over MAX_TIMEOUT_MS, about 24.8 days);
    0 means no limit.
    """
    millis = _duration_ms(value)
    if millis > MAX_TIMEOUT_MS:
        raise ValueError(f"{shown(value)} is longer than PostgreSQL's timeouts allow: at most "
                         f"{MAX_TIMEOUT_MS} ms (about 24 days); 0 means no limit")
    return millis


# What PostgreSQL's parse_int reads for a time setting: a decimal number (a fraction
# and an exponent allowed), then optional spaces and a unit
_DURATION = re.compile(r"(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*([a-z]*)")


def _duration_ms(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(_not_a_duration(value))
    if isinstance(value, int | float):  # TOML numbers are milliseconds
        number, unit = float(value), "ms"
    else:
        text = value.strip().lower() if isinstance(value, str) else ""
        found = _DURATION.fullmatch(text)
        if found is None:
            raise ValueError(_not_a_duration(value))
        number, unit = float(found[1] + (found[2] or "")), found[3] or "ms"
    if unit not in _UNITS_MS or not math.isfinite(number) or number < 0:
        raise ValueError(_not_a_duration(value))
    millis = number * _UNITS_MS[unit]
    if millis > MAX_TIMEOUT_MS:
        return MAX_TIMEOUT_MS + 1  # parse_duration says it is too long
    # PostgreSQL rounds to the nearest ms (rint: halves to even, as round() does); a
    # non-zero value that rounds to 0 would mean "no limit", so it is 1 ms instead
    return max(1, round(millis)) if millis else 0


def _not_a_duration(value: object) -> str:
    return (f"{shown(value)} is not a duration: use milliseconds (5000) or a number with a "
            "unit (us, ms, s, min, h, d), e.g. '10s' or '0.5s'; 0 means no limit")


def parse_bool(value: object) -> bool:
    """True/False from a bool, or from the text true/false, yes/no, on/off, 1/0 (any case:
    an ini file's or the command line's); ValueError for anything else, a number too."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):  # a TOML 1 is a number: TOML has true and false
        raise ValueError(f"{shown(value)} is not a boolean: use true or false")
    text = value.strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{shown(value)} is not a boolean: use true or false")


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start`."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def config_text(path: Path) -> str:
    """A configuration file's text; ConfigError if it is not UTF-8 (TOML and pytest read
    only that), naming the first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} is not UTF-8 text (byte {data[exc.start]:#04x});"
                          " save the file as UTF-8") from None


def _toml(path: Path, text: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}{_bom_hint(text)}") from exc


def _bom_hint(text: str) -> str:
    """What to do when a configuration file that did not parse starts with a BOM."""
    return " (it begins with a byte order mark: save it without one)" if text.startswith(
        "\ufeff") else ""


def read_table(pyproject: Path | None) -> dict[str, Any]:
    """`[tool.sqlfix]` of a pyproject.toml, checked for unknown keys."""
    if pyproject is None or not pyproject.is_file():
        return {}
    data = _toml(pyproject, config_text(pyproject))
    tool = data.get("tool", {})
    table = tool.get("sqlfix", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):  # `[tool]` then `sqlfix = "..."`
        raise ConfigError(f"{pyproject}: tool.sqlfix = {shown(table)} must be a table: "
                          "write the keys under a [tool.sqlfix] header")
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(
            f"{pyproject}: unknown key(s) in [tool.sqlfix]: {', '.join(unknown)}; "
            f"known keys are {', '.join(sorted(KNOWN_KEYS))}"
        )
    return dict(table)


_BOOL_KEYS = frozenset({"allow_any_database", "reset_sequences", "reset_session"})
# (verify and layers are parsed by _boundary_keys, which takes the words themselves)
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def ini_values(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`sqlfix_*` ini values as `[tool.sqlfix]` would hold them.

    `raw` maps keys without the prefix to what pytest's ini parser gave: strings, lines
    (lists of strings), or from a native TOML file (pytest.toml, `[tool.pytest]`) any TOML
    value, which is passed on as it is and checked as a `[tool.sqlfix]` value would be.
    Unset and empty values are left out. Raises ConfigError naming `where` and the option.
    """
    table: dict[str, Any] = {}
    for key, value in raw.items():
        # Unset: "" for a text option, [] for a line list. A TOML `[]` or `[9]` for a
        # one-value key is passed on as it is: `[tool.sqlfix]` refuses it, and so do we.
        if value is None or value == "" or (value == [] and key in INI_LINE_KEYS):
            continue
        if key == "schema":
            # One path per line, as pytest's `linelist` gives the plugin its lines: the CLI
            # reads the same text the same way (a path may hold spaces).
            lines = value.splitlines() if isinstance(value, str) else value
            # Anything else of TOML's (5, true, a table) goes on to the type check as it is
            table[key] = [_unquoted(line) if isinstance(line, str) else line for line in lines
                          if not isinstance(line, str) or line.strip()
                          ] if isinstance(lines, list) else lines
        elif key == "server_settings":
            table[key] = (_setting_lines(value, where) if isinstance(value, str | list)
                          else value)
        elif key in _BOOL_KEYS and isinstance(value, str):
            word = _unquoted(value).lower()
            if word not in _TRUE | _FALSE:
                raise ConfigError(f"{where}: {INI_PREFIX}{key} = {value!r} must be true or false")
            table[key] = word in _TRUE
        else:
            table[key] = _unquoted(value) if isinstance(value, str) else value
    return table


def _unquoted(text: str) -> str:
    """An ini value without the quotes a TOML habit put around it (`sqlfix_seed = "5"` in
    pytest.ini, where quotes are text): the same value as in `[tool.sqlfix]`."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


# postgresql.conf's line: a name, `=` (optional there), a value, an optional # comment
# (the name ends at a space or `=`: never inside it, as a backtracking match once split
# `timezone` alone into the name `timezon` and the value `e`)
_CONF_LINE = re.compile(r"(?P<name>[^\s=#]+)(?:\s*=\s*|\s+)(?P<text>.*)")


def _setting_lines(lines: str | list[Any], where: str) -> dict[str, str]:
    """`sqlfix_server_settings`: `name = value` lines, as the `[tool.sqlfix.server_settings]`
    table; read as postgresql.conf reads its lines (the `=` optional, the value quoted
    when it holds spaces, '' for an empty one). A name set twice, in any case, is an error:
    PostgreSQL's names are case-insensitive, and the last would win unseen."""
    option = f"{where}: {INI_PREFIX}server_settings"
    if isinstance(lines, str):
        lines = lines.splitlines()
    settings: dict[str, str] = {}
    for line in lines:
        if not isinstance(line, str):
            raise ConfigError(f"{option}: {line!r} is not a `name = value` line")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        stripped = line.strip()
        if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
            stripped = stripped[1:-1].strip()  # a whole line in quotes: a TOML habit
        match = _CONF_LINE.fullmatch(stripped)
        value, why = _conf_value(match["text"]) if match else (
            None, " (a name without a value)" if re.fullmatch(r"[^\s=#]+", stripped) else "")
        if match is None or value is None:
            raise ConfigError(
                f"{option}: {line.strip()!r} is not a `name = value` line{why}; write one "
                "setting a line, e.g. `timezone = Europe/Paris  # a comment` ('' for an "
                "empty value, 'it''s' for a quote in a quoted one)")
        name = match["name"]
        twice = [n for n in settings if n.lower() == name.lower()]
        if twice:
            same = f" (as {twice[0]}; the names are case-insensitive)" if twice[0] != name else ""
            raise ConfigError(f"{option}: {name} is set twice{same}")
        settings[name] = value
    return settings


def _conf_value(text: str) -> tuple[str | None, str]:
    """The value of a `name = value` line as postgresql.conf reads it: bare (one word) up
    to a `#` comment, or in single quotes ('' or \\' stands for one, and the backslash
    escapes of PostgreSQL's GUC_scanstr: \\b \\f \\n \\r \\t, up to three octal digits,
    else the character itself) with only a comment after them. (None, why) when it is
    not one: an unclosed quote, words after the closing one or after a bare word, nothing.
    A bare value in double quotes loses them too, as sqlfix always read it."""
    if not text.startswith("'"):
        raw = text.split("#", 1)[0].strip()
        bare = _unquoted(raw)  # not a ' here: a "..." one
        if bare and bare == raw and len(bare.split()) > 1 and ("=" in bare or ";" in bare):
            # `timezone = UTC; work_mem = 8MB` (one -o line) would set timezone to all of
            # it. postgresql.conf wants any value with spaces quoted; sqlfix always took
            # `"$user", public` bare, and still does.
            return None, (f" (a value with spaces is quoted, as in postgresql.conf: "
                          f"'{bare}'; one setting a line)")
        return bare or None, ""
    chars, i = [], 1
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            escaped, i = _conf_escape(text, i + 1)
            chars.append(escaped)
        elif text[i] != "'":
            chars.append(text[i])
            i += 1
        elif text[i + 1:i + 2] == "'":
            chars.append("'")
            i += 2
        else:
            rest = text[i + 1:].strip()
            if not rest or rest.startswith("#"):
                return "".join(chars), ""
            return None, " (words after the closing quote)"
    return None, " (the quote is not closed)"


_CONF_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _conf_escape(text: str, i: int) -> tuple[str, int]:
    """The character a backslash at `i - 1` stands for, and where the value goes on."""
    head = text[i:i + 3]
    octal = len(head) - len(head.lstrip("01234567"))  # leading octal digits, at most 3
    if octal:
        return chr(int(text[i:i + octal], 8) & 0xFF), i + octal  # a byte, as C's char
    return _CONF_ESCAPES.get(text[i], text[i]), i + 1


# The files pytest reads its configuration from, in the order it tries them per folder,
# each with the section that makes it count (None: the file counts whatever it holds).
_PYTEST_FILES: tuple[tuple[str, str | None], ...] = (
    ("pytest.toml", None),
    (".pytest.toml", None),
    ("pytest.ini", None),
    (".pytest.ini", None),
    ("pyproject.toml", "tool.pytest"),
    ("tox.ini", "pytest"),
    ("setup.cfg", "tool:pytest"),
)


def _pytest_section(path: Path, section: str | None) -> dict[str, Any] | None:
    """The pytest options of a configuration file, or None if pytest would pass it by."""
    try:
        text = config_text(path)
    except OSError:
        return None
    if path.suffix == ".toml":
        data = _toml(path, text)
        tool = data.get("tool", {})
        pytest_table = (tool.get("pytest") if isinstance(tool, dict) else None) if section \
            else data.get("pytest", {})
        if not isinstance(pytest_table, dict):
            return None
        if "ini_options" in pytest_table:  # pytest's ini mode: values as text, as it reads them
            options = pytest_table["ini_options"]
            return {k: v if isinstance(v, list) else str(v) for k, v in options.items()}
        return dict(pytest_table)  # pytest 9's native TOML: values keep their TOML type
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # as pytest: case kept
    try:
        parser.read_string(text, str(path))
    except configparser.Error as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}{_bom_hint(text)}") from exc
    name = section or "pytest"
    if not parser.has_section(name):
        return {} if section is None else None
    return dict(parser.items(name))


def pytest_file_options(path: Path) -> dict[str, Any]:
    """The pytest options of the configuration file pytest chose (`config.inipath`), read as
    pytest reads that kind of file: from pytest.toml and `[tool.pytest]` with TOML's types."""
    section = dict(_PYTEST_FILES).get(path.name, "tool:pytest" if path.suffix == ".cfg" else None)
    return _pytest_section(path, section) or {}


@dataclass(frozen=True)
class Project:
    """Where a project's configuration lives, found the way pytest finds its rootdir."""

    root: Path
    inifile: Path | None = None
    ini: Mapping[str, Any] = field(default_factory=dict)  # the inifile's pytest options

    @property
    def pyproject(self) -> Path:
        return self.root / "pyproject.toml"


def find_project(start: Path) -> Project:
    """pytest's rule (run with no path arguments): walk up from `start` to the first folder
    with a pytest configuration file (pytest.ini, pyproject.toml with [tool.pytest...],
    tox.ini with [pytest], setup.cfg with [tool:pytest]); it is the root. With none,
    the first folder with a pyproject.toml; with none of those either, `start`.
    """
    for folder in (start, *start.parents):
        for name, section in _PYTEST_FILES:
            path = folder / name
            if path.is_file():
                options = _pytest_section(path, section)
                if options is not None:
                    return Project(folder, path, options)
    pyproject = find_pyproject(start)
    return Project(pyproject.parent if pyproject is not None else start)


def refuse_unread_tables(start: Path, root: Path, inifile: Path | None,
                         seen: set[Path] | None = None) -> None:
    """ConfigError when a pyproject.toml between `start` (where the run began) and the
    project `root` holds a `[tool.sqlfix]` table: sqlfix reads only the root's, as pytest
    reads only its configuration file, and a monorepo's `app/pyproject.toml` would
    otherwise be passed by without a word (its seed, schema, fixtures directory unused).
    `seen`: folders already looked at (by the walk of another start), not read again."""
    start, root = start.resolve(), root.resolve()
    if start == root or not start.is_relative_to(root):
        return
    seen = set() if seen is None else seen
    for folder in (start, *start.parents):
        if folder == root or folder in seen:
            return
        seen.add(folder)
        candidate = folder / "pyproject.toml"
        if not candidate.is_file():
            continue
        try:
            tool = _toml(candidate, config_text(candidate)).get("tool")
        except (ConfigError, OSError):
            continue  # not this run's file: its own tools will say
        if isinstance(tool, dict) and "sqlfix" in tool:
            chose = f"{inifile} is pytest's configuration file, so " if inifile else ""
            raise ConfigError(
                f"{candidate} has a [tool.sqlfix] table that is not read: {chose}the project "
                f"root is {root}, and sqlfix reads [tool.sqlfix] from {root / 'pyproject.toml'}"
                f" only. Move the table there (its paths are then relative to {root}), or "
                f"make {folder} a project of its own: a [tool.pytest.ini_options] table in "
                f"{candidate} makes pytest take it as the root")


def check_ini_names(names: Iterable[str], where: str) -> None:
    """ConfigError for a `sqlfix_*` pytest option that sqlfix does not have: pytest only
    warns of an unknown option, and a typo (`sqlfix_sead`) would go unnoticed, where the
    same typo in `[tool.sqlfix]` is an error."""
    known = {INI_PREFIX + k for k in INI_KEYS}
    unknown = sorted(n for n in names if n.lower().startswith(INI_PREFIX) and n not in known)
    if unknown:
        cased = ", ".join(n.lower() for n in unknown if n.lower() in known)
        hint = f" (pytest's option names are case-sensitive: write {cased})" if cased else ""
        raise ConfigError(
            f"{where}: unknown sqlfix option(s): {', '.join(unknown)}{hint}; known options are "
            f"{', '.join(sorted(known))}")


def ini_of(project: Project) -> dict[str, Any]:
    """The `sqlfix_*` options of the project's pytest configuration file, typed."""
    check_ini_names(project.ini, str(project.inifile))
    raw = {k: project.ini.get(INI_PREFIX + k) for k in INI_KEYS}
    return ini_values(raw, str(project.inifile))


_MISSING = object()


def _typed(
    values: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: str,
    default: Any = _MISSING,
) -> Any:
    """`values[key]` checked to be of `kind`; `default` when the key is absent, if given."""
    if key not in values and default is not _MISSING:
        return default
    value = values[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # TOML's true is a Python int too: not where a number (or a version) is meant
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
        raise ConfigError(f"{where} = {shown(value)} has the wrong type: it takes {wanted}")
    return value


# TOML's names for the types a key takes, in `_typed`'s errors
_KIND_NAMES = {str: "a string", int: "an integer", bool: "true or false",
               dict: "a table", list: "a list"}


def _seed(values: Mapping[str, Any], where: str) -> int | None:
    """The seed from wherever it was set; None means pick a random one. `where`: the
    place and the key's name there (`pytest.toml: sqlfix_seed`)."""
    value = values["seed"]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{where} = {shown(value)} must be an integer or 'random'")
    try:
        return parse_seed(str(value))
    except ValueError as exc:
        last = (" ('last' is pytest's --sqlfix-seed=last only: it replays the previous "
                "run's seed, which a configured value cannot name)"
                if str(value).strip().lower() == "last" else "")
        raise ConfigError(f"{where}: {exc}{last}") from None


def _now(value: Any, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):  # a bare TOML date
        raise ConfigError(_date_alone(where, value))
    elif isinstance(value, str):
        if _DATE_ALONE.fullmatch(value.strip()):  # fromisoformat would make it midnight
            raise ConfigError(_date_alone(where, value.strip()))
        text = value.strip()
        if text[-1:] in ("Z", "z"):  # RFC 3339's UTC: 3.10's fromisoformat reads no Z,
            text = text[:-1] + "+00:00"  # and none reads a lowercase z
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                f"{where} = {value!r} is not an ISO "
                "timestamp such as '2024-01-01T12:00:00+00:00'"
            ) from None
    else:
        raise ConfigError(f"{where} must be a timestamp, not {shown(value)}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


# The ISO dates without a time that fromisoformat reads: 2024-06-01, 20240601, 2024-W22-6
_DATE_ALONE = re.compile(r"\d{4}-?\d{2}-?\d{2}|\d{4}-?W\d{2}-?\d?")


def _date_alone(where: str, value: object) -> str:
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return (f"{where} = {text} is a date alone; now is a timestamp: give the time too, "
            f"e.g. {text}T00:00:00+00:00")


def _schema(value: Any, root: Path, where: str) -> tuple[Path, ...]:
    """The schema files, each checked to exist: the error names the place that listed it
    (`[tool.sqlfix] schema`, or the ini file's `sqlfix_schema`)."""
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"{where} must be a list of .sql paths")
    paths = tuple(root / f for f in files)
    for name, path in zip(files, paths, strict=True):
        if not path.is_file():
            several = len(name.split()) > 1 and all((root / p).is_file() for p in name.split())
            hint = (" (these are several paths on one line: write one path per line)"
                    if several else "")
            raise ConfigError(f"{where}: schema file {name} not found (looked for {path}){hint}; "
                              "fix the path, relative to the project root, or create the file")
    return paths


def _setup_command(value: Any, where: str) -> str | tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{where} must be a command line string "
                      f"(run by the shell) or a list of arguments, not {shown(value)}")


def _lint(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`[tool.sqlfix.lint]`: select/ignore (lists of rule codes) and tests (a directory).

    Rule codes themselves are checked by the lint, which knows them.
    """
    lint = dict(_typed(table, "lint", dict, f"{where}: [tool.sqlfix] lint"))
    unknown = sorted(set(lint) - LINT_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) in [tool.sqlfix.lint]: {', '.join(unknown)}; "
            f"known keys are {', '.join(sorted(LINT_KEYS))}"
        )
    for key in ("select", "ignore"):
        value = lint.get(key, [])
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise ConfigError(
                f"{where}: [tool.sqlfix.lint] {key} = {shown(value)} must be a list of rule "
                'codes, e.g. ["SQLF501"]'
            )
    if not isinstance(lint.get("tests", ""), str):
        raise ConfigError(
            f"{where}: [tool.sqlfix.lint] tests = {shown(lint['tests'])} must be a directory "
            'path such as "tests"'
        )
    return lint


@dataclass
class _Collector:
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # key -> how its source spells it

    def put(self, key: str, value: Any, source: str, name: str = "") -> None:
        if key not in self.values and value is not None:
            self.values[key] = value
            self.sources[key] = source
            self.names[key] = name or key

    def where(self, key: str) -> str:
        """`file: option` of a key's value, for error messages."""
        return f"{self.sources[key]}: {self.names[key]}"


def load_settings(
    root: Path,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    pyproject: Path | None = None,
    ini: Mapping[str, Any] | None = None,
    ini_file: str = "pytest ini",
    ini_overridden: frozenset[str] = frozenset(),
) -> Settings:
    """Settings for a project rooted at `root`; highest first: cli, env, pytest ini
    options (`ini`, typed by `ini_values`, read from `ini_file`, or given with pytest's
    `-o` for the keys in `ini_overridden`), `[tool.sqlfix]`."""
    cli = cli or {}
    env = env or {}
    pyproject = pyproject if pyproject is not None else root / "pyproject.toml"
    table = read_table(pyproject)
    got = _Collector()
    for key in ("dsn", "seed", "fixtures_dir"):
        got.put(key, cli.get(key), f"option --sqlfix-{key.split('_')[0]}")
    for key, option in OPTION_KEYS.items():
        got.put(key, cli.get(key), f"option {option}")
    got.put("dsn", env.get("SQLFIX_DSN") or None, "env SQLFIX_DSN")
    got.put("seed", env.get("SQLFIX_SEED") or None, "env SQLFIX_SEED")
    for key, value in (ini or {}).items():
        where = "pytest -o" if key in ini_overridden else ini_file
        got.put(key, value, where, INI_PREFIX + key)
    for key in table:
        got.put(key, table[key], str(pyproject), f"[tool.sqlfix] {key}")
    return _build(root, got)


def _build(root: Path, got: _Collector) -> Settings:
    values, sources = got.values, dict(got.sources)
    # `file: sqlfix_seed`, but `env SQLFIX_SEED` alone: no "seed: seed must be ..."
    seed_place = got.where("seed") if got.names.get("seed", "seed") != "seed" else \
        got.sources.get("seed", "")
    seed = _seed(values, seed_place) if "seed" in values else 0
    if seed is None:
        seed = random_seed()
        sources["seed"] = f"random, from {sources['seed']}"
    for key in ("dsn", "fixtures_dir"):  # from a file they may be of any TOML type
        if key in values:
            _typed(values, key, str, got.where(key))
    if values.get("dsn"):
        _check_dsn(values["dsn"], got.where("dsn"))
    if "fixtures_dir" in values and not values["fixtures_dir"].strip():
        # Path("") is the project root: every .sql file of the project would be a fixture
        raise ConfigError(f"{got.where('fixtures_dir')} is empty: give the fixtures folder, "
                          "relative to the project root ('.' for the root itself)")
    fixtures = Path(values.get("fixtures_dir", "fixtures_sql"))

    def typed(key: str, kind: type, default: Any) -> Any:
        return _typed(values, key, kind, got.where(key)) if key in values else default

    return Settings(
        root=root,
        dsn=values.get("dsn"),
        seed=int(seed),
        fixtures_dir=fixtures if fixtures.is_absolute() else root / fixtures,
        schema=_schema(values["schema"], root, got.where("schema")) if "schema" in values else (),
        allow_any_database=typed("allow_any_database", bool, False),
        now=_now(values["now"], got.where("now")) if "now" in values else DEFAULT_NOW,
        faker_locale=typed("faker_locale", str, "en_US"),
        lint=_lint(values, sources["lint"]) if "lint" in values else {},
        setup_command=(
            _setup_command(values["setup_command"], got.where("setup_command"))
            if "setup_command" in values else None
        ),
        reset_sequences=typed("reset_sequences", bool, True),
        reset_session=typed("reset_session", bool, True),
        **_boundary_keys(values, got.where),
        **_server_keys(values, got.where),
        sources=sources,
        names=dict(got.names),
    )


def _boundary_keys(values: Mapping[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """The timeouts (ms), `verify`, the layers' keys and `vacuum_threshold`, from whichever
    place set them.

    `where(key)` names that place in an error.
    """
    found: dict[str, Any] = {}
    for key in (*TIMEOUT_KEYS, "verify", "layers", "layers_max_tests", "vacuum_threshold"):
        if key not in values:
            continue
        try:
            parse = {"verify": parse_bool, "layers": parse_bool,
                     "layers_max_tests": _positive_int,
                     "vacuum_threshold": _whole_number}.get(key, parse_duration)
            found[key] = parse(values[key])
        except ValueError as exc:
            raise ConfigError(f"{where(key)}: {exc}") from None
    return found


def _check_dsn(dsn: str, where: str) -> None:
    """ConfigError when libpq cannot read `dsn` at all (a bare `myapp_test`, an unclosed
    quote): the configuration's to fix, said with where it was set, not at connect time."""
    from psycopg import ProgrammingError  # only with a DSN: most runs have none
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(dsn)
    except ProgrammingError as exc:
        raise ConfigError(
            f"{where} is not a connection string libpq can read ({str(exc).strip()}); write "
            "'host=... dbname=myapp_test' or 'postgresql://user@host/myapp_test'") from None


def _positive_int(value: object) -> int:
    return _whole_number(value, 1)


def _whole_number(value: object, least: int = 0) -> int:
    """`value` (an int, or its text from an ini file or the command line) as an int >= `least`;
    ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{shown(value)} must be a whole number of {least} or more")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{shown(value)} must be a whole number of {least} or more") from None
    if number < least:
        raise ValueError(f"{shown(value)} must be a whole number of {least} or more")
    return number


# ---- the embedded server's keys: server_version, server_locale, server_settings, server_port

DEFAULT_SERVER_LOCALE = "C"
# Chosen by sqlfix itself: a user value would break the socket path or the TCP option.
RESERVED_SETTINGS = frozenset({"listen_addresses", "port", "unix_socket_directories"})
# Where the server's files are: its private copy of the cluster, always. Another value
# would run a throwaway server, with fsync off, on files that are not sqlfix's.
FILE_SETTINGS = frozenset({"data_directory", "config_file", "hba_file", "ident_file",
                           "external_pid_file"})
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


# The majors sqlfix runs: the code needs 13 (pg_sequences, DROP DATABASE ... WITH (FORCE));
# 14 to 18 are the supported ones, tested in CI (docs/versions.md). 99: a bound far above
# any release, so that the next major works without a new sqlfix.
OLDEST_MAJOR, NEWEST_MAJOR = 13, 99
SUPPORTED_MAJORS = "14 to 18"


def major_version(text: str) -> str:
    """"16" from "16"; raises ValueError for a minor version ("16.4": only the major picks
    an installation, so 16.4 would silently run 16.13), a leading zero, and a major that
    sqlfix cannot run, each saying what to write instead."""
    match = re.fullmatch(r"\s*([1-9]\d*)((?:\.\d+)*)\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a PostgreSQL major version such as \"16\"")
    major, minor = int(match.group(1)), match.group(2)
    if not OLDEST_MAJOR <= major <= NEWEST_MAJOR:
        raise ValueError(
            f"{text!r} is not a PostgreSQL major version sqlfix can run: it needs "
            f"{OLDEST_MAJOR} or later ({SUPPORTED_MAJORS} are supported), e.g. \"16\"")
    if minor:
        raise ValueError(
            f"{text!r} is a minor version: give the major, \"{major}\"; sqlfix runs the "
            f"first PostgreSQL {major} installation it finds, whatever its minor version")
    return str(major)


def setting_value(name: str, value: object) -> str:
    """A TOML value as postgresql.conf text; raises ValueError on a bad name or type."""
    if not _SETTING_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a PostgreSQL setting name")
    if name.lower() in RESERVED_SETTINGS:
        raise ValueError(f"{name} is set by sqlfix (use server_port for a TCP port)")
    if name.lower() in FILE_SETTINGS:
        raise ValueError(f"{name} is set by sqlfix: the embedded server runs on a private "
                         "copy of its cached cluster, never on other files (for a server of "
                         "your own, give the tests its DSN)")
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float, str)):
        if "\x00" in str(value):  # a program argument cannot hold it, nor postgresql.conf
            raise ValueError(f"{name} = {value!r} holds a NUL character")
        return str(value)
    if isinstance(value, dict) and value:
        # TOML reads `myapp.tenant = "x"` as a table `myapp` holding `tenant`
        inner, inner_value = next(iter(value.items()))
        example = f'"{inner_value}"' if isinstance(inner_value, str) else shown(inner_value)
        raise ValueError(f"{name} = {shown(value)} is a TOML table: a setting name with a dot "
                         f"(a custom setting) is quoted in TOML, e.g. \"{name}.{inner}\" = "
                         f"{example}")
    raise ValueError(f"{name} = {shown(value)} must be a string, a number or a boolean")


def _checked(where: str, check: Callable[..., object], *values: object) -> str:
    """`check(*values)` as text; its ValueError a ConfigError after `where` (file: key)."""
    try:
        return str(check(*values))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _server_keys(values: Mapping[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """The server keys, from whichever place set them; `where(key)` names that place."""
    keys: dict[str, Any] = {}
    if "server_version" in values:
        at = where("server_version")
        version = _typed(values, "server_version", (str, int), at)
        keys["server_version"] = _checked(at, major_version, str(version))
    if "server_settings" in values:
        at = where("server_settings")
        settings = _typed(values, "server_settings", dict, at)
        keys["server_settings"] = {
            name: _checked(f"{at}.{name}", setting_value, name, value)
            for name, value in settings.items()
        }
    if "server_locale" in values:
        locale = _typed(values, "server_locale", str, where("server_locale"))
        if not re.fullmatch(r"[A-Za-z0-9_.@-]+", locale):
            raise ConfigError(f"{where('server_locale')} = {locale!r} is not a locale "
                              'name such as "C.UTF-8" or "en_US.UTF-8"')  # fmt: skip
        keys["server_locale"] = locale
    if "server_port" in values:
        port = values["server_port"]
        if isinstance(port, str) and port.strip().isdigit():  # from an ini option
            port = int(port)
        port = _typed({"server_port": port}, "server_port", int, where("server_port"))
        if not 1024 <= port <= 65535:
            raise ConfigError(f"{where('server_port')} = {port} must be a TCP port "
                              "from 1024 to 65535")  # fmt: skip
        keys["server_port"] = port
    return keys
