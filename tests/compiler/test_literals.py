"""Values are quoted by psycopg's own adaptation (sqlfix.compiler.literals)."""

import datetime as dt
import re
import uuid
from decimal import Decimal

import pytest
from markupsafe import Markup
from psycopg.types.json import Json, Jsonb

from sqlfix.compiler.literals import LiteralError, to_sql_literal

CASES = [
    (None, "NULL"),
    (True, "true"),
    (False, "false"),
    (42, "42"),
    (-7, " -7"),  # the leading space: `x-{{ -7 }}` is `x- -7`, never the comment `--7`
    (1.5, "1.5"),
    (-0.0, " -0.0"),
    (1e-06, "1e-06"),
    (float("nan"), "'NaN'::float8"),
    (float("inf"), "'Infinity'::float8"),
    (float("-inf"), "'-Infinity'::float8"),
    (Decimal("12.30"), "12.30"),
    (Decimal("-12.30"), " -12.30"),
    (Decimal("NaN"), "'NaN'::numeric"),
    ("O'Brien", "'O''Brien'"),
    ("back\\slash", " E'back\\\\slash'"),  # an E'' string reads the same either way
    ("'); DROP TABLE users; --", "'''); DROP TABLE users; --'"),
    (Markup("<b>"), "'<b>'"),
    (dt.date(2024, 2, 29), "'2024-02-29'"),
    (dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone.utc), "'2024-01-01 12:00:00+00:00'"),
    (dt.datetime(2024, 1, 1, 12, 0, 0, 5), "'2024-01-01 12:00:00.000005'"),
    (dt.time(8, 30), "'08:30:00'"),
    (dt.timedelta(days=1), "'1 day 0:00:00'::interval"),
    (dt.timedelta(microseconds=1), "'0:00:00.000001'::interval"),
    (dt.timedelta(days=-1, seconds=1), "'-1 day 0:00:01'::interval"),
    (dt.timedelta(days=999_999, microseconds=7), "'999999 days 0:00:00.000007'::interval"),
    (uuid.UUID(int=1), "'00000000000000000000000000000001'::uuid"),
    (b"\x00\xff", " E'\\\\000\\\\377'::bytea"),
    ([1, -2], "'{1,-2}'::int2[]"),
    (["a'b", None], "'{a''b,NULL}'"),
    ([], "'{}'"),
    (Jsonb({"k": "it's"}), "'{\"k\": \"it''s\"}'::jsonb"),
    (Json([1, None]), "'[1, null]'::json"),
]


@pytest.mark.parametrize(("value", "literal"), CASES)
def test_values_become_quoted_literals(value, literal):
    assert to_sql_literal(value) == literal


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"a": 1}, "Jsonb(value)"),
        ((1, 2), "cannot write a tuple"),
        (object(), "cannot write a object"),
        ("nul\x00byte", "U+0000"),
        (["y", "x\x00"], "NUL"),
    ],
)
def test_values_without_a_safe_literal_are_refused(value, words):
    with pytest.raises(LiteralError, match=re.escape(words)):
        to_sql_literal(value)


@pytest.mark.parametrize(
    "value", [0, 7, -7, 10**30, -(10**30), "", "plain", "O'Brien", "''", "a\nb\tc", "é中", "a\\b"])
def test_fast_paths_write_what_psycopg_writes(value):
    from psycopg import sql

    assert to_sql_literal(value) == sql.Literal(value).as_string(None)
