"""A COPY statement's column list and format are read by PostgreSQL's parser (pglast),
not split on commas: pg_dump quotes a column named `a,b` and the rows have two fields."""

from __future__ import annotations

import pytest

from sqlfix.compiler.copy_blocks import COPY_DATA, find


@pytest.mark.parametrize(("statement", "row", "columns"), [
    ('COPY public.t ("a,b", c) FROM stdin;', "1\t2", ("a,b", "c")),
    ('COPY public.t ("x""y", "Z") FROM stdin;', "1\t2", ('x"y', "Z")),
    ('COPY "Sales Dept"."Order Items" (id, "select") FROM stdin;', "1\t2", ("id", "select")),
    ("COPY t (a /* the key */, b) FROM stdin;", "1\t2", ("a", "b")),
])
def test_quoted_column_names_are_read_as_postgresql_reads_them(statement, row, columns):
    found = find(f"{statement}\n{row}\n\\.\n")
    assert found.violations == ()
    assert found.blocks[0].columns == columns and found.blocks[0].text_format


def test_the_field_count_uses_the_real_column_count():
    found = find('COPY public.t ("a,b", c) FROM stdin;\n1\t2\t3\n\\.\n')
    assert [v.code for v in found.violations] == [COPY_DATA]
    assert "names 2" in found.violations[0].message


@pytest.mark.parametrize("options", [
    "WITH (FORMAT csv)", "WITH CSV", "(DELIMITER '|')", "DELIMITER ','", "(FORMAT binary)",
])
def test_rows_not_split_by_tabs_are_not_counted(options):
    found = find(f"COPY t (a, b, c) FROM stdin {options};\n1,2\n\\.\n")
    assert found.violations == () and not found.blocks[0].text_format


@pytest.mark.parametrize("options", ["", "(FORMAT text)", "WITH (FORMAT TEXT, NULL 'x')"])
def test_the_text_format_is_counted(options):
    found = find(f"COPY t (a, b, c) FROM stdin {options};\n1\t2\n\\.\n")
    assert [v.code for v in found.violations] == [COPY_DATA]
    assert found.blocks[0].text_format
