import subprocess
import sys

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


def test_fake_without_faker_installed_says_which_extra_to_install():
    # Faker is an extra: a template that uses `fake` without it gets an error saying so.
    code = (
        "import sys; sys.modules['faker'] = None\n"  # makes `import faker` fail as if absent
        "from sqlfix.compiler.context import TemplateContext\n"
        "from sqlfix.compiler.render import render_template\n"
        "from sqlfix.errors import FixtureError\n"
        "try:\n"
        "    render_template('SELECT 1;\\nSELECT {{ fake.name() }};', name='t.sql', path='t.sql',"
        " context=TemplateContext(0, 0, locale='en_US'))\n"
        "except FixtureError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "t.sql:2:" in out.stdout
    assert "pip install 'sqlfix[faker]'" in out.stdout


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


# -- values can never become SQL text (issue #8, inputs 2 and 3)

ATTACK = "\"x'); DELETE FROM t; --\""
QUOTED = "'x''); DELETE FROM t; --'"


@pytest.mark.parametrize(
    ("source", "sql"),
    [
        # a value joined to a macro's output is a value: quoted as a whole
        ("{% macro p() %}x{% endmacro %}{{ p() ~ V }}", "'x" + QUOTED[1:]),
        ("{% macro p() %}x{% endmacro %}{{ V ~ p() }}", QUOTED[:-1] + "x'"),
        ("{% macro p() %}x{% endmacro %}{{ p() + V }}", "'x" + QUOTED[1:]),
        # Markup and the filters that return it
        ("{{ V | safe }}", QUOTED),
        ("{{ 'x' | safe ~ V }}", "'x" + QUOTED[1:]),
        ("{{ V | e }}", "'x&#39;); DELETE FROM t; --'"),
        ("{% macro p() %}x{% endmacro %}{{ p() | safe }}", "'x'"),
        ("{{ V | string }}", QUOTED),
        ("{{ V | trim | lower }}", QUOTED.lower()),
        # caller() output is template text, the values inside it are quoted
        ("{% macro m() %}[{{ caller() }}]{% endmacro %}{% call m() %}{{ V }}{% endcall %}",
         f"[{QUOTED}]"),
        ("{% macro m() %}{{ caller() ~ V }}{% endmacro %}{% call m() %}x{% endcall %}",
         "'x" + QUOTED[1:]),
        # joins of macro output and values
        ("{% macro p() %}x{% endmacro %}{{ [p(), V] | join }}", "'x" + QUOTED[1:]),
        ("{{ [V, V] | join(', ') }}", "'x''); DELETE FROM t; --, x''); DELETE FROM t; --'"),
        ("{{ ', '.join([V]) }}", QUOTED),
        ("{{ '%s' % V }}", QUOTED),
        ("{{ '{}'.format(V) }}", QUOTED),
        ("{{ V | replace('x', V) }}", "'x''); DELETE FROM t; --''); DELETE FROM t; --'"),
        # a {% set %} block is template text, a value joined to it is not
        ("{% set b %}({{ V }}){% endset %}{{ b }}", f"({QUOTED})"),
        ("{% set b %}x{% endset %}{{ b ~ V }}", "'x" + QUOTED[1:]),
        # case-changing filter blocks keep values quoted
        ("{% filter upper %}{{ V }}{% endfilter %}", QUOTED.upper()),
    ],
)
def test_no_output_path_writes_a_value_as_sql(source, sql):
    assert render(source.replace("V", ATTACK)).sql == sql


def test_a_value_holding_nul_is_refused_with_its_line():
    finding = error("SELECT 1;\nSELECT {{ 'a\\x00' ~ 'b' }};")
    assert (finding.code, finding.line) == ("SQLF203", 2)
    assert "NUL character (U+0000)" in finding.message


def test_a_file_holding_nul_is_refused_with_its_line():
    finding = error("SELECT 1;\nSELECT 'a\x00';")
    assert (finding.code, finding.line) == ("SQLF203", 2)
    assert "U+0000" in finding.message


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{% filter replace(\"'\", '') %}{{ V }}{% endfilter %}", "cannot hold {{ }} values"),
        ("{% set v = V %}{% filter format(v) %}%s{% endfilter %}", "literal arguments only"),
        ("{% set v = V %}{% filter replace('a', v) %}a{% endfilter %}", "literal arguments"),
        ("{% set v = V %}{% filter upper | replace('A', v) %}a{% endfilter %}", "literal"),
    ],
)
def test_filter_blocks_cannot_unquote_values(source, words):
    assert words in error(source.replace("V", ATTACK)).message


