"""The plugin's caches: compiled fixtures shared by workers and runs, invalidated by edits.

Each run is its own process, as later runs and xdist workers are.
"""

from __future__ import annotations

import json
import sys

from helpers import NO_RANDOM

from sqlfix.compiler.cache import FORMAT

TEST = """
from sqlfix import uses

@uses("users.sql")
def test_users(sqlfix_conn):
    assert sqlfix_conn.execute("SELECT count(*) FROM users").fetchone() == ({count},)
"""


def test_compiled_fixtures_land_in_pytests_cache_and_follow_edits(shop):
    shop.makepyfile(test_x=TEST.format(count=4))
    shop.runpytest_subprocess(*NO_RANDOM).assert_outcomes(passed=1)
    entries = list((shop.path / ".pytest_cache" / "d" / "sqlfix" / FORMAT).rglob("*.pickle"))
    assert entries, "compiled users.sql should be on disk"
    shop.runpytest_subprocess(*NO_RANDOM).assert_outcomes(passed=1)  # from the cache
    users = shop.path / "fixtures_sql" / "users.sql"
    users.write_text(users.read_text().replace(", 'carol'", ""))  # same size class, new text
    shop.makepyfile(test_x=TEST.format(count=3))
    shop.runpytest_subprocess(*NO_RANDOM).assert_outcomes(passed=1)


def test_sqlfix_cache_dir_is_used_when_set(shop, monkeypatch, tmp_path):
    monkeypatch.setenv("SQLFIX_CACHE_DIR", str(tmp_path / "shared"))
    shop.makepyfile(test_x=TEST.format(count=4))
    shop.runpytest_subprocess(*NO_RANDOM, "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert list((tmp_path / "shared" / FORMAT).rglob("*.pickle"))


def test_the_schema_is_built_once_across_runs_and_rebuilt_on_request(shop):
    schema = shop.path / "fixtures_sql" / "schema.sql"
    schema.write_text(f"-- {shop.path}\n" + schema.read_text())  # this test's own cache entry
    count = json.dumps([sys.executable, "-c", "open('builds.txt', 'a').write('x')"])
    shop.makepyprojecttoml(
        f'[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\nsetup_command = {count}\n')
    shop.makepyfile(test_x=TEST.format(count=4))
    builds = shop.path / "builds.txt"
    shop.runpytest_subprocess(*NO_RANDOM).assert_outcomes(passed=1)
    shop.runpytest_subprocess(*NO_RANDOM).assert_outcomes(passed=1)
    assert builds.read_text() == "x"  # the second run started from the saved schema
    shop.runpytest_subprocess(*NO_RANDOM, "--sqlfix-rebuild").assert_outcomes(passed=1)
    assert builds.read_text() == "xx"
