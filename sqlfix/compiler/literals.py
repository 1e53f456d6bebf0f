"""Python values to SQL literals: what every `{{ }}` in a fixture emits.

The quoting is psycopg's own (`psycopg.sql.Literal` and its dumpers), the same code
that adapts query parameters, so a value can never become SQL text: strings with
a backslash are written as `E'...'` (read the same whatever
`standard_conforming_strings` says), negative numbers get a leading space
(`balance-{{ -30 }}` is `balance- -30`, never the comment `--30`), intervals are
exact to the microsecond, lists become arrays and `Json`/`Jsonb` wrap JSON.

One deliberate difference: dates, times and timestamps are written without a cast,
so the column they go into types them (a `::timestamptz` cast into a `timestamp`
column would shift the value by the server's TimeZone setting).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from typing import Any

from psycopg import abc
from psycopg import errors as pg_errors
from psycopg.adapt import Transformer

_CAST = re.compile(r"::[a-z ]+\Z")
_LOCAL = threading.local()  # a Transformer per thread: it keeps state while it dumps


def _transformer() -> abc.Transformer:
    tx: abc.Transformer | None = getattr(_LOCAL, "tx", None)
    if tx is None:
        tx = _LOCAL.tx = Transformer.from_context(None)  # no connection: no server's form
    return tx


class LiteralError(ValueError):
    """A value that has no safe SQL literal form."""


def to_sql_literal(value: Any) -> str:
    """The SQL literal for `value` (a str of SQL); raises LiteralError for no safe form.

    Takes None, bool, int, float, Decimal, str, date/datetime/time, timedelta,
    UUID, bytes, lists (arrays) and psycopg's `Json`/`Jsonb` wrappers.
    """
    # Fast paths for the two commonest types, the same text psycopg writes
    # (tests/compiler/test_literals.py compares them with psycopg.sql.Literal).
    kind = type(value)
    if kind is int:
        return str(value) if value >= 0 else f" {value}"
    if kind is str and "\\" not in value and "\x00" not in value:
        return "'" + str(value).replace("'", "''") + "'"
    if isinstance(value, str) and "\x00" in value:
        at = value.index("\x00")
        raise LiteralError(
            f"the string {value[:at][-20:]!r}... holds a NUL character (U+0000) at index "
            f"{at}; PostgreSQL text cannot hold one: remove it from the value"
        )
    if isinstance(value, str) and type(value) is not str:
        value = str.__str__(value)  # Markup and other str subclasses: the plain text
    if isinstance(value, (dict, set, frozenset, tuple)):
        raise LiteralError(
            f"cannot write a {type(value).__name__} as an SQL literal; for a json/jsonb "
            "column wrap it: {{ Jsonb(value) }} or {{ Json(value) }}; for an array use a list"
        )
    try:
        # what psycopg.sql.Literal(value).as_string(None) does, with one Transformer
        # kept (it caches a dumper per type): 5x faster on a large fixture
        text = _transformer().as_literal(value).decode()
    except (pg_errors.ProgrammingError, pg_errors.DataError, TypeError, ValueError) as exc:
        raise LiteralError(
            f"cannot write a {type(value).__name__} as an SQL literal ({exc}); emit str, "
            "int, float, Decimal, bool, None, date/datetime/time, timedelta, UUID, bytes, "
            "a list, Json(...) or Jsonb(...)"
        ) from None
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        text = _CAST.sub("", text)
    return text
