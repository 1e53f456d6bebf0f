"""Compiled fixtures on disk: reused by a new process, missed whenever an input changes."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from sqlfix.compiler.cache import FORMAT, DiskCache
from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.library import FixtureLibrary
from sqlfix.errors import FixtureError

TEMPLATE = "INSERT INTO users (id, n) VALUES ({{ id('users', 'a') }}, {{ rng.randint(1, 10**9) }});\n"


class Counting(FixtureLibrary):
    """A library that counts real compiles (render + guard), so a disk hit shows."""

    compiles = 0

    def check(self, name):  # type: ignore[no-untyped-def]
        Counting.compiles += 1
        return super().check(name)


@pytest.fixture
def fixtures(tmp_path: Path) -> Path:
    folder = tmp_path / "fx"
    folder.mkdir()
    (folder / "users.sql").write_text(TEMPLATE)
    return folder


def fresh(folder: Path, cache: Path, **kwargs: object) -> Counting:
    """A library as a new process (another xdist worker, a later run) would build it."""
    Counting.compiles = 0
    return Counting(FixtureDir(folder), disk=DiskCache(cache), **kwargs)  # type: ignore[arg-type]


def test_a_new_process_reuses_the_compiled_fixture(fixtures, tmp_path):
    first = fresh(fixtures, tmp_path / "c").compile("users.sql")
    assert Counting.compiles == 1
    again = fresh(fixtures, tmp_path / "c").compile("users.sql")
    assert Counting.compiles == 0
    assert again == first
    assert list((tmp_path / "c" / FORMAT).rglob("*.pickle"))


def _bump(path: Path, text: str) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_changed_content_misses(fixtures, tmp_path):
    before = fresh(fixtures, tmp_path / "c").compile("users.sql")
    _bump(fixtures / "users.sql", TEMPLATE.replace("10**9", "10**8"))
    after = fresh(fixtures, tmp_path / "c").compile("users.sql")
    assert Counting.compiles == 1
    assert after.rendered.sql != before.rendered.sql


def test_the_same_process_sees_an_edit_too(fixtures, tmp_path):
    library = fresh(fixtures, tmp_path / "c")
    library.compile("users.sql")
    _bump(fixtures / "users.sql", "-- a comment\n" + TEMPLATE)
    assert library.compile("users.sql").rendered.sql.startswith("-- a comment")


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 7},
        {"now": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)},
        {"locale": "de_DE"},
    ],
    ids=["seed", "now", "locale"],
)
def test_a_setting_that_affects_rendering_misses(fixtures, tmp_path, change):
    fresh(fixtures, tmp_path / "c").compile("users.sql")
    fresh(fixtures, tmp_path / "c", **change).compile("users.sql")
    assert Counting.compiles == 1


def test_a_new_seed_gives_its_own_values_not_the_cached_ones(fixtures, tmp_path):
    zero = fresh(fixtures, tmp_path / "c").compile("users.sql").rendered.sql
    seven = fresh(fixtures, tmp_path / "c", seed=7).compile("users.sql").rendered.sql
    assert zero != seven
    assert fresh(fixtures, tmp_path / "c").compile("users.sql").rendered.sql == zero


def test_a_damaged_or_deleted_cache_is_only_a_miss(fixtures, tmp_path):
    cache = tmp_path / "c"
    good = fresh(fixtures, cache).compile("users.sql")
    for entry in (cache / FORMAT).rglob("*.pickle"):
        entry.write_bytes(b"not a pickle")
    assert fresh(fixtures, cache).compile("users.sql") == good
    assert Counting.compiles == 1
    import shutil

    shutil.rmtree(cache)
    assert fresh(fixtures, cache).compile("users.sql") == good


@pytest.mark.parametrize("offset", [2, 10, 40, -3])
def test_an_entry_with_a_flipped_byte_is_a_miss_and_is_replaced(fixtures, tmp_path, offset):
    """A flipped byte makes pickle raise OverflowError, MemoryError, ... not only its own
    UnpicklingError; each is a miss, and the compile writes a good entry back."""
    cache = tmp_path / "c"
    good = fresh(fixtures, cache).compile("users.sql")
    (entry,) = (cache / FORMAT).rglob("*.pickle")
    data = bytearray(entry.read_bytes())
    data[offset] = 0xFF
    entry.write_bytes(bytes(data))
    assert fresh(fixtures, cache).compile("users.sql") == good
    assert fresh(fixtures, cache).compile("users.sql") == good  # replaced: a disk hit now
    assert Counting.compiles == 0


def test_a_fixture_with_errors_is_never_cached(fixtures, tmp_path):
    (fixtures / "bad.sql").write_text("DROP TABLE users;\n")
    for _ in range(2):
        with pytest.raises(FixtureError, match="DROP"):
            fresh(fixtures, tmp_path / "c").compile("bad.sql")
        assert Counting.compiles == 1


def test_an_unwritable_cache_directory_is_ignored(fixtures, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    library = fresh(fixtures, blocker)  # a file where the directory should be
    assert library.compile("users.sql").rendered.sql
