"""The docs site's configuration agrees with the package and holds every page."""

from __future__ import annotations

import re

import pytest
from helpers import REPO

import sqlfix
from sqlfix.cli.rules import RULES

MKDOCS = (REPO / "mkdocs.yml").read_text(encoding="utf-8")


def test_the_printed_links_use_the_sites_base_url() -> None:
    site_url = re.search(r"^site_url:\s*(\S+)", MKDOCS, re.MULTILINE)
    assert site_url is not None and site_url.group(1) == sqlfix.DOCS_URL
    rule = RULES["SQLF501"]
    assert rule.url == f"{sqlfix.DOCS_URL}lint/#{rule.anchor}"


def test_no_message_points_at_a_docs_file_of_the_repository() -> None:
    """What sqlfix prints links to the site (sqlfix.docs_url), not to `docs/x.md`, a path
    that exists in a clone of the repository only. Docstrings may name the files."""
    import ast

    found = []
    for path in sorted((REPO / "sqlfix").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                                    | ast.AsyncFunctionDef)
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings and re.search(r"docs/[\w-]+\.md", node.value)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value[:60]!r}")
    assert found == []


def test_every_page_is_in_the_nav_and_on_the_index() -> None:
    nav = set(re.findall(r"^\s+- (?:[^:\n]+: )?([\w-]+\.md)\s*$", MKDOCS, re.MULTILINE))
    pages = {p.name for p in (REPO / "docs").glob("*.md")}
    assert pages == nav
    index = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    assert {p for p in pages if f"]({p})" not in index} == {"index.md"}


def test_link_anchors_are_checked_by_the_strict_build() -> None:
    """`mkdocs build --strict` (CI) fails on a link to a heading that does not exist."""
    links = re.search(r"^validation:\n  links:\n((?:    .*\n)+)", MKDOCS, re.MULTILINE)
    assert links is not None
    assert {"not_found: warn", "anchors: warn"} <= {line.strip() for line in
                                                    links.group(1).splitlines()}
    assert re.search(r"^strict: true$", MKDOCS, re.MULTILINE)


# The configuration errors docs/configuration.md shows, made by the real code: (what
# [tool.sqlfix] holds, the sqlfix_* ini options of pytest.ini), with the project in
# /home/me/myapp as the page has it.
CONFIG_ERRORS = [
    ('fixture_dir = "x"', None),
    ('allow_any_database = "yes"', None),
    ("seed = 1.5", None),
    ('now = "yesterday"', None),
    ("now = 2024-06-01", None),
    ('server_version = "latest"', None),
    ("", {"server_version": "15.4"}),
    ("server_version = 12", None),
    ("server_settings = { port = 5 }", None),
    ('schema = ["fixtures_sql/missing.sql"]', None),
    ("", {"schema": ["fixtures_sql/missing.sql"]}),
    ("", {"allow_any_database": "maybe"}),
    ("", {"server_settings": ["search_path = 'a, b"]}),
    ("", {"server_settings": ["port = 5"]}),
]


@pytest.mark.parametrize(("table", "ini"), CONFIG_ERRORS)
def test_the_configuration_errors_on_the_page_are_the_real_messages(tmp_path, table, ini) -> None:
    from sqlfix.config import ini_values, load_settings
    from sqlfix.errors import ConfigError

    (tmp_path / "pyproject.toml").write_text(f"[tool.sqlfix]\n{table}\n", encoding="utf-8")
    where = str(tmp_path / "pytest.ini")
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, ini=ini_values(ini or {}, where), ini_file=where)
    line = f"ERROR: sqlfix: {info.value}".replace(str(tmp_path), "/home/me/myapp")
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert line in page.splitlines()


def test_each_commands_help_links_to_its_section_of_the_cli_page(capsys) -> None:
    from sqlfix.cli.main import COMMAND_ANCHORS, main

    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    # MkDocs' anchors (toc's slugify): lowercase words, joined by hyphens
    anchors = {re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower())
               for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    for command, anchor in COMMAND_ANCHORS.items():
        assert anchor in anchors, (anchor, sorted(anchors))
        assert main([command, "--help"]) == 0
        assert f"docs: {sqlfix.docs_url('cli', anchor)}" in capsys.readouterr().out
