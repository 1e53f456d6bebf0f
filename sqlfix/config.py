"""Settings and where each came from: command line, then environment, then pyproject.toml.

Pure: the caller hands in the command-line values, the environment and the
project root; nothing here connects or starts anything.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlfix.compiler.context import DEFAULT_NOW
from sqlfix.compiler.seeds import random_seed
from sqlfix.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

KNOWN_KEYS = frozenset(
    {
        "dsn",
        "seed",
        "fixtures_dir",
        "schema",
        "allow_any_database",
        "now",
        "faker_locale",
        "lint",
        "setup_command",
        "reset_sequences",
        # the embedded server (docs/server.md)
        "server_version",
        "server_locale",
        "server_settings",
        "server_port",
    }
)
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
    server_version: str | None = None  # a major such as "16"
    server_locale: str = "C"
    server_settings: Mapping[str, str] = field(default_factory=dict)  # postgresql.conf
    server_port: int | None = None  # TCP on 127.0.0.1 as well as the unix socket
    sources: Mapping[str, str] = field(default_factory=dict)  # key -> where it came from

    def source(self, key: str) -> str:
        return self.sources.get(key, "default")

    @property
    def database(self) -> str:
        """Which database, for headers and reports."""
        return f"DSN from {self.source('dsn')}" if self.dsn else "embedded PostgreSQL"


def parse_seed(text: str) -> int | None:
    """An int seed, or None for `random`; a ValueError quotes the bad value."""
    if text.strip().lower() == "random":
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"seed must be a non-negative integer or 'random', not {text!r}") from None
    if value < 0:
        raise ValueError(f"seed must be a non-negative integer or 'random', not {text!r}")
    return value


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start`."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_table(pyproject: Path | None) -> dict[str, Any]:
    """`[tool.sqlfix]` of a pyproject.toml, checked for unknown keys."""
    if pyproject is None or not pyproject.is_file():
        return {}
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject}: invalid TOML: {exc}") from exc
    table = data.get("tool", {}).get("sqlfix", {})
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(
            f"{pyproject}: unknown key(s) in [tool.sqlfix]: {', '.join(unknown)}; "
            f"known keys are {', '.join(sorted(KNOWN_KEYS))}"
        )
    return dict(table)


_MISSING = object()


def _typed(
    table: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: str,
    default: Any = _MISSING,
) -> Any:
    """`table[key]` checked to be of `kind`; `default` when the key is absent, if given."""
    if key not in table and default is not _MISSING:
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: [tool.sqlfix] {key} = {value!r} has the wrong type")
    return value


def _seed(values: Mapping[str, Any], where: str) -> int | None:
    """The seed from wherever it was set; None means pick a random one."""
    value = values["seed"]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{where}: seed = {value!r} must be an integer or 'random'")
    try:
        return parse_seed(str(value))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _now(value: Any, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(
                f"{where}: [tool.sqlfix] now = {value!r} is not an ISO "
                "timestamp such as '2024-01-01T12:00:00+00:00'"
            ) from None
    else:
        raise ConfigError(f"{where}: [tool.sqlfix] now must be a timestamp, not {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _schema(table: Mapping[str, Any], root: Path, where: str) -> tuple[Path, ...]:
    value = table["schema"]
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"{where}: [tool.sqlfix] schema must be a list of .sql paths")
    return tuple(root / f for f in files)


def _setup_command(table: Mapping[str, Any], where: str) -> str | tuple[str, ...]:
    value = table["setup_command"]
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: [tool.sqlfix] setup_command must be a command line string "
                      f"(run by the shell) or a list of arguments, not {value!r}")


def _lint(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`[tool.sqlfix.lint]`: select/ignore (lists of rule codes) and tests (a directory).

    Rule codes themselves are checked by the lint, which knows them.
    """
    lint = dict(_typed(table, "lint", dict, where))
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
                f"{where}: [tool.sqlfix.lint] {key} = {value!r} must be a list of rule codes, "
                'e.g. ["SQLF501"]'
            )
    if not isinstance(lint.get("tests", ""), str):
        raise ConfigError(
            f"{where}: [tool.sqlfix.lint] tests = {lint['tests']!r} must be a directory "
            'path such as "tests"'
        )
    return lint


@dataclass
class _Collector:
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def put(self, key: str, value: Any, source: str) -> None:
        if key not in self.values and value is not None:
            self.values[key] = value
            self.sources[key] = source


