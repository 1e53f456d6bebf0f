"""sqlfix: SQL-first test fixtures for pytest and PostgreSQL.

from sqlfix import uses

@uses("users.sql", "orders.sql")
def test_orders(sqlfix_conn): ...
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import (
        BoundaryError,
        ConfigError,
        DatabaseError,
        Finding,
        FixtureError,
        LoadError,
        RefusedDatabase,
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
    "RefusedDatabase",
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


_FROM_MARKER = ("uses", "SqlfixDeprecationWarning")


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: every pytest run imports this package (the
    plugin lives in it), a run without a sqlfix test needs none of them, and pytest loads
    every module of sqlfix's distribution slowly (its own rewritten `.pyc` files; building
    `Finding`, a dataclass, costs milliseconds too). `from sqlfix import uses` works as ever."""
    if name in _FROM_MARKER:
        from . import marker

        return getattr(marker, name)
    if name in __all__:
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'sqlfix' has no attribute {name!r}")
