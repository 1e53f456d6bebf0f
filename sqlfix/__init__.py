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
