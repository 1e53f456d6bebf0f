"""Python values to SQL literals: what every `{{ }}` in a fixture emits.

Quoting here is what makes `{{ fake.last_name() }}` safe when it yields O'Brien,
and what keeps a value from ever becoming SQL text. Literals are written for a
server with `standard_conforming_strings = on` (the default since 9.1), where a
backslash in '...' is an ordinary character and only the quote needs doubling.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any


class LiteralError(ValueError):
    """A value that has no safe SQL literal form."""


def quote_string(text: str) -> str:
    if "\x00" in text:
        raise LiteralError("PostgreSQL text cannot hold a NUL character (\\x00)")
    return "'" + text.replace("'", "''") + "'"


def _float(value: float) -> str:
    if math.isnan(value):
        return "'NaN'::float8"
    if math.isinf(value):
        return "'Infinity'::float8" if value > 0 else "'-Infinity'::float8"
    return repr(value)


def _decimal(value: Decimal) -> str:
    if value.is_nan():
        return "'NaN'::numeric"
    if value.is_infinite():
        return "'Infinity'::numeric" if value > 0 else "'-Infinity'::numeric"
    return str(value)


def to_sql_literal(value: Any) -> str:
    """The SQL literal for `value`; raises LiteralError for types with no safe form.

    Dates, times and UUIDs are quoted without a cast so PostgreSQL types them from
    the column they are inserted into (a cast could convert time zones silently).
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, str):
        # exact str: Markup (from | safe, | tojson) would HTML-escape the quotes
        return quote_string(str.__str__(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return quote_string(
            value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
        )
    if isinstance(value, dt.timedelta):
        return quote_string(f"{value.total_seconds()} seconds")
    if isinstance(value, uuid.UUID):
        return quote_string(str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return quote_string("\\x" + bytes(value).hex())
    raise LiteralError(
        f"cannot write a {type(value).__name__} as an SQL literal; "
        "emit str, int, float, Decimal, bool, None, date/datetime/time, timedelta, UUID or bytes"
    )