def test_filter_blocks_over_template_text_still_work():
    assert render("{% filter replace('T', 'u') %}T{% endfilter %}").sql == "u"


@pytest.mark.parametrize(
    ("source", "sql"),
    [
        ("UPDATE a SET balance = balance-{{ delta }};", "UPDATE a SET balance = balance- -30;"),
        ("SELECT 1-{{ -0.0 }}-{{ -1.5 }};", "SELECT 1- -0.0- -1.5;"),
        ("SELECT 1-{{ dec }};", "SELECT 1- -12.50;"),
        ("SELECT 1-{{ [-1] }};", "SELECT 1-'{-1}'::int2[];"),
    ],
)
def test_negative_numbers_never_start_a_comment(source, sql):
    from decimal import Decimal

    out = _render_with(source, delta=-30, dec=Decimal("-12.50"))
    assert out.sql == sql
    assert "--" not in out.sql


def _render_with(source, **names):
    class Context(TemplateContext):
        def as_dict(self):
            return {**super().as_dict(), **names}

    return render_template(source, name="t.sql", path="t.sql", context=Context(0, 0))


def test_expression_positions_are_exact():
    out = render("A\n  {{ 1 }} {{ 2 }}\n{{- 3 }}\n{% if 1 -%}\n   X {{ 4 }}{% endif %}")
    assert out.sql == "A\n  1 23\nX 4"
    located = {out.sql[i]: out.locate(i) for i in range(len(out.sql)) if out.sql[i] != " "}
    assert located == {"A": (1, 1), "\n": (3, 9), "1": (2, 3), "2": (2, 11), "3": (3, 1),
                       "X": (5, 4), "4": (5, 6)}
    assert out.expressions == ((4, 5), (6, 7), (7, 8), (11, 12))


def test_macro_text_maps_to_the_macro_body():
    out = render("{% macro r() %}\n  DELETE FROM t;\n{% endmacro %}\nSELECT 1;\n{{ r() }}")
    assert out.locate(out.sql.index("DELETE")) == (2, 3)


def test_json_wrappers_are_in_the_context():
    out = render("SELECT {{ Jsonb({'tags': ['tea'], 'n': None}) }}, {{ Json([1]) }};")
    assert out.sql == "SELECT '{\"tags\": [\"tea\"], \"n\": null}'::jsonb, '[1]'::json;"


# -- limits (issue #8: `'a' * 500000000` took 24 s and 2.4 GB)


@pytest.mark.parametrize(
    "expression",
    [
        "'a' * 500000000",
        "500000000 * 'a'",
        "[1] * 500000000",
        "'a'.ljust(500000000)",
        "'a'.center(500000000)",
        "'a'.zfill(500000000)",
        "'%500000000d' % 1",
        "'{:>500000000}'.format(1)",
        "'{:>{}}'.format(1, 500000000)",
        "'%*d' % (500000000, 1)",
        "'a' | center(500000000)",
        "'a' | indent(500000000, true)",
        "'a' | format() | center(500000000)",
        "2 ** 5000000",
    ],
)
def test_values_beyond_the_size_limit_are_refused_with_their_line(expression):
    finding = error("SELECT 1;\n\nSELECT {{ " + expression + " }};")
    assert (finding.code, finding.line) == ("SQLF203", 3)
    assert "too large" in finding.message and "limit" in finding.message


