import datetime as dt
import uuid
from decimal import Decimal

import pytest

from sqlfix.compiler.literals import LiteralError, to_sql_literal

CASES = [
    (None, "NULL"),
    (True, "TRUE"),
    (False, "FALSE"),
    (42, "42"),
    (-7, "-7"),
    (1.5, "1.5"),
    (float("nan"), "'NaN'::float8"),
    (float("-inf"), "'-Infinity'::float8"),
    (Decimal("12.30"), "12.30"),
    ("O'Brien", "'O''Brien'"),
    ("back\\slash", "'back\\slash'"),
    ("'); DROP TABLE users; --", "'''); DROP TABLE users; --'"),
    (dt.date(2024, 2, 29), "'2024-02-29'"),
    (dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone.utc), "'2024-01-01 12:00:00+00:00'"),
    (dt.time(8, 30), "'08:30:00'"),
    (dt.timedelta(days=1), "'86400.0 seconds'"),
    (uuid.UUID(int=1), "'00000000-0000-0000-0000-000000000001'"),
    (b"\x00\xff", "'\\x00ff'"),
]


@pytest.mark.parametrize(("value", "literal"), CASES)
def test_values_become_quoted_literals(value, literal):
    assert to_sql_literal(value) == literal


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, object(), "nul\x00byte"])
def test_values_without_a_safe_literal_are_refused(value):
    with pytest.raises(LiteralError):
        to_sql_literal(value)