def load_settings(
    root: Path,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    pyproject: Path | None = None,
) -> Settings:
    """Settings for a project rooted at `root`; highest first: cli, env, pyproject."""
    cli = cli or {}
    env = env or {}
    pyproject = pyproject if pyproject is not None else root / "pyproject.toml"
    table = read_table(pyproject)
    where = str(pyproject)
    got = _Collector()
    for key in ("dsn", "seed", "fixtures_dir"):
        got.put(key, cli.get(key), f"option --sqlfix-{key.split('_')[0]}")
    got.put("dsn", env.get("SQLFIX_DSN") or None, "env SQLFIX_DSN")
    got.put("seed", env.get("SQLFIX_SEED") or None, "env SQLFIX_SEED")
    for key in table:
        got.put(key, table[key], where)
    return _build(root, got, table, where)


def _build(root: Path, got: _Collector, table: Mapping[str, Any], where: str) -> Settings:
    values, sources = got.values, dict(got.sources)
    seed = _seed(values, sources.get("seed", "default")) if "seed" in values else 0
    if seed is None:
        seed = random_seed()
        sources["seed"] = f"random, from {sources['seed']}"
    for key in ("dsn", "fixtures_dir"):  # from pyproject they may be of any TOML type
        if sources.get(key) == where:
            _typed(table, key, str, where)
    fixtures = Path(values.get("fixtures_dir", "fixtures_sql"))
    return Settings(
        root=root,
        dsn=values.get("dsn"),
        seed=int(seed),
        fixtures_dir=fixtures if fixtures.is_absolute() else root / fixtures,
        schema=_schema(table, root, where) if "schema" in table else (),
        allow_any_database=_typed(table, "allow_any_database", bool, where, False),
        now=_now(table["now"], where) if "now" in table else DEFAULT_NOW,
        faker_locale=_typed(table, "faker_locale", str, where, "en_US"),
        lint=_lint(table, where) if "lint" in table else {},
        setup_command=_setup_command(table, where) if "setup_command" in table else None,
        reset_sequences=_typed(table, "reset_sequences", bool, where, True),
        **_server_keys(table, where),
        sources=sources,
    )


# ---- the embedded server's keys: server_version, server_locale, server_settings, server_port

DEFAULT_SERVER_LOCALE = "C"
# Chosen by sqlfix itself: a user value would break the socket path or the TCP option.
RESERVED_SETTINGS = frozenset({"listen_addresses", "port", "unix_socket_directories"})
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def major_version(text: str) -> str:
    """"16" from "16" or "16.4"; raises ValueError for anything PostgreSQL never was."""
    match = re.fullmatch(r"\s*(\d+)(?:\.\d+)*\s*", text)
    if match is None or not 9 <= int(match.group(1)) <= 99:
        raise ValueError(f"{text!r} is not a PostgreSQL major version such as \"16\"")
    return match.group(1)


def setting_value(name: str, value: object) -> str:
    """A TOML value as postgresql.conf text; raises ValueError on a bad name or type."""
    if not _SETTING_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a PostgreSQL setting name")
    if name.lower() in RESERVED_SETTINGS:
        raise ValueError(f"{name} is set by sqlfix (use server_port for a TCP port)")
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ValueError(f"{name} = {value!r} must be a string, a number or a boolean")


def _checked(key: str, check: Any, *args: Any) -> str:
    """`check(*args[:-1])`, its ValueError as a ConfigError naming `key` and the file."""
    *values, where = args
    try:
        return str(check(*values))
    except ValueError as exc:
        raise ConfigError(f"{where}: [tool.sqlfix] {key}: {exc}") from None


def _server_keys(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    if "server_version" in table:
        version = _typed(table, "server_version", (str, int), where)
        keys["server_version"] = _checked("server_version", major_version, str(version), where)
    settings = _typed(table, "server_settings", dict, where, {})
    keys["server_settings"] = {
        name: _checked(f"server_settings.{name}", setting_value, name, value, where)
        for name, value in settings.items()
    }
    locale = _typed(table, "server_locale", str, where, DEFAULT_SERVER_LOCALE)
    if not re.fullmatch(r"[A-Za-z0-9_.@-]+", locale):
        raise ConfigError(f"{where}: [tool.sqlfix] server_locale = {locale!r} is not a locale "
                          'name such as "C.UTF-8" or "en_US.UTF-8"')  # fmt: skip
    keys["server_locale"] = locale
    port = _typed(table, "server_port", int, where, None)
    if port is not None and not 1024 <= port <= 65535:
        raise ConfigError(f"{where}: [tool.sqlfix] server_port = {port} must be a TCP port "
                          "from 1024 to 65535")  # fmt: skip
    keys["server_port"] = port
    return keys
