"""sqlfix: SQL-first test fixtures for pytest and PostgreSQL.

from sqlfix import uses

@uses("users.sql", "orders.sql")
def test_orders(sqlfix_conn): ...
"""

from .errors import (
    BoundaryError,
    ConfigError,
    DatabaseError,
    Finding,
    FixtureError,
    LoadError,
    ServerError,
    SqlfixError,
)
from .marker import SqlfixDeprecationWarning, uses

__all__ = [
    "BoundaryError",
    "ConfigError",
    "DatabaseError",
    "Finding",
    "FixtureError",
    "LoadError",
    "ServerError",
    "SqlfixDeprecationWarning",
    "SqlfixError",
    "uses",
]
__version__ = "0.1.0"
# Where the documentation site lives; every link sqlfix prints is built on it.
DOCS_URL = "https://sqlfix.readthedocs.io/en/latest/"


def docs_url(page: str, anchor: str = "") -> str:
    """The absolute URL of a docs page ("lint" for docs/lint.md), with an optional #anchor."""
    return f"{DOCS_URL}{page}/" + (f"#{anchor}" if anchor else "")
