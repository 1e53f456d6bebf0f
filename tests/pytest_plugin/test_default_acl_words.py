"""Committed ALTER DEFAULT PRIVILEGES is named in words in the rebuild's lines."""

from __future__ import annotations

import pytest
from helpers import NO_RANDOM

TESTS = """
def test_every_schema(sqlfix_conn):
    sqlfix_conn.execute("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC; COMMIT")

def test_one_schema(sqlfix_conn):
    sqlfix_conn.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                        "GRANT USAGE ON SEQUENCES TO PUBLIC; COMMIT")

def test_clean(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM pg_default_acl").fetchone() == (0,)
"""


def test_default_privileges_are_named_in_words(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_acl=TESTS)
    result = shop.runpytest(*NO_RANDOM)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*default privileges of role * on tables in every schema were created*",
        "*default privileges of role * on sequences in schema public were created*",
    ])
    assert " 0 r " not in result.stdout.str()
