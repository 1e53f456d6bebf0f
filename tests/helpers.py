"""Helpers shared by the test folders (imported as `helpers`: tests/ is on sys.path via conftest.py)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
EXAMPLE_FIXTURES = REPO / "fixtures_sql"
# pytester runs whose outcome depends on test order turn pytest-randomly off.
NO_RANDOM = ("-p", "no:randomly")
