"""One error tree for sqlfix, and the `Finding` record every check reports.

A `Finding` is a located problem in a fixture (`path:line:col: CODE message`).
Checks that can report several problems at once (the statement guard, the lint)
return findings; the loader raises them as a `FixtureError` so a test stops with
the same text the lint prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


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

    def format(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"


class SqlfixError(Exception):
    """Base of every error sqlfix raises on purpose."""


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
        super().__init__(f"{finding.format()}\n--- statement ---\n{statement.strip()}")


class ServerError(SqlfixError):
    """The embedded PostgreSQL could not be found, initialised or started."""


class DatabaseError(SqlfixError):
    """The configured database cannot be used (unsafe name, schema failed, ...)."""


class BoundaryError(SqlfixError):
    """A test's changes escaped the rollback boundary."""