@pytest.mark.parametrize(
    "source",
    [
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% set ns = namespace(s=['ab']) %}{% for i in range(40) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s.replace('a', 'aa') %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = [ns.s, ns.s] | join %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ''.join([ns.s, ns.s]) %}{% endfor %}",
    ],
)
def test_doubling_loops_stop_at_the_limit(source):
    finding = error("\n" + source)
    assert (finding.code, finding.line) == ("SQLF203", 2)
    assert "too large" in finding.message


def test_the_whole_output_is_capped():
    from sqlfix.compiler import render as render_module

    source = ("{% set s = 'x' * 9000000 %}{% for i in range(10) %}{% for j in range(10) %}"
              "{{ s }}{% endfor %}{% endfor %}")
    finding = error(source)
    assert f"over {render_module.MAX_OUTPUT:,} characters" in finding.message


@pytest.mark.parametrize(
    ("expression", "sql"),
    [
        ("'%d' % 10**12", "'1000000000000'"),
        ("'{}'.format(10**12)", "'1000000000000'"),
        ("'order-2024123456789-{}'.format(1)", "'order-2024123456789-1'"),
        ("'%s' | format(10**12)", "'1000000000000'"),
        ("'%08.2f' % 3.5", "'00003.50'"),
        ("'{:>8}'.format(1)", "'       1'"),
    ],
)
def test_big_numbers_that_are_not_widths_are_fine(expression, sql):
    assert render("{{ " + expression + " }}").sql == sql


def test_values_within_the_limits_still_render():
    out = render("SELECT {{ 'ab' * 1000 }}, {{ 2 ** 64 }}, {{ rng.randint(1, 10**9) > 0 }};")
    assert out.sql.startswith("SELECT 'abab") and "18446744073709551616" in out.sql


# -- the clock renders the same on every host (issue #8: now.astimezone() gave +05:30)

DATE_HELPERS = [
    "now", "now.astimezone()", "(now + timedelta(hours=5)).astimezone()", "today",
    "now.replace(tzinfo=None).timestamp()", "now.timestamp()", "now.strftime('%Y-%m-%d %H:%M %z')",
    "now.date()", "now.time()", "now.ctime()", "now.isoformat()", "fake.date_time()",
    "fake.date_time_this_year()", "fake.past_datetime()", "fake.future_datetime()",
    "fake.date_this_month()", "fake.unix_time()", "fake.iso8601()", "fake.date_time_between()",
    "fake.time()", "fake.future_date()", "fake.date_of_birth()", "fake.past_date()",
    "fake.date_time_ad()", "fake.date_time_this_century()", "fake.date_time_this_decade()",
    "fake.date_time_this_month()", "fake.date()", "fake.date_between()", "fake.time_object()",
    "fake.date_time_between_dates()", "row('a').fake.date_time()",
]

_RENDER_IN_CHILD = """
import sys
from sqlfix.compiler.context import TemplateContext
from sqlfix.compiler.render import render_template
source = sys.stdin.read()
sys.stdout.write(render_template(source, name="t.sql", path="t.sql",
                                 context=TemplateContext(7, 7)).sql)
"""


def test_dates_render_the_same_bytes_whatever_tz_is():
    import os
    import subprocess
    import sys

    source = "SELECT " + ",\n".join("{{ " + h + " }}" for h in DATE_HELPERS) + ";"
    outputs = set()
    for tz in ("UTC", "Asia/Kolkata", "America/St_Johns", "Pacific/Kiritimati"):
        done = subprocess.run([sys.executable, "-c", _RENDER_IN_CHILD], input=source,
                              capture_output=True, text=True, check=True,
                              env={**os.environ, "TZ": tz})
        outputs.add(done.stdout)
    assert len(outputs) == 1, outputs
    assert "+05:30" not in outputs.pop()


@pytest.mark.parametrize("expression", ["now.strftime('%s')", "'{:%s}'.format(now)"])
def test_strftime_seconds_in_the_host_zone_are_refused(expression):
    assert "time zone of the machine" in error("{{ " + expression + " }}").message
