"""Names to a checked load plan, without a database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sqlfix.compiler.discovery import FixtureDir, FixtureNotFound
from sqlfix.compiler.library import FixtureLibrary, LoadPlan, check_id_collisions
from sqlfix.compiler.render import RenderedFixture
from sqlfix.compiler.sourcemap import SourceMap
from sqlfix.errors import FixtureError


@pytest.fixture
def library(tmp_path: Path) -> FixtureLibrary:
    (tmp_path / "users.sql").write_text("INSERT INTO users (id) VALUES ({{ id('users', 'a') }});\n")
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "invoices.sql").write_text(
        "-- requires: users.sql\nINSERT INTO invoices (user_id) VALUES ({{ id('users', 'a') }});\n")
    (tmp_path / "schema.sql").write_text("CREATE TABLE users (id int);\n")
    return FixtureLibrary(FixtureDir(tmp_path, frozenset({tmp_path / "schema.sql"})))


def test_names_are_relative_to_the_fixtures_directory(library):
    plan = library.plan(["billing/invoices.sql"])
    assert isinstance(plan, LoadPlan)
    assert plan.names == ("users.sql", "billing/invoices.sql")
    assert library.directory.names() == ["billing/invoices.sql", "users.sql"]


@pytest.mark.parametrize("name", ["../etc/passwd.sql", "/etc/passwd.sql", "billing/../../x.sql"])
def test_names_that_leave_the_directory_are_refused(library, name):
    with pytest.raises(FixtureNotFound, match="leaves the fixtures directory") as caught:
        library.plan([name])
    assert f"fixture name {name!r} leaves" in str(caught.value)  # as written ('//etc' was shown)


def test_a_missing_name_suggests_close_matches(library):
    with pytest.raises(FixtureNotFound, match=r"'user.sql' not found .*did you mean 'users.sql'"):
        library.plan(["user.sql"])


def test_compiled_fixtures_are_cached_until_the_file_changes(library, tmp_path):
    first = library.compile("users.sql")
    assert library.compile("users.sql") is first
    (tmp_path / "users.sql").write_text("INSERT INTO users (id) VALUES (1);\n")
    assert library.compile("users.sql") is not first


def test_every_error_in_a_file_is_reported_at_once(library, tmp_path):
    (tmp_path / "bad.sql").write_text("DROP TABLE users;\nBEGIN;\nINSERT INTO t VALUES ('{{ 1 }}');\n")
    with pytest.raises(FixtureError) as info:
        library.compile("bad.sql")
    assert [(f.code, f.line) for f in info.value.findings] == [
        ("SQLF101", 1), ("SQLF102", 2), ("SQLF204", 3)]


def _rendered(path: str, ids: tuple[tuple[str, str, int], ...]) -> RenderedFixture:
    return RenderedFixture(path, path, 0, "", SourceMap((), (), (), ()), (), ids)


def test_two_labels_with_one_id_are_an_error():
    from sqlfix.compiler.library import CompiledFixture

    one = CompiledFixture(_rendered("a.sql", (("users", "alice", 7),)), (), ())
    two = CompiledFixture(_rendered("b.sql", (("users", "zed", 7), ("orders", "x", 7))), (), ())
    with pytest.raises(FixtureError, match=r"id\('users', 'zed'\) and id\('users', 'alice'\)"):
        check_id_collisions([one, two])
    check_id_collisions([one, CompiledFixture(_rendered("c.sql", (("orders", "x", 7),)), (), ())])


def test_importing_the_plugin_leaves_the_database_side_unloaded():
    # Every pytest run of a project with sqlfix installed imports the plugin.
    code = ("import sys, sqlfix.pytest_plugin.plugin; print(sorted(m for m in ("
            "'faker', 'sqlalchemy', 'psycopg', 'jinja2', 'sqlfix.server', 'asyncio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_names_are_normalised_so_a_file_loads_once(library):
    assert library.plan(["./users.sql", "users.sql"]).names == ("users.sql",)


def test_a_schema_file_cannot_be_loaded_as_a_fixture(library):
    with pytest.raises(FixtureNotFound, match="'schema.sql' is a schema file"):
        library.plan(["schema.sql"])


def test_a_file_that_is_not_utf8_is_named(library, tmp_path):
    (tmp_path / "latin1.sql").write_bytes("INSERT INTO t VALUES ('caf\xe9');\n".encode("latin-1"))
    with pytest.raises(FixtureError, match=r"latin1.sql:1:1: SQLF001 not valid UTF-8"):
        library.compile("latin1.sql")
    assert [f.code for f in library.check("latin1.sql")[1]] == ["SQLF001"]


# -- containment by resolved path (issue #8, input 5)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path.parent / f"{tmp_path.name}-outside"
    folder.mkdir()
    (folder / "secret.sql").write_text("DELETE FROM users;\n")
    return folder


def _escape_message(exc: pytest.ExceptionInfo[FixtureNotFound], outside: Path) -> str:
    message = str(exc.value)
    assert str((outside / "secret.sql").resolve()) in message  # where it really is
    assert "outside the fixtures directory" in message
    return message


def test_a_symlinked_file_leading_outside_is_refused(library, tmp_path, outside):
    (tmp_path / "link.sql").symlink_to(outside / "secret.sql")
    with pytest.raises(FixtureNotFound) as exc:
        library.plan(["link.sql"])
    assert str(tmp_path / "link.sql") in _escape_message(exc, outside)


def test_a_symlinked_folder_leading_outside_is_refused(library, tmp_path, outside):
    (tmp_path / "shared").symlink_to(outside, target_is_directory=True)
    with pytest.raises(FixtureNotFound) as exc:
        library.plan(["shared/secret.sql"])
    assert str(tmp_path / "shared" / "secret.sql") in _escape_message(exc, outside)


def test_a_requires_through_a_symlink_is_refused(library, tmp_path, outside):
    (tmp_path / "link.sql").symlink_to(outside / "secret.sql")
    (tmp_path / "orders.sql").write_text("-- requires: link.sql\nSELECT 1;\n")
    with pytest.raises(FixtureNotFound) as exc:
        library.plan(["orders.sql"])
    _escape_message(exc, outside)


def test_symlinks_that_stay_inside_are_fine(library, tmp_path):
    (tmp_path / "alias.sql").symlink_to(tmp_path / "users.sql")
    (tmp_path / "more").symlink_to(tmp_path / "billing", target_is_directory=True)
    names = library.plan(["alias.sql", "more/invoices.sql"]).names
    assert {"alias.sql", "more/invoices.sql"} <= set(names)


def test_a_schema_file_under_the_fixtures_dir_must_resolve_inside_it(tmp_path, outside):
    (tmp_path / "schema.sql").symlink_to(outside / "secret.sql")
    directory = FixtureDir(tmp_path, frozenset({tmp_path / "schema.sql"}))
    with pytest.raises(FixtureNotFound, match="schema file 'schema.sql'") as exc:
        directory.check_schema_files()
    _escape_message(exc, outside)
    # a schema file kept elsewhere (not under the fixtures directory) is the user's choice
    FixtureDir(tmp_path, frozenset({outside / "secret.sql"})).check_schema_files()


@pytest.mark.parametrize("name", ["a" * 5000 + ".sql", "d/" * 3000 + "x.sql", "é" * 300 + ".sql"])
def test_a_very_long_name_is_not_found_not_an_oserror(library, name):
    with pytest.raises(FixtureNotFound, match="not found in") as exc:
        library.plan([name])
    assert len(str(exc.value)) < 500


def test_a_byte_order_mark_is_ignored(library, tmp_path):
    (tmp_path / "bom.sql").write_bytes(b"\xef\xbb\xbf-- requires: users.sql\nSELECT {{ 1 }};\n")
    assert library.plan(["bom.sql"]).names == ("users.sql", "bom.sql")
    compiled = library.compile("bom.sql")
    assert compiled.rendered.sql.startswith("-- requires")
    assert compiled.locate(compiled.rendered.sql.index("SELECT")) == (2, 1)


@pytest.mark.parametrize(
    "text",
    [
        'SELECT "{{ x }}" FROM t;\n',
        'SELECT "col_{{ x }}" FROM t;\n',
        'SELECT U&"{{ x }}" FROM t;\n',
        'SELECT "a""{{ x }}" FROM t;\n',
        "SELECT '{{ x }}' FROM t;\n",
    ],
)
def test_placeholders_inside_quotes_or_quoted_identifiers_are_flagged(library, tmp_path, text):
    source = "{% set x = 'n' %}" + text
    (tmp_path / "q.sql").write_text(source)
    findings = [f for f in library.check("q.sql")[1] if f.code == "SQLF204"]
    assert [(f.line, f.col) for f in findings] == [(1, source.index("{{") + 1)]
    assert ("quoted identifier" in findings[0].message) == ('"' in text)


def test_placeholders_beside_quoted_identifiers_are_fine(library, tmp_path):
    (tmp_path / "q.sql").write_text('SELECT "é", {{ 1 }} AS "x" FROM t WHERE "a" = {{ 2 }};\n')
    assert not [f for f in library.check("q.sql")[1] if f.code == "SQLF204"]


def test_a_name_given_from_the_project_root_is_told_to_drop_the_folder(library):
    folder = library.directory.root.name
    with pytest.raises(FixtureNotFound) as caught:
        library.plan([f"{folder}/users.sql"])
    assert str(caught.value).endswith(
        "did you mean 'users.sql'? (names are relative to the fixtures directory)")


def test_a_missing_fixtures_directory_names_both_places_to_set_it(tmp_path):
    # pytest.ini's users set sqlfix_fixtures_dir; pyproject.toml's set fixtures_dir
    missing = FixtureLibrary(FixtureDir(tmp_path / "nowhere", frozenset()))
    with pytest.raises(FixtureNotFound) as caught:
        missing.plan(["users.sql"])
    message = str(caught.value)
    assert "nowhere does not exist" in message
    assert "fixtures_dir in [tool.sqlfix] or sqlfix_fixtures_dir in pytest's" in message


@pytest.mark.parametrize("name", ["a\nb.sql", "a\rb.sql", "tab\there.sql", "esc\x1b[31m.sql",
                                  "del\x7f.sql"])
def test_a_fixture_name_with_a_control_character_is_refused(tmp_path, name):
    (tmp_path / name).write_text("SELECT 1;\n")
    with pytest.raises(FixtureNotFound, match="holds a control character"):
        FixtureDir(tmp_path).resolve(name)


def test_a_name_without_its_suffix_is_offered_the_file(library):
    # "ok" for ok.sql is below difflib's cutoff: no suggestion at all before
    with pytest.raises(FixtureNotFound) as caught:
        library.plan(["users"])
    assert str(caught.value).endswith("did you mean 'users.sql'?")
