"""`python -m sqlfix import`: a data-only pg_dump (COPY and INSERT form) to fixtures that load."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import DATA

from sqlfix.cli.main import main

PGDUMP = DATA / "pgdump"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_dsn: str) -> Path:
    """A project whose schema is the pg_dump schema (its owner, postgres, is the superuser)."""
    shutil.copy(PGDUMP / "schema.sql", tmp_path / "schema.sql")
    (tmp_path / "pyproject.toml").write_text('[tool.sqlfix]\nschema = ["schema.sql"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQLFIX_DSN", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("dump", "form"), [("data_copy.sql", "COPY"), ("data_inserts.sql", "INSERT")])
def test_import_writes_one_fixture_per_table_that_check_loads(
    project: Path, fresh_dsn: str, capsys: pytest.CaptureFixture[str], dump: str, form: str
) -> None:
    code, out, err = run(capsys, "import", str(PGDUMP / dump), "--dsn", fresh_dsn)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:6] == [
        f"wrote fixtures_sql/customer.sql: 3 row(s), {form}",
        f"wrote fixtures_sql/order_line.sql: 3 row(s), {form}; requires orders.sql, product.sql",
        f"wrote fixtures_sql/orders.sql: 3 row(s), {form}; requires customer.sql",
        f"wrote fixtures_sql/payment_2023.sql: 1 row(s), {form}; requires orders.sql",
        f"wrote fixtures_sql/payment_2024.sql: 1 row(s), {form}; requires orders.sql",
        f"wrote fixtures_sql/product.sql: 2 row(s), {form}",
    ]
    assert lines[6] == (
        "dropped (a fixture must not hold them): 9 SET, 2 \\restrict/\\unrestrict line(s), "
        "1 set_config(), 3 setval() (sqlfix moves sequences past fixture ids itself), the dump's comments")
    text = (project / "fixtures_sql" / "orders.sql").read_text()
    assert text.startswith("-- Imported by `sqlfix import`")
    assert "-- requires: customer.sql\n" in text
    for dropped in ("SET ", "set_config", "setval", "\\restrict", "Data for Name"):
        assert dropped not in "".join(p.read_text() for p in (project / "fixtures_sql").iterdir())
    code, out, _ = run(capsys, "check", "--dsn", fresh_dsn)
    assert code == 0, out
    assert re.search(r"OK    order_line\.sql .* customer \+3, order_line \+3, orders \+3, product \+2$", out, re.M)
    assert out.splitlines()[-1] == "All 6 fixtures OK; every load was rolled back, nothing was committed."


def test_template_syntax_in_the_data_is_kept_as_data(
    project: Path, fresh_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for dump in ("data_copy.sql", "data_inserts.sql"):
        assert run(capsys, "import", str(PGDUMP / dump), "--dsn", fresh_dsn, "--force",
                   "--tables", "customer")[0] == 0
        code, out, _ = run(capsys, "render", "customer.sql")
        assert code == 0 and "Cy {{ Braces }}" in out and "{% raw %}" not in out


def test_fake_replaces_named_columns_and_tables_limits_the_import(
    project: Path, fresh_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "import", str(PGDUMP / "data_copy.sql"), "--dsn", fresh_dsn,
                         "--tables", "customer,orders", "--fake", "customer.email=email",
                         "--fake", "public.customer.full_name=name")
    assert (code, err) == (0, ""), err
    assert "wrote fixtures_sql/customer.sql: 3 row(s), INSERT (faked)" in out
    assert "skipped (not in --tables): public.order_line, public.payment_2023, public.payment_2024, public.product" in out
    text = (project / "fixtures_sql" / "customer.sql").read_text()
    assert "{{ fake.email() }}" in text and "{{ fake.name() }}" in text
    assert "ann@example.com" not in text and "O''Brien" not in text
    assert "'Bob Tab\tStop'" not in text  # the name column is faked; the \t escape never leaks
    code, out, _ = run(capsys, "render", "customer.sql")
    assert code == 0 and "ann@example.com" not in out and "@" in out
    code, out, _ = run(capsys, "check", "--dsn", fresh_dsn)
    assert code == 0, out


def test_import_refuses_what_it_cannot_do(
    project: Path, fresh_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "import", str(PGDUMP / "data_copy.sql"), "--dsn", fresh_dsn,
                       "--fake", "nosuch.email=email")
    assert code == 2 and "--fake names table(s) not imported from the dump: public.nosuch" in err
    code, _, err = run(capsys, "import", str(PGDUMP / "data_copy.sql"), "--fake", "email")
    assert code == 2 and "TABLE.COLUMN=FAKER_METHOD" in err
    code, _, err = run(capsys, "import", str(PGDUMP / "schema.sql"), "--dsn", fresh_dsn)
    assert code == 2 and "holds no table data" in err
    assert run(capsys, "import", str(PGDUMP / "data_copy.sql"), "--dsn", fresh_dsn)[0] == 0
    code, _, err = run(capsys, "import", str(PGDUMP / "data_copy.sql"), "--dsn", fresh_dsn)
    assert code == 2 and "exist(s); pass --force to overwrite" in err


def test_the_adopting_walk_through(pytester: pytest.Pytester, fresh_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/adopting.md, step by step: schema dump, import with fakes, the first tests pass."""
    (pytester.path / "db").mkdir()
    shutil.copy(PGDUMP / "schema.sql", pytester.path / "db" / "schema.sql")
    pytester.makepyprojecttoml('[tool.sqlfix]\nschema = ["db/schema.sql"]\n'
                               '[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = "function"\n')
    monkeypatch.chdir(pytester.path)
    argv = ["import", str(PGDUMP / "data_copy.sql"), "--dsn", fresh_dsn, "--fake", "customer.email=email",
            "--fake", "customer.full_name=name"]
    assert main(argv) == 0
    pytester.makepyfile(
        """
        from decimal import Decimal
        from sqlfix import uses

        @uses("order_line.sql")
        def test_order_total(sqlfix_conn):
            total = sqlfix_conn.execute("SELECT public.order_total(1)").fetchone()[0]
            assert total == Decimal("57.50")

        @uses("customer.sql")
        def test_new_customer_gets_the_next_id(sqlfix_conn):
            row = sqlfix_conn.execute(
                "INSERT INTO public.customer (email, full_name) VALUES ('n@x.org', 'N') RETURNING id"
            ).fetchone()
            assert row == (4,)

        def test_without_fixtures_the_first_id_is_1(sqlfix_conn):
            row = sqlfix_conn.execute(
                "INSERT INTO public.customer (email, full_name) VALUES ('n@x.org', 'N') RETURNING id"
            ).fetchone()
            assert row == (1,)
        """
    )
    pytester.runpytest(f"--sqlfix-dsn={fresh_dsn}", "-p", "no:randomly").assert_outcomes(passed=3)


def test_restrict_lines_are_dropped_between_statements_only() -> None:
    from sqlfix.cli.importer import parse_dump

    key = "abc123XYZ"
    dump = (f"\\restrict {key}\nSET statement_timeout = 0;\n"
            f"COPY public.note (body) FROM stdin;\n\\restrict {key}\nplain\n\\.\n"
            f"INSERT INTO public.note VALUES ('a\n\\unrestrict {key}\nb');\n\\unrestrict {key}\n")
    parsed = parse_dump(dump)
    table = parsed.tables[("public", "note")]
    assert table.copies == [("COPY public.note (body) FROM stdin", f"\\restrict {key}\nplain\n")]
    assert table.inserts == [f"INSERT INTO public.note VALUES ('a\n\\unrestrict {key}\nb');"]
    assert parsed.dropped["\\restrict/\\unrestrict line(s)"] == 2
    assert parsed.dropped["SET"] == 1
