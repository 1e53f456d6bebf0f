"""The plugin's caches: compiled fixtures shared by workers and runs, invalidated by edits.

Each run is its own process, as later runs and xdist workers are.
"""

from __future__ import annotations

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
