"""Messages never show an invisible character without naming it (issue #8)."""

import pytest

from sqlfix.errors import ConfigError, Finding, FixtureError, show_invisible


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\u200bb", "a<U+200B ZERO WIDTH SPACE>b"),
        ("\ufeffSELECT", "<U+FEFF ZERO WIDTH NO-BREAK SPACE>SELECT"),
        ("1\xa0000", "1<U+00A0 NO-BREAK SPACE>000"),
        ("x\u202ey", "x<U+202E RIGHT-TO-LEFT OVERRIDE>y"),
        ("bell\x07", "bell<U+0007>"),
        ("line\nnext\ttab é 中", "line\nnext\ttab é 中"),  # visible text is left alone
    ],
)
def test_invisible_characters_are_named(text, shown):
    assert show_invisible(text) == shown


def test_findings_and_errors_name_them_in_every_message():
    finding = Finding("SQLF701", 'syntax error at or near "\ufeffINSERT"', "fx/a\u200b.sql")
    assert finding.format() == (
        'fx/a<U+200B ZERO WIDTH SPACE>.sql:1:1: SQLF701 syntax error at or near '
        '"<U+FEFF ZERO WIDTH NO-BREAK SPACE>INSERT"'
    )
    assert "<U+FEFF" in str(FixtureError([finding]))
    assert str(ConfigError("schema file a\xa0b.sql")) == "schema file a<U+00A0 NO-BREAK SPACE>b.sql"
