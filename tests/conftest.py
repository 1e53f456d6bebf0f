"""Shared helpers: a pytester project with the example shop's schema and fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FIXTURES = REPO / "fixtures_sql"


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with fixtures_sql/ (schema and fixtures) from the example shop."""
    shutil.copytree(EXAMPLE_FIXTURES, pytester.path / "fixtures_sql")
    pytester.makepyprojecttoml(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
    )
    return pytester
