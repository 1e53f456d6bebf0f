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
