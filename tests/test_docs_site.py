"""The docs site's configuration agrees with the package and holds every page."""

from __future__ import annotations

import re

from helpers import REPO

import sqlfix
from sqlfix.cli.rules import RULES

MKDOCS = (REPO / "mkdocs.yml").read_text(encoding="utf-8")


def test_the_printed_links_use_the_sites_base_url() -> None:
    site_url = re.search(r"^site_url:\s*(\S+)", MKDOCS, re.MULTILINE)
    assert site_url is not None and site_url.group(1) == sqlfix.DOCS_URL
    rule = RULES["SQLF501"]
    assert rule.url == f"{sqlfix.DOCS_URL}lint/#{rule.anchor}"


def test_every_page_is_in_the_nav_and_on_the_index() -> None:
    nav = set(re.findall(r"^\s+- (?:[^:\n]+: )?([\w-]+\.md)\s*$", MKDOCS, re.MULTILINE))
    pages = {p.name for p in (REPO / "docs").glob("*.md")}
    assert pages == nav
    index = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    assert {p for p in pages if f"]({p})" not in index} == {"index.md"}
