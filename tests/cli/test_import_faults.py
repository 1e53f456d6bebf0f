"""`python -m sqlfix import` on hostile dumps: each fault a reviewer found, and variants."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlfix.cli.main import main


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with no schema: import writes fixtures without reading a database."""
    (tmp_path / "pyproject.toml").write_text("[tool.sqlfix]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQLFIX_DSN", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("first", [
    "INSERT INTO public.customer VALUES (1, 'a@b');\n",
    "COPY public.customer (id, email) FROM stdin;\n1\ta@b\n\\.\n",
])
def test_a_byte_order_mark_does_not_drop_the_first_statement(
    bare: Path, capsys: pytest.CaptureFixture[str], first: str
) -> None:
    (bare / "dump.sql").write_text("\ufeff" + first + "INSERT INTO public.other VALUES (2);\n",
                                   encoding="utf-8")
    code, out, err = run(capsys, "import", "dump.sql")
    assert (code, err) == (0, "")
    assert "wrote fixtures_sql/customer.sql: 1 row(s)" in out
    text = (bare / "fixtures_sql" / "customer.sql").read_text(encoding="utf-8")
    assert "a@b" in text and "\ufeff" not in text
    assert "other statement" not in out


ODD_SCHEMA = """\
CREATE SCHEMA "s.x";
CREATE SCHEMA s;
CREATE TABLE public."Order Items" (a integer);
CREATE TABLE public."../../../outside" (a integer);
CREATE TABLE public."a/b" (a integer);
CREATE TABLE public.a_b (a integer);
CREATE TABLE public."x""y" (a integer);
CREATE TABLE "s.x".t (a integer);
CREATE TABLE s."x.t" (a integer);
CREATE TABLE public.".hidden" (a integer);
"""
ODD_DUMP = """\
COPY public."Order Items" (a) FROM stdin;
1
\\.
COPY public."../../../outside" (a) FROM stdin;
2
\\.
INSERT INTO public."a/b" VALUES (3);
INSERT INTO public.a_b VALUES (4);
COPY public."x""y" (a) FROM stdin;
5
\\.
INSERT INTO "s.x".t VALUES (6);
COPY s."x.t" (a) FROM stdin;
7
\\.
INSERT INTO public.".hidden" (a) VALUES (8);
"""


@pytest.mark.parametrize(("written", "ident"), [
    ('public."Order Items"', ("public", "Order Items")),
    ('"s.x"."t"', ("s.x", "t")),
    ('s."x.t"', ("s", "x.t")),
    ('public."x""y"', ("public", 'x"y')),
    ('public . "Spaced"', ("public", "Spaced")),
    ("Plain", ("public", "plain")),
])
@pytest.mark.parametrize("form", ["COPY", "INSERT"])
def test_quoted_table_names_are_read_as_postgresql_reads_them(
    written: str, ident: tuple[str, str], form: str
) -> None:
    from sqlfix.cli.importer import parse_dump

    dump = (f"COPY {written} (a) FROM stdin;\n1\n\\.\n" if form == "COPY"
            else f"INSERT INTO {written} (a) VALUES (1);\n")
    assert list(parse_dump(dump).tables) == [ident]


def test_odd_table_names_become_safe_unique_files_inside_out_that_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_dsn: str,
    capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "schema.sql").write_text(ODD_SCHEMA)
    (project / "pyproject.toml").write_text('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    (project / "dump.sql").write_text(ODD_DUMP)
    monkeypatch.chdir(project)
    monkeypatch.delenv("SQLFIX_DSN", raising=False)
    code, out, err = run(capsys, "import", "dump.sql", "--dsn", fresh_dsn)
    assert (code, err) == (0, ""), err
    files = sorted(p.name for p in (project / "fixtures_sql").iterdir())
    assert files == sorted([
        "Order Items.sql", "_._.._.._outside.sql", "a_b.sql", "a_b-2.sql", "x_y.sql",
        "s.x.t.sql", "s.x.t-2.sql", "_hidden.sql"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # nothing escaped --out
    assert "wrote fixtures_sql/Order Items.sql: 1 row(s), COPY" in out
    code, out, _ = run(capsys, "check", "--dsn", fresh_dsn)
    assert code == 0, out
    assert out.splitlines()[-1].startswith("All 8 fixtures OK")


def test_a_symlink_in_out_does_not_lead_the_import_outside(
    bare: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (bare / "dump.sql").write_text("INSERT INTO public.t VALUES (1);\n")
    (bare / "fixtures_sql").mkdir()
    (bare / "fixtures_sql" / "t.sql").symlink_to(tmp_path.parent / "elsewhere.sql")
    code, _, err = run(capsys, "import", "dump.sql", "--force")
    assert code == 2 and "would be written outside" in err
    assert not (tmp_path.parent / "elsewhere.sql").exists()


TRICKY = ["{% endraw %}x", "a{%endraw%}b", "{%- endraw -%}", "{{ 1 }}{% raw %}", "{# c #}{%", "{{{%%}}}"]


@pytest.mark.parametrize("value", TRICKY)
@pytest.mark.parametrize("form", ["COPY", "INSERT"])
def test_data_that_looks_like_endraw_renders_to_the_dump_s_own_rows(
    bare: Path, capsys: pytest.CaptureFixture[str], value: str, form: str
) -> None:
    rows = (f"COPY public.note (id, body) FROM stdin;\n1\t{value}\n\\.\n" if form == "COPY"
            else f"INSERT INTO public.note (id, body) VALUES (1, '{value}');\n")
    (bare / "dump.sql").write_text(rows)
    assert run(capsys, "import", "dump.sql")[0] == 0
    code, out, err = run(capsys, "render", "note.sql")
    assert (code, err) == (0, "")
    assert rows in out  # rendered, the rows are the dump's, byte for byte


@pytest.mark.parametrize("value", TRICKY)
def test_a_faked_table_keeps_its_other_values_literal(
    bare: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    pytest.importorskip("faker")
    (bare / "dump.sql").write_text(
        f"COPY public.note (id, email, body) FROM stdin;\n1\tann@example.com\t{value}\n\\.\n")
    assert run(capsys, "import", "dump.sql", "--fake", "note.email=email")[0] == 0
    code, out, err = run(capsys, "render", "note.sql")
    assert (code, err) == (0, "")
    line = next(x for x in out.splitlines() if x.startswith("INSERT"))
    assert line.endswith(f", '{value}');") and "ann@example.com" not in line


FAKE_DUMP = """\
COPY public.customer (id, email, full_name) FROM stdin;
1\tann@example.com\tAnn
\\.
INSERT INTO public.note (id, body) VALUES (1, 'x');
"""


@pytest.mark.parametrize(("spec", "message"), [
    ("customer.emial=email", "--fake names column(s) emial that public.customer does not have; "
                             "its columns: id, email, full_name"),
    ("public.note.Body=email", "--fake names column(s) Body that public.note does not have; "
                               "its columns: id, body"),
    ("customer.email=no_such_method", "--fake public.customer.email=no_such_method: SQLF202 "
                                      "undefined name:"),
    ("customer.email=seed_instance", "--fake public.customer.email=seed_instance: SQLF203 not "
                                     "allowed in a fixture template"),
    ("customer.email=random", "--fake public.customer.email=random: SQLF203"),
])
def test_fake_refuses_unknown_columns_and_methods_before_writing(
    bare: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    pytest.importorskip("faker")
    (bare / "dump.sql").write_text(FAKE_DUMP)
    code, _, err = run(capsys, "import", "dump.sql", "--fake", spec)
    assert code == 2 and message in err, err
    assert not (bare / "fixtures_sql").exists() or not any((bare / "fixtures_sql").iterdir())


def test_fake_checks_columns_against_the_schema_when_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_dsn: str,
    capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "schema.sql").write_text(
        "CREATE TABLE customer (id int, email text, full_name text);\n"
        "CREATE TABLE note (id int, body text);\n")
    (tmp_path / "pyproject.toml").write_text('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    (tmp_path / "dump.sql").write_text("INSERT INTO public.customer VALUES (1, 'a@b', 'A');\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQLFIX_DSN", raising=False)
    code, _, err = run(capsys, "import", "dump.sql", "--dsn", fresh_dsn, "--fake", "customer.emial=email")
    assert code == 2 and "its columns: id, email, full_name" in err, err
    code, _, err = run(capsys, "import", "dump.sql", "--dsn", fresh_dsn, "--fake", "customer.email=email")
    assert (code, err) == (0, "")


def test_faked_copy_rows_write_numbers_bare_in_numeric_columns_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_dsn: str,
    capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("faker")
    (tmp_path / "schema.sql").write_text(
        "CREATE TABLE customer (id bigint, email text, code text, score numeric, "
        "ratio double precision, cash money);\n")
    (tmp_path / "pyproject.toml").write_text('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    (tmp_path / "dump.sql").write_text(
        "COPY public.customer (id, email, code, score, ratio, cash) FROM stdin;\n"
        "1\ta@b\t007\t-1.50\tNaN\t$1.00\n"
        "2\tc@d\t\\N\t1e3\t-Infinity\t\\N\n\\.\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQLFIX_DSN", raising=False)
    code, _, err = run(capsys, "import", "dump.sql", "--dsn", fresh_dsn, "--fake", "customer.email=email")
    assert (code, err) == (0, "")
    text = (tmp_path / "fixtures_sql" / "customer.sql").read_text()
    assert "VALUES (1, {{ fake.email() }}, '007', -1.50, 'NaN', '$1.00');" in text
    assert "VALUES (2, {{ fake.email() }}, NULL, 1e3, '-Infinity', NULL);" in text
    code, out, _ = run(capsys, "check", "--dsn", fresh_dsn)
    assert code == 0, out


@pytest.mark.parametrize(("encoding", "codec", "value"), [
    ("LATIN1", "latin-1", "café"), ("WIN1252", "cp1252", "5 €"), ("UTF8", "utf-8", "naïve")])
def test_a_dump_in_its_declared_client_encoding_is_written_as_utf8(
    bare: Path, capsys: pytest.CaptureFixture[str], encoding: str, codec: str, value: str
) -> None:
    dump = (f"SET client_encoding = '{encoding}';\n"
            f"COPY public.t (id, s) FROM stdin;\n1\t{value}\n\\.\n")
    (bare / "dump.sql").write_bytes(dump.encode(codec))
    code, _, err = run(capsys, "import", "dump.sql")
    assert (code, err) == (0, "")
    assert f"1\t{value}\n" in (bare / "fixtures_sql" / "t.sql").read_text(encoding="utf-8")


def test_undecodable_dump_says_how_to_dump_it_again(
    bare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (bare / "dump.sql").write_bytes(b"COPY public.t (s) FROM stdin;\n\xff\xfe\n\\.\n")
    code, _, err = run(capsys, "import", "dump.sql")
    assert code == 2 and "cannot read the dump dump.sql" in err
    assert "(its client_encoding: not set); dump it again with pg_dump -E UTF8" in err


def test_fake_without_any_column_names_says_where_to_get_them(
    bare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("faker")
    (bare / "dump.sql").write_text("INSERT INTO public.a VALUES (1);\n"
                                   "INSERT INTO public.t VALUES (1, 'a@b');\n")
    code, _, err = run(capsys, "import", "dump.sql", "--fake", "t.email=email")
    assert code == 2 and "--fake on public.t needs its columns" in err
    assert "pg_dump --column-inserts" in err
    assert not (bare / "fixtures_sql").exists()  # refused before anything was written


def test_fake_takes_quoted_table_and_column_names(
    bare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("faker")
    (bare / "dump.sql").write_text(
        'COPY public."Order Items" (id, "E Mail") FROM stdin;\n1\tann@example.com\n\\.\n')
    code, out, err = run(capsys, "import", "dump.sql", "--fake", '"Order Items"."E Mail"=email')
    assert (code, err) == (0, ""), err
    text = (bare / "fixtures_sql" / "Order Items.sql").read_text()
    # no schema: the id cannot be known numeric and stays quoted
    assert """INSERT INTO public."Order Items" (id, "E Mail") VALUES ('1', {{ fake.email() }});""" in text
    code, out, err = run(capsys, "render", "Order Items.sql")
    assert code == 0 and "ann@example.com" not in out and "@" in out


TWO_TABLES = """\
COPY public."Customer" (id, email) FROM stdin;
1\ta@b
\\.
COPY sales.orders (id) FROM stdin;
7
\\.
"""


@pytest.mark.parametrize("out", ["afile", "afile/sub"])
def test_out_that_is_a_file_is_a_usage_error_not_a_traceback(
    bare: Path, capsys: pytest.CaptureFixture[str], out: str
) -> None:
    (bare / "dump.sql").write_text(TWO_TABLES)
    (bare / "afile").write_text("mine\n")
    code, _, err = run(capsys, "import", "dump.sql", "--out", out)
    assert code == 2 and "internal error" not in err and "Traceback" not in err, err
    assert "--out" in err and out in err, err
    assert (bare / "afile").read_text() == "mine\n"


@pytest.mark.parametrize("names", ["nosuch", "orders,nosuch", "Customer", "public.orders"])
def test_tables_that_name_no_table_of_the_dump_are_an_error_listing_its_tables(
    bare: Path, capsys: pytest.CaptureFixture[str], names: str
) -> None:
    (bare / "dump.sql").write_text(TWO_TABLES)
    code, out, err = run(capsys, "import", "dump.sql", "--tables", names)
    assert code == 2 and "wrote" not in out, (out, err)
    assert 'its tables: public."Customer", sales.orders' in err, err
    assert not (bare / "fixtures_sql").exists()


@pytest.mark.parametrize("names", [",,", " ", ", ,"])
def test_tables_that_name_nothing_is_a_usage_error_not_every_table(
    bare: Path, capsys: pytest.CaptureFixture[str], names: str
) -> None:
    (bare / "dump.sql").write_text(TWO_TABLES)
    code, out, err = run(capsys, "import", "dump.sql", "--tables", names)
    assert code == 2 and "--tables names no table" in err and "wrote" not in out, (out, err)
    assert not (bare / "fixtures_sql").exists()


@pytest.mark.parametrize(("names", "written"), [
    ('"Customer"', ["Customer.sql"]),
    ('public."Customer"', ["Customer.sql"]),
    ("orders", ["sales.orders.sql"]),  # unqualified: any schema
    ('SALES.Orders,"Customer"', ["Customer.sql", "sales.orders.sql"]),
])
def test_tables_reads_names_as_sql_as_fake_does(
    bare: Path, capsys: pytest.CaptureFixture[str], names: str, written: list[str]
) -> None:
    (bare / "dump.sql").write_text(TWO_TABLES)
    code, _, err = run(capsys, "import", "dump.sql", "--tables", names)
    assert (code, err) == (0, "")
    assert sorted(p.name for p in (bare / "fixtures_sql").iterdir()) == written


@pytest.mark.parametrize(("dump", "where", "what"), [
    # cut short: the last block has no `\.` (pg_dump stopped, disk full, `head`)
    ("COPY public.a (id, b) FROM stdin;\n1\tx\n\\.\nCOPY public.c (id) FROM stdin;\n1\n2\n",
     "dump.sql:4:1: SQLF405", "no end"),
    ("COPY public.a (id, b) FROM stdin;\n1\tx\n2\n\\.\n", "dump.sql:3:1: SQLF405", "1 field(s)"),
    ("COPY public.a (id, b) FROM stdin;\r\n1\tx\ty\r\n\\.\r\n", "dump.sql:2:1: SQLF405", "3 field(s)"),
])
def test_a_damaged_copy_block_is_an_error_and_nothing_is_written(
    bare: Path, capsys: pytest.CaptureFixture[str], dump: str, where: str, what: str
) -> None:
    (bare / "dump.sql").write_bytes(dump.encode())
    code, out, err = run(capsys, "import", "dump.sql")
    assert code == 2 and where in err and what in err and "damaged" in err, (out, err)
    assert not (bare / "fixtures_sql").exists()


def test_fake_refuses_copy_rows_it_cannot_split(
    bare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("faker")
    (bare / "dump.sql").write_text(
        "COPY public.a (id, email) FROM stdin WITH (FORMAT csv);\n1,\"x,y\"\n\\.\n")
    code, _, err = run(capsys, "import", "dump.sql", "--fake", "a.email=email")
    assert code == 2 and "tab-separated" in err, err
    code, _, err = run(capsys, "import", "dump.sql")  # unfaked it stays COPY: fine
    assert (code, err) == (0, "")


CYCLE_SCHEMA = """\
CREATE TABLE dept (id int PRIMARY KEY, name text, manager_id int);
CREATE TABLE emp (id int PRIMARY KEY, name text, dept_id int REFERENCES dept (id));
ALTER TABLE dept ADD FOREIGN KEY (manager_id) REFERENCES emp (id) DEFERRABLE INITIALLY DEFERRED;
"""
CYCLE_DUMP = """\
COPY public.dept (id, name, manager_id) FROM stdin;
1\tR&D\t1
\\.
COPY public.emp (id, name, dept_id) FROM stdin;
1\tboss\t1
\\.
"""


def test_a_foreign_key_cycle_is_broken_at_its_deferrable_key_so_the_fixture_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_dsn: str,
    capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "schema.sql").write_text(CYCLE_SCHEMA)
    (tmp_path / "pyproject.toml").write_text('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    (tmp_path / "dump.sql").write_text(CYCLE_DUMP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQLFIX_DSN", raising=False)
    code, out, err = run(capsys, "import", "dump.sql", "--dsn", fresh_dsn)
    assert (code, err) == (0, "")
    # emp's key to dept is immediate: emp requires dept; dept's key to emp is deferrable
    assert "wrote fixtures_sql/emp.sql: 1 row(s), COPY; requires dept.sql" in out, out
    assert "wrote fixtures_sql/dept.sql: 1 row(s), COPY\n" in out, out
    assert "dept.sql does not require emp.sql (its key to it is deferrable" in out, out
    code, out, err = run(capsys, "check", "fixtures_sql/emp.sql", "--dsn", fresh_dsn)
    assert code == 0 and "OK    emp.sql" in out and "dept +1, emp +1" in out, (out, err)


@pytest.mark.parametrize("dump", [
    "COPY public.customer (id, email) FROM stdin;\n1\ta@b\n\\.\n",
    "INSERT INTO public.customer (id, email) VALUES (1, 'a@b');\n",
])
def test_fake_of_a_column_the_dump_does_not_hold_is_an_error_not_a_false_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_dsn: str,
    capsys: pytest.CaptureFixture[str], dump: str
) -> None:
    pytest.importorskip("faker")
    (tmp_path / "schema.sql").write_text(
        "CREATE TABLE customer (id int, email text,"
        " shout text GENERATED ALWAYS AS (upper(email)) STORED);\n")
    (tmp_path / "pyproject.toml").write_text('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    (tmp_path / "dump.sql").write_text(dump)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQLFIX_DSN", raising=False)
    code, out, err = run(capsys, "import", "dump.sql", "--dsn", fresh_dsn, "--fake", "customer.shout=name")
    assert code == 2 and "do not hold" in err and "its rows hold: id, email" in err, (out, err)
    assert not (tmp_path / "fixtures_sql").exists()
    code, _, err = run(capsys, "import", "dump.sql", "--dsn", fresh_dsn, "--fake", "customer.email=email")
    assert (code, err) == (0, "")


OLD_DUMP = """\
-- Dumped by pg_dump version 9.6.24
SET statement_timeout = 0;
SET search_path = sales, pg_catalog;

COPY orders (id, note) FROM stdin;
1\tfirst
\\.

INSERT INTO "Order Lines" VALUES (1, 2);

SET search_path = public, pg_catalog;

COPY product (id) FROM stdin;
5
\\.

SELECT pg_catalog.setval('product_id_seq', 5, true);
"""


def test_an_old_dump_s_search_path_qualifies_its_table_names(
    bare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pg_dump before 10.3 wrote unqualified names after `SET search_path = X, pg_catalog;`:
    # the fixtures name the schema, since the test's search_path is not the dump's
    (bare / "dump.sql").write_text(OLD_DUMP)
    code, out, err = run(capsys, "import", "dump.sql")
    assert (code, err) == (0, ""), err
    fixtures = bare / "fixtures_sql"
    assert sorted(p.name for p in fixtures.iterdir()) == [
        "product.sql", "sales.Order Lines.sql", "sales.orders.sql"]
    assert "COPY sales.orders (id, note) FROM stdin;\n1\tfirst\n" in (fixtures / "sales.orders.sql").read_text()
    assert 'INSERT INTO sales."Order Lines" VALUES (1, 2);' in (fixtures / "sales.Order Lines.sql").read_text()
    assert "COPY public.product (id) FROM stdin;" in (fixtures / "product.sql").read_text()


@pytest.mark.parametrize("dump", [
    "COPY public.note (id, email) FROM stdin;\n1\tann@example.com\n2\t\\N\n\\.\n",
    "INSERT INTO public.note (id, email) VALUES (1, 'ann@example.com');\n"
    "INSERT INTO public.note (id, email) VALUES (2, NULL);\n",
    "INSERT INTO public.note (id, email) VALUES (1, 'ann@example.com'), (2, null);\n",
])
def test_fake_keeps_a_null_null(bare: Path, capsys: pytest.CaptureFixture[str], dump: str) -> None:
    # a row without an e-mail holds no personal data; faking it would change what it means
    pytest.importorskip("faker")
    (bare / "dump.sql").write_text(dump)
    assert run(capsys, "import", "dump.sql", "--fake", "note.email=email")[0] == 0
    code, out, err = run(capsys, "render", "note.sql")
    assert (code, err) == (0, "")
    rows = [x for x in out.splitlines() if x.startswith("INSERT")]
    assert len(rows) == 2 and "ann@example.com" not in out
    assert "'" in rows[0].split("VALUES")[1] and rows[1].upper().endswith(", NULL);"), rows


@pytest.mark.parametrize(("head", "said"), [
    (b"PGDMP\x01\x0e\x00\x04\x08\x01\x01\x01", "pg_restore"),  # pg_dump -Fc
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "gunzip"),  # pg_dump | gzip
    (b"PK\x03\x04\x14\x00", "not SQL text"),
])
def test_an_archive_or_compressed_dump_is_named_with_what_to_do(
    bare: Path, capsys: pytest.CaptureFixture[str], head: bytes, said: str
) -> None:
    # it was told to dump again with -E UTF8, which is not its problem
    (bare / "dump.sql").write_bytes(head + bytes(range(128, 256)) * 4)
    code, out, err = run(capsys, "import", "dump.sql")
    assert (code, out) == (2, "")
    assert "dump.sql" in err and said in err and "-E UTF8" not in err
    assert not (bare / "fixtures_sql").exists()


@pytest.mark.parametrize("second", ["customer.email=name", "public.customer.email=email",
                                    'customer."email"=name'])
def test_one_column_faked_twice_is_a_usage_error(
    bare: Path, capsys: pytest.CaptureFixture[str], second: str
) -> None:
    # the last one won silently
    (bare / "dump.sql").write_text("COPY public.customer (id, email) FROM stdin;\n1\ta@b\n\\.\n")
    code, out, err = run(capsys, "import", "dump.sql", "--fake", "customer.email=email",
                         "--fake", second)
    assert (code, out) == (2, "")
    assert "public.customer.email" in err and "twice" in err
    assert not (bare / "fixtures_sql").exists()
