import pytest

from sqlfix.compiler.context import TemplateContext
from sqlfix.compiler.render import render_template
from sqlfix.errors import FixtureError


def render(source, seed=0, run_seed=0):
    return render_template(source, name="t.sql", path="fx/t.sql",
                           context=TemplateContext(seed, run_seed))


def error(source):
    with pytest.raises(FixtureError) as info:
        render(source)
    (finding,) = info.value.findings
    return finding


def test_values_are_quoted_and_cannot_inject_sql():
    out = render("INSERT INTO t VALUES ({{ name }});".replace("name", "\"x'); DROP TABLE t; --\""))
    assert out.sql == "INSERT INTO t VALUES ('x''); DROP TABLE t; --');"


def test_same_seed_same_bytes_other_seed_other_values():
    source = "SELECT {{ fake.name() }}, {{ rng.randint(1, 10**9) }}, {{ row('a').fake.email() }};"
    assert render(source, seed=1).sql == render(source, seed=1).sql
    assert render(source, seed=1).sql != render(source, seed=2).sql


def test_row_values_depend_only_on_their_label():
    one = render("SELECT {{ row('alice').fake.name() }};")
    two = render("SELECT {{ row('bob').fake.name() }}, {{ row('alice').fake.name() }};")
    assert one.sql.split("SELECT ")[1].rstrip(";") in two.sql


def test_lines_and_columns_map_back_through_loops():
    source = (
        "-- header\n"
        "{% for i in range(3) %}\n"
        "INSERT INTO t VALUES ({{ i }});\n"
        "{% endfor %}\n"
        "  DELETE FROM t;\n"
    )
    out = render(source)
    offsets = [i for i in range(len(out.sql)) if out.sql.startswith("INSERT", i)]
    assert [out.locate(o) for o in offsets] == [(3, 1)] * 3
    assert out.locate(out.sql.index("DELETE")) == (5, 3)


def test_ids_are_recorded():
    out = render("SELECT {{ id('users', 'alice') }};")
    ((table, label, value),) = out.ids
    assert (table, label) == ("users", "alice") and value > 0


@pytest.mark.parametrize(
    ("source", "code", "line", "words"),
    [
        ("SELECT 1;\n{{ missing }}", "SQLF202", 2, "'missing' is undefined"),
        ("{% for x in %}", "SQLF201", 1, "syntax error"),
        ("\n\n{{ 1 // 0 }}", "SQLF203", 3, "ZeroDivisionError"),
        ("{{ now.now() }}", "SQLF203", 1, "unsafe"),
        ("{{ rng.seed(3) }}", "SQLF203", 1, "unsafe"),
        ("{{ {'a': 1} }}", "SQLF203", 1, "cannot write a dict"),
        ("{% for x in [1] %}{{ ',' if not loop.last }}{% endfor %}", "SQLF203", 1, "loop.last"),
    ],
)
def test_template_errors_name_file_line_and_fix(source, code, line, words):
    finding = error(source)
    assert (finding.code, finding.path, finding.line) == (code, "fx/t.sql", line)
    assert words in finding.message


def test_markup_values_are_quoted_like_any_other():
    out = render("SELECT {{ 'a; DROP TABLE t' | safe }}, {{ {'k': \"it's\"} | tojson }};")
    assert out.sql == "SELECT 'a; DROP TABLE t',  E'{\"k\": \"it\\\\u0027s\"}';"


def test_macro_output_is_template_text_with_quoted_values():
    out = render("{% macro r(n) %}({{ n }}, 'x'){% endmacro %}VALUES {{ r(1) }}, {{ r('a') }};")
    assert out.sql == "VALUES (1, 'x'), ('a', 'x');"


def test_include_is_refused_with_what_to_do():
    assert "-- requires:" in error("{% include 'other.sql' %}").message


def test_faker_dates_count_from_now_not_from_the_real_clock():
    import datetime as dt

    context = TemplateContext(0, 0, now=dt.datetime(2011, 3, 4, tzinfo=dt.timezone.utc))
    out = render_template("SELECT {{ fake.date_this_year() }}, {{ fake.past_date() }};",
                          name="t.sql", path="t.sql", context=context)
    first, second = out.sql.removeprefix("SELECT ").rstrip(";").split(", ")
    assert first.startswith("'2011-") and second.startswith("'2011-")


def test_an_unknown_faker_locale_says_so():
    context = TemplateContext(0, 0, locale="xx_XX")
    with pytest.raises(FixtureError, match="faker_locale 'xx_XX' is not a Faker locale"):
        render_template("SELECT {{ fake.name() }};", name="t.sql", path="t.sql", context=context)


def test_lines_map_back_through_case_changing_filters():
    out = render("-- h\n\n{% filter lower %}\nINSERT INTO t VALUES ({{ 'A' }});\n  DROP TABLE X;\n{% endfilter %}\n")
    assert out.locate(out.sql.index("drop")) == (5, 3)


def test_for_label_is_the_rows_faker_and_row_id_is_the_label_id():
    out = render("SELECT {{ fake.for_label('ann').name() }}, {{ row('ann').id('users') }}, "
                 "{{ id('users', 'ann') }};")
    alone = render("SELECT {{ row('ann').fake.name() }};")
    name, row_id, plain_id = out.sql.removeprefix("SELECT ").rstrip(";").split(", ")
    assert alone.sql == f"SELECT {name};"
    assert row_id == plain_id
