"""One error tree for sqlfix, and the `Finding` record every check reports.

A `Finding` is a located problem in a fixture (`path:line:col: CODE message`).
Checks that can report several problems at once (the statement guard, the lint)
return findings; the loader raises them as a `FixtureError` so a test stops with
the same text the lint prints.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


def _name(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"<U+{ord(ch):04X}{' ' + name if name else ''}>"


def show_invisible(text: str) -> str:
    """`text` with each invisible character named: "a\u200bb" -> "a<U+200B ZERO WIDTH SPACE>b".

    Zero-width characters, byte-order marks, no-break spaces and control characters
    would otherwise make two names that look the same differ in a message.
    """
    if text.isprintable():
        return text
    # str.isprintable is False exactly for control, format, separator (other than
    # the space) and unassigned characters
    return "".join(c if c.isprintable() or c in "\n\t" else _name(c) for c in text)


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """A problem at a place in a source file. `line` and `col` are 1-based."""

    code: str
    message: str
    path: str
    line: int = 1
    col: int = 1
    severity: Severity = Severity.ERROR

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", show_invisible(self.message))
        object.__setattr__(self, "path", show_invisible(self.path))

    def format(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"


class SqlfixError(Exception):
    """Base of every error sqlfix raises on purpose."""

    def __str__(self) -> str:
        return show_invisible(super().__str__())


class ConfigError(SqlfixError):
    """A setting is missing, unknown or has a bad value."""


class FixtureError(SqlfixError):
    """One or more findings in fixture files; the message lists all of them."""

    def __init__(self, findings: Iterable[Finding]) -> None:
        self.findings = tuple(findings)
        super().__init__("\n".join(f.format() for f in self.findings))


class LoadError(SqlfixError):
    """The server rejected a fixture statement while it was being loaded."""

    def __init__(self, finding: Finding, sqlstate: str | None, statement: str) -> None:
        self.finding = finding
        self.sqlstate = sqlstate
        self.statement = statement
        # No statement failed, the deferred constraints' check at the end did: rows loaded
        # before this load (savepoint layers) may be the cause (see layers.load_first).
        self.at_check = False
        super().__init__(f"{finding.format()}\n--- statement ---\n{statement.strip()}")


class ServerError(SqlfixError):
    """The embedded PostgreSQL could not be found, initialised or started."""


class DatabaseError(SqlfixError):
    """The configured database cannot be used (unsafe name, schema failed, ...)."""


class RefusedDatabase(DatabaseError):
    """sqlfix refuses the configured database, by its own rules: a name without 'test',
    another test run working in it, or no right to copy it for pytest-xdist's workers.
    The configuration's to fix, so pytest exits 4 (a usage error), with `-n` or without;
    a database that cannot be reached or prepared exits 3."""


class BoundaryError(SqlfixError):
    """A test's changes escaped the rollback boundary."""


class LeakedConnectionWarning(UserWarning):
    """A committed test left a connection to the test database open (sqlfix ended it).

    Make it an error with `filterwarnings = ["error::sqlfix.errors.LeakedConnectionWarning"]`.
    """


class SchemaRebuiltWarning(UserWarning):
    """A committed test changed the schema (committed DDL); sqlfix rebuilt the test database.

    Make it an error with `filterwarnings = ["error::sqlfix.errors.SchemaRebuiltWarning"]`.
    """


class ReconnectedWarning(UserWarning):
    """sqlfix found its connection lost when a test began (the server ended it, or the
    embedded server died, after the test before had ended) and recovered before the test
    ran: the test itself starts from the baseline as usual.

    Make it an error with `filterwarnings = ["error::sqlfix.errors.ReconnectedWarning"]`.
    """


class UnfinishedRunWarning(UserWarning):
    """The run before on a DSN's database did not end (killed); sqlfix put back the
    sequences its tests had moved (see database/run_lock.py).

    Make it an error with `filterwarnings = ["error::sqlfix.errors.UnfinishedRunWarning"]`.
    """
