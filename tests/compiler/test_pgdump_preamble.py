"""pg_dump's preamble, \\restrict lines and setval() in a fixture: the exact forms only.

A raw `pg_dump --data-only` file is a fixture unchanged (pgdump.py); anything that is
not what pg_dump writes keeps the guard's error. Pure: no database.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import DATA

from sqlfix.compiler import pgdump
from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.library import FixtureLibrary
from sqlfix.errors import FixtureError

PGDUMP = DATA / "pgdump"
DUMPS = ("data_copy.sql", "data_inserts.sql", "data_copy_pg18.sql", "data_inserts_pg18.sql")
KEY = "mkpyqA4BweseOwf4Mx94LNL6f5fUCTgx9TPUVC6T6Qdvq2hQwQkg7B5rdp7LU5j"
HEADER = "--\n-- PostgreSQL database dump\n--\n\n"


def check(tmp_path: Path, text: str, name: str = "f.sql"):
    (tmp_path / name).write_text(text)
    return FixtureLibrary(FixtureDir(tmp_path)).check(name)


def codes(findings) -> list[tuple[int, int, str]]:
    return [(f.line, f.col, f.code) for f in findings]


@pytest.mark.parametrize("name", DUMPS)
def test_a_raw_data_dump_is_a_fixture_without_findings(tmp_path, name):
    shutil.copy(PGDUMP / name, tmp_path / name)
    compiled, findings = FixtureLibrary(FixtureDir(tmp_path)).check(name)
    assert findings == []
    assert compiled is not None
    texts = [s.text for s in compiled.statements]
    # nothing of the preamble is loaded; setval() is (the boundary puts sequences back)
    assert not any(t.startswith("SET ") or "set_config" in t for t in texts)
    assert sum("pg_catalog.setval(" in t for t in texts) == 3
    assert not any("restrict" in t for t in texts)
    # the row holding `{{ Braces }}` is data: a dump is not a template
    if "copy" in name:
        assert any("Cy {{ Braces }}" in b.data(compiled.rendered.sql) for b in compiled.copies)
        assert len(compiled.copies) == 6
    else:
        assert any("'Cy {{ Braces }}'" in t for t in texts)
    assert compiled.rendered.sql == (PGDUMP / name).read_text()  # render keeps the text


def test_the_newer_dump_has_the_newer_preamble():
    text = (PGDUMP / "data_copy_pg18.sql").read_text()
    assert "SET transaction_timeout = 0;" in text and "\\restrict " in text
    assert "Dumped by pg_dump version 18" in text


@pytest.mark.parametrize("line, code", [
    ("SET statement_timeout = 5;", "SQLF103"),  # another value
    ("SET client_encoding = 'LATIN1';", "SQLF103"),
    ("SET standard_conforming_strings = off;", "SQLF103"),
    ("SET row_security = on;", "SQLF103"),
    ("set statement_timeout = 0;", "SQLF103"),  # not as pg_dump writes it
    ("SET  lock_timeout = 0;", "SQLF103"),
    ("SET session_replication_role = replica;", "SQLF103"),  # another setting
    ("SET search_path = '';", "SQLF103"),
    ("SET SESSION statement_timeout = 0;", "SQLF103"),
    ("SET LOCAL statement_timeout = 0;", "SQLF103"),
    ("SELECT pg_catalog.set_config('search_path', 'public', false);", "SQLF104"),
    ("SELECT pg_catalog.set_config('statement_timeout', '0', false);", "SQLF104"),
    ("SELECT pg_catalog.set_config('role', 'postgres', true);", "SQLF104"),
    ("SELECT set_config('search_path', '', false);", "SQLF104"),
    ("SELECT pg_catalog.set_config('search_path', '', false), 1;", "SQLF104"),
])
def test_only_pg_dumps_exact_preamble_is_accepted(tmp_path, line, code):
    text = HEADER + "SET statement_timeout = 0;\n" + line + "\nINSERT INTO t VALUES (1);\n"
    _, findings = check(tmp_path, text)
    assert [(f.line, f.code) for f in findings] == [(6, code)]


def test_the_preamble_is_accepted_in_a_file_without_the_header_too(tmp_path):
    # a dump whose header comment was cut: the statements are still pg_dump's own
    compiled, findings = check(tmp_path, "SET statement_timeout = 0;\nINSERT INTO t VALUES (1);\n")
    assert findings == [] and compiled is not None
    assert [s.text for s in compiled.statements] == ["INSERT INTO t VALUES (1);"]


def test_a_file_without_the_header_is_still_a_template(tmp_path):
    _, findings = check(tmp_path, "INSERT INTO t VALUES ({{ nope }});\n")
    assert [f.code for f in findings] == ["SQLF202"]


def test_restrict_lines_at_top_level_are_no_ops(tmp_path):
    text = (f"\\restrict {KEY}\nINSERT INTO t VALUES (1);\n\\unrestrict {KEY}\n"
            "INSERT INTO t VALUES (2);\n")
    compiled, findings = check(tmp_path, text)
    assert findings == [] and compiled is not None
    assert [s.text for s in compiled.statements] == ["INSERT INTO t VALUES (1);",
                                                     "INSERT INTO t VALUES (2);"]


@pytest.mark.parametrize("line", [
    "\\restrict bad-key!",  # pg_dump's keys are alphanumeric
    "\\restrict",
    "  \\restrict abc",
    "\\restrict abc def",
    "\\i other.sql",
    "\\connect other",
])
def test_other_meta_commands_stay_refused(tmp_path, line):
    _, findings = check(tmp_path, f"INSERT INTO t VALUES (1);\n{line}\nINSERT INTO t VALUES (2);\n")
    assert (2, "SQLF103") in [(f.line, f.code) for f in findings]


def test_a_restrict_line_inside_a_statement_is_refused(tmp_path):
    _, findings = check(tmp_path, f"INSERT INTO t\n\\restrict {KEY}\nVALUES (1);\n")
    assert [(f.line, f.code) for f in findings] == [(2, "SQLF103")]


def test_a_restrict_line_in_a_string_or_function_body_is_data(tmp_path):
    body = f"$$\nBEGIN\n\\restrict {KEY}\nEND;\n$$"
    text = (f"INSERT INTO code (src) VALUES ({body});\n"
            f"INSERT INTO code (src) VALUES ('one\n\\unrestrict {KEY}\ntwo');\n"
            f"/* a comment\n\\restrict {KEY}\n*/\nINSERT INTO code (src) VALUES ('x');\n")
    compiled, findings = check(tmp_path, text)
    assert findings == [] and compiled is not None
    texts = [s.text for s in compiled.statements]
    assert texts[0] == f"INSERT INTO code (src) VALUES ({body});"
    assert f"\\unrestrict {KEY}" in texts[1]
    assert len(texts) == 3


def test_a_restrict_line_in_copy_rows_is_a_row(tmp_path):
    text = (f"\\restrict {KEY}\nCOPY public.code (src) FROM stdin;\n\\restrict {KEY}\n"
            f"plain\n\\.\n\\unrestrict {KEY}\n")
    compiled, findings = check(tmp_path, text)
    assert findings == [] and compiled is not None
    (block,) = compiled.copies
    assert block.data(compiled.rendered.sql) == f"\\restrict {KEY}\nplain\n"


def test_a_finding_after_the_preamble_points_at_its_line_and_column(tmp_path):
    dump = (PGDUMP / "data_inserts.sql").read_text()
    lines = dump.splitlines(keepends=True)
    at = next(i for i, t in enumerate(lines) if t.startswith("INSERT INTO public.product"))
    lines.insert(at, "INSERT INTO public.product VALUES (7, 'X', 1.0), (8, 'Y', random());\n")
    lines.insert(at, "  DELETE FROM public.product; DROP TABLE public.product;\n")
    _, findings = check(tmp_path, "".join(lines), "dump.sql")
    assert codes(findings) == [(at + 1, 31, "SQLF101"), (at + 2, 59, "SQLF501")]
    assert findings[0].path.endswith("dump.sql")


def test_a_bad_copy_row_after_the_preamble_points_at_its_line(tmp_path):
    dump = (PGDUMP / "data_copy_pg18.sql").read_text()
    lines = dump.splitlines(keepends=True)
    at = next(i for i, t in enumerate(lines) if t.startswith("1\tMUG")) + 1
    lines.insert(at, "3\tTOO\tMANY\tFIELDS\n")
    _, findings = check(tmp_path, "".join(lines), "dump.sql")
    assert codes(findings) == [(at + 1, 1, "SQLF405")]


def test_a_failing_fixture_lists_every_error_but_not_the_preamble(tmp_path):
    dump = (PGDUMP / "data_copy.sql").read_text().replace(
        "SET row_security = off;", "SET row_security = off;\nSET work_mem = '1GB';")
    (tmp_path / "dump.sql").write_text(dump)
    with pytest.raises(FixtureError) as caught:
        FixtureLibrary(FixtureDir(tmp_path)).compile("dump.sql")
    assert [(f.line, f.code) for f in caught.value.findings] == [(20, "SQLF103")]


def test_is_dump_reads_the_header_only():
    assert pgdump.is_dump(HEADER)
    assert pgdump.is_dump("--\r\n-- PostgreSQL database dump\r\n--\r\n")
    assert not pgdump.is_dump("-- PostgreSQL database dump\n")
    assert not pgdump.is_dump("INSERT INTO t VALUES (1);\n" + HEADER)
