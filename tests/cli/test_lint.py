"""`sqlfix lint` without a database: each rule fires on a bad fixture and stays silent on a good one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import REPO

from sqlfix.cli import report, usage
from sqlfix.cli.lint import LintOptions, LintResult, dedupe, lint, lint_options
from sqlfix.cli.rules import RULES
from sqlfix.cli.targets import UsageError, Workspace
from sqlfix.compiler import guard
from sqlfix.compiler.discovery import FixtureDir
from sqlfix.compiler.library import FixtureLibrary
from sqlfix.config import load_settings
from sqlfix.errors import ConfigError, Finding, Severity

# (id, fixture text, codes lint reports on it). Each rule has cases that fire and
# cases close to them that must stay silent.
CASES: list[tuple[str, str, set[str]]] = [
    # --- SQLF101 DDL
    ("create", "CREATE TABLE t (id int);\n", {"SQLF101"}),
    ("alter", "ALTER TABLE users ADD COLUMN x int;\n", {"SQLF101"}),
    ("drop", "DROP TABLE users;\n", {"SQLF101"}),
    ("truncate", "TRUNCATE users;\n", {"SQLF101"}),
    ("grant", "GRANT SELECT ON users TO app;\n", {"SQLF101"}),
    ("revoke", "REVOKE SELECT ON users FROM app;\n", {"SQLF101"}),
    ("comment", "COMMENT ON TABLE users IS 'people';\n", {"SQLF101"}),
    ("select-into", "SELECT * INTO users_copy FROM users;\n", {"SQLF101"}),
    ("ddl-in-loop", "{% for i in range(2) %}DROP TABLE t{{ i }};\n{% endfor %}", {"SQLF101"}),
    # --- SQLF102 transaction control
    ("begin", "BEGIN;\nINSERT INTO t VALUES (1);\n", {"SQLF102"}),
    ("commit", "INSERT INTO t VALUES (1);\nCOMMIT;\n", {"SQLF102"}),
    ("end", "INSERT INTO t VALUES (1);\nEND;\n", {"SQLF102"}),
    ("rollback", "ROLLBACK;\n", {"SQLF102"}),
    ("abort", "ABORT;\n", {"SQLF102"}),
    ("savepoint", "SAVEPOINT a;\nRELEASE a;\n", {"SQLF102"}),
    ("prepare-transaction", "PREPARE TRANSACTION 'x';\n", {"SQLF102"}),
    # --- SQLF103 other statements
    ("call", "CALL refresh_stats();\n", {"SQLF103"}),
    ("do", "DO $$ BEGIN PERFORM 1; END $$;\n", {"SQLF103"}),
    ("copy", "COPY users FROM stdin;\n", {"SQLF405"}),  # rows without their `\\.` end
    ("set", "SET search_path TO shop;\n", {"SQLF103"}),
    ("reset", "RESET search_path;\n", {"SQLF103"}),
    ("vacuum", "VACUUM users;\n", {"SQLF103"}),
    ("lock", "LOCK TABLE users;\n", {"SQLF103"}),
    ("discard", "DISCARD ALL;\n", {"SQLF103"}),
    ("load", "LOAD 'auto_explain';\n", {"SQLF103"}),
    ("psql-include", "\\i other.sql\n", {"SQLF103"}),
    # --- data statements, and DDL words that are data: silent
    ("insert", "INSERT INTO t (a) VALUES (1);\n", set()),
    ("set-local", "SET LOCAL search_path TO shop;\n", set()),
    ("set-constraints", "SET CONSTRAINTS ALL DEFERRED;\n", set()),
    ("with-insert", "WITH x AS (SELECT 1 AS id) INSERT INTO t SELECT id FROM x;\n", set()),
    ("ddl-in-string", "INSERT INTO t (s) VALUES ('CREATE TABLE x; DROP TABLE y; COMMIT;');\n", set()),
    ("ddl-in-dollar-quote", "INSERT INTO t (s) VALUES ($body$ DROP TABLE x; BEGIN; $body$);\n", set()),
    ("ddl-in-line-comment", "-- DROP TABLE users; COMMIT;\nINSERT INTO t VALUES (1);\n", set()),
    ("ddl-in-block-comment", "/* CREATE TABLE x; /* nested */ BEGIN; */\nINSERT INTO t VALUES (1);\n", set()),
    ("ddl-in-jinja-comment", "{# DROP TABLE users; #}\nINSERT INTO t VALUES (1);\n", set()),
    ("ddl-word-in-identifier", 'INSERT INTO "drop" (begin_at, "commit") VALUES (1, 2);\n', set()),
    ("ddl-word-in-value", "INSERT INTO t (s) VALUES ({{ 'DROP TABLE x; COMMIT;' }});\n", set()),
    ("now-in-string", "INSERT INTO t (s) VALUES ('now() and random()');\n", set()),
    # --- SQLF201-204 template
    ("jinja-unclosed-for", "{% for i in range(2) %}\nINSERT INTO t VALUES ({{ i }});\n", {"SQLF201"}),
    ("jinja-unclosed-expr", "INSERT INTO t VALUES ({{ 1 );\n", {"SQLF201"}),
    ("jinja-closed-for", "{% for i in range(2) %}\nINSERT INTO t VALUES ({{ i }});\n{% endfor %}\n", set()),
    ("undefined", "INSERT INTO t VALUES ({{ nope }});\n", {"SQLF202"}),
    ("undefined-attribute", "INSERT INTO t VALUES ({{ timedelta.nope }});\n", {"SQLF202"}),
    ("defined", "INSERT INTO t VALUES ({{ seed }}, {{ now }}, {{ today }});\n", set()),
    ("render-zero-division", "INSERT INTO t VALUES ({{ 1 / 0 }});\n", {"SQLF203"}),
    ("render-clock", "INSERT INTO t VALUES ({{ now.now() }});\n", {"SQLF203"}),
    ("render-today", "INSERT INTO t VALUES ({{ today.today() }});\n", {"SQLF203"}),
    ("render-reseed", "INSERT INTO t VALUES ({{ rng.seed(1) }});\n", {"SQLF203"}),
    ("render-rng", "INSERT INTO t VALUES ({{ rng.randint(1, 6) }});\n", set()),
    ("quoted-placeholder", "INSERT INTO t VALUES ('{{ seed }}');\n", {"SQLF204"}),
    ("quoted-placeholder-inside", "INSERT INTO t VALUES ('id-{{ seed }}');\n", {"SQLF204"}),
    ("placeholder-in-identifier-quotes", 'INSERT INTO t VALUES ({{ seed }}); -- "{{ seed }}"\n', set()),
    ("placeholder-concatenated", "INSERT INTO t VALUES ('id-' || {{ seed }});\n", set()),
    # --- SQLF401-403 shape
    ("unterminated-string", "INSERT INTO t VALUES ('abc);\n", {"SQLF401"}),
    ("unterminated-dollar", "INSERT INTO t VALUES ($$abc);\n", {"SQLF401"}),
    ("unterminated-comment", "INSERT INTO t VALUES (1); /* note\n", {"SQLF401"}),
    ("unterminated-identifier", 'INSERT INTO "t VALUES (1);\n', {"SQLF401"}),
    ("doubled-quote", "INSERT INTO t VALUES ('it''s');\n", set()),
    ("missing-semicolon", "INSERT INTO t VALUES (1)\n", {"SQLF402"}),
    # two statements run together: the parser sees the second INSERT where a ';' belongs
    ("missing-semicolon-in-loop", "{% for i in range(2) %}INSERT INTO t VALUES ({{ i }})\n{% endfor %}", {"SQLF404"}),
    ("empty", "", {"SQLF403"}),
    ("only-comments", "-- nothing yet\n/* later */\n", {"SQLF403"}),
    ("renders-to-nothing", "{% for i in [] %}INSERT INTO t VALUES (1);{% endfor %}\n", {"SQLF403"}),
    # --- COPY ... FROM stdin: rows are data (SQLF405 one per bad block), files/programs refused
    ("copy-stdin", "COPY t (a, b) FROM stdin;\n1\tit's\n2\tDROP TABLE x; now()\n\\.\nINSERT INTO t VALUES (3);\n", set()),
    ("copy-stdin-only", "COPY public.t (a) FROM stdin;\n1\n\\.\n", set()),
    ("copy-after-comment", "-- rows\n/* COPY x FROM '/f'; */\nCOPY t (a) FROM stdin;\n1\n\\.\n", set()),
    ("copy-after-statement", "INSERT INTO t VALUES (0);\nCOPY t (a) FROM stdin;\nO'Hara\n\\.\n", set()),
    ("copy-no-end", "COPY t (a) FROM stdin;\n1\n2\n", {"SQLF405"}),
    ("copy-field-count", "COPY t (a, b) FROM stdin;\n1\tx\n2\n3\n4\n\\.\n", {"SQLF405"}),
    # rows split by a DELIMITER of their own are not counted by tabs (psql loads them)
    ("copy-delimiter", "COPY t (a, b, c) FROM stdin WITH (DELIMITER '|');\n1|a\tb|2\n\\.\n", set()),
    # FROM stdin after something on its line: refused with a message saying so (not "use COPY")
    ("copy-after-comment-same-line", "/* x */ COPY t (a) FROM stdin;\n1\n\\.\n", {"SQLF103", "SQLF404"}),
    ("copy-delimiter-old", "COPY t (a, b) FROM stdin DELIMITER ',';\n1,x\n\\.\n", set()),
    ("copy-template-value", "COPY t (a, b) FROM stdin;\n1\t{{ fake.name() }}\n\\.\n", {"SQLF405"}),
    ("copy-from-file", "COPY t FROM '/etc/passwd';\n", {"SQLF104"}),
    ("copy-from-program", "COPY t FROM PROGRAM 'rm -rf /';\n", {"SQLF104"}),
    ("copy-to-file", "COPY t TO '/tmp/out';\n", {"SQLF104"}),
    ("copy-to-stdout", "COPY t TO stdout;\n", {"SQLF103"}),
    ("copy-in-string", "INSERT INTO t VALUES ('\nCOPY t FROM stdin;\n');\n", set()),
    ("copy-in-dollar-quote", "INSERT INTO t VALUES ($x$\nCOPY t FROM stdin;\n$x$);\n", set()),
    ("copy-in-comment", "/*\nCOPY t FROM stdin;\n*/\nINSERT INTO t VALUES (1);\n", set()),
    # not at a statement's start: no rows are cut out, the parser sees the text
    ("copy-after-unfinished", "INSERT INTO t VALUES (0)\nCOPY t (a) FROM stdin;\n1\n\\.\n", {"SQLF404"}),
    ("copy-then-statement-error", "COPY t (a) FROM stdin;\n1\n\\.\nDROP TABLE t;\n", {"SQLF101"}),
    # --- SQLF501 nondeterministic
    ("now", "INSERT INTO t VALUES (now());\n", {"SQLF501"}),
    ("random", "INSERT INTO t VALUES (random());\n", {"SQLF501"}),
    ("gen-random-uuid", "INSERT INTO t VALUES (gen_random_uuid());\n", {"SQLF501"}),
    ("clock-timestamp", "INSERT INTO t VALUES (clock_timestamp());\n", {"SQLF501"}),
    ("current-timestamp", "INSERT INTO t VALUES (CURRENT_TIMESTAMP);\n", {"SQLF501"}),
    # Faker's date methods count from the template's `now`, not the machine's clock
    ("faker-date-time", "INSERT INTO t VALUES ({{ fake.date_time() }});\n", set()),
    ("faker-relative-bound", "INSERT INTO t VALUES ({{ fake.date_between('-30d', 'today') }});\n", set()),
    ("template-now", "INSERT INTO t VALUES ({{ now }}, {{ now.date() }});\n", set()),
    ("column-named-now", "INSERT INTO random (now) SELECT s.now FROM s;\n", set()),
]


def test_case_ids_are_unique() -> None:
    assert len({c[0] for c in CASES}) == len(CASES)


def test_every_single_file_rule_has_a_firing_and_a_silent_case() -> None:
    fired = set().union(*(codes for _, _, codes in CASES))
    assert fired >= {"SQLF101", "SQLF102", "SQLF103", "SQLF201", "SQLF202", "SQLF203"}
    assert fired >= {"SQLF204", "SQLF401", "SQLF402", "SQLF403", "SQLF501"}
    assert any(not codes for _, _, codes in CASES)


def make_fixtures(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    return root


def run_lint(
    tmp_path: Path, files: dict[str, str | bytes], options: LintOptions | None = None
) -> LintResult:
    fx = make_fixtures(tmp_path / "fx", files)
    workspace = Workspace(FixtureLibrary(FixtureDir(fx)))
    return lint(workspace, workspace.targets([]), options or LintOptions())


def places(result: LintResult) -> list[tuple[str, int, int, str]]:
    return [(Path(f.path).name, f.line, f.col, f.code) for f in result.findings]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # paths are shown relative to the working directory


@pytest.mark.parametrize(("text", "codes"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_cases(tmp_path: Path, text: str, codes: set[str]) -> None:
    result = run_lint(tmp_path, {"case.sql": text})
    assert {f.code for f in result.findings} == codes


def test_unreadable_file_is_one_finding(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "latin1.sql": "-- é ok\n-- caf".encode() + b"\xe9\n",
        "b.sql": "-- requires: latin1.sql\nSELECT 1;\n",
    }
    assert places(run_lint(tmp_path, files)) == [("latin1.sql", 1, 1, "SQLF001")]


def test_undefined_name_is_named_in_the_message(tmp_path: Path) -> None:
    (finding,) = run_lint(tmp_path, {"a.sql": "INSERT INTO t VALUES (\n{{ emial }});\n"}).findings
    assert (finding.code, finding.line) == ("SQLF202", 2)
    assert "'emial' is undefined" in finding.message


def test_quoted_placeholder_says_to_drop_the_quotes(tmp_path: Path) -> None:
    (finding,) = run_lint(tmp_path, {"a.sql": "INSERT INTO t VALUES ('{{ seed }}');\n"}).findings
    assert "drop the quotes" in finding.message


# ------------------------------------------------------------------ locations


def test_locations_point_into_the_source_through_loops_and_requires(tmp_path: Path) -> None:
    text = (
        "-- requires: users.sql\n"  # 1
        "-- a header comment\n"  # 2
        "{% for n in range(3) %}\n"  # 3
        "INSERT INTO t VALUES ({{ n }}, now());\n"  # 4: now() at col 32
        "{% if n == 2 %}  DROP TABLE t;{% endif %}\n"  # 5: DROP at col 18
        "{% endfor %}\n"
        "INSERT INTO t VALUES ('{{ seed }}')\n"  # 7: placeholder at 24, no ';'
    )
    result = run_lint(tmp_path, {"a.sql": text, "users.sql": "INSERT INTO users VALUES (1);\n"})
    assert places(result) == [
        ("a.sql", 4, 32, "SQLF501"),
        ("a.sql", 5, 18, "SQLF101"),
        ("a.sql", 7, 1, "SQLF402"),
        ("a.sql", 7, 24, "SQLF204"),
    ]


def test_a_statement_repeated_by_a_loop_is_one_finding(tmp_path: Path) -> None:
    text = "{% for n in range(5) %}\nTRUNCATE t{{ n }};\n{% endfor %}\n"
    assert places(run_lint(tmp_path, {"a.sql": text})) == [("a.sql", 2, 1, "SQLF101")]


def test_paths_are_shown_relative_to_the_working_directory(tmp_path: Path) -> None:
    (finding,) = run_lint(tmp_path, {"sub/a.sql": "DROP TABLE t;\n"}).findings
    assert finding.path == str(Path("fx", "sub", "a.sql"))


# ------------------------------------------------------------------ requires


def test_missing_requirement_is_reported_once_at_its_header(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "a.sql": "-- requires: users.sql,  nope.sql\nSELECT 1;\n",
        "b.sql": "-- requires: a.sql\nSELECT 1;\n",  # reaches nope.sql through a.sql
        "users.sql": "SELECT 1;\n",
    }
    (finding,) = run_lint(tmp_path, files).findings
    assert (Path(finding.path).name, finding.line, finding.col) == ("a.sql", 1, 26)
    assert finding.code == "SQLF301"
    assert "'nope.sql' (a.sql -> nope.sql)" in finding.message  # the direct chain


@pytest.mark.parametrize(
    "files",
    [
        {"a.sql": "-- requires: b.sql\nSELECT 1;\n", "b.sql": "-- requires: a.sql\nSELECT 1;\n"},
        {
            "a.sql": "-- requires: b.sql\nSELECT 1;\n",
            "b.sql": "-- requires: c.sql\nSELECT 1;\n",
            "c.sql": "-- requires: a.sql\nSELECT 1;\n",
            "d.sql": "-- requires: c.sql\nSELECT 1;\n",  # leads into the cycle
        },
        {"self.sql": "-- requires: self.sql\nSELECT 1;\n"},
    ],
    ids=["two", "three-and-a-tail", "self"],
)
def test_a_cycle_is_reported_once(tmp_path: Path, files: dict[str, str | bytes]) -> None:
    findings = run_lint(tmp_path, files).findings
    assert [f.code for f in findings] == ["SQLF302"]
    assert "requires forms a cycle" in findings[0].message


def test_id_collision_between_a_file_and_its_requirement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sqlfix.compiler.context.fixture_id", lambda table, label: 1234)
    files: dict[str, str | bytes] = {
        "a.sql": "INSERT INTO users VALUES ({{ id('users', 'ann') }});\n",
        "b.sql": "-- requires: a.sql\nINSERT INTO users VALUES ({{ id('users', 'bob') }});\n",
    }
    assert places(run_lint(tmp_path, files)) == [("b.sql", 1, 1, "SQLF303")]


def test_clean_requirements_raise_nothing(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "a.sql": "-- requires: sub/b.sql\nSELECT 1;\n",
        "sub/b.sql": "SELECT {{ id('users', 'ann') }};\n",
    }
    assert run_lint(tmp_path, files).findings == ()


# ------------------------------------------------------------------ targets


def test_files_outside_the_fixtures_dir_resolve_requires_in_it(tmp_path: Path) -> None:
    fx = make_fixtures(tmp_path / "fx", {"users.sql": "SELECT 1;\n"})
    other = make_fixtures(
        tmp_path / "elsewhere",
        {"good.sql": "-- requires: users.sql\nSELECT 1;\n", "bad.sql": "-- requires: nope.sql\nSELECT 1;\n"},
    )
    workspace = Workspace(FixtureLibrary(FixtureDir(fx)))
    result = lint(workspace, workspace.targets([other]), LintOptions())
    assert places(result) == [("bad.sql", 1, 14, "SQLF301")]
    assert {t.name for t in result.targets} == {"good.sql", "bad.sql"}


def test_schema_files_are_not_fixtures(tmp_path: Path) -> None:
    fx = make_fixtures(tmp_path / "fx", {"schema.sql": "CREATE TABLE t (id int);\n", "a.sql": "SELECT 1;\n"})
    workspace = Workspace(FixtureLibrary(FixtureDir(fx, exclude=frozenset({fx / "schema.sql"}))))
    assert [t.key for t in workspace.targets([])] == ["a.sql"]
    assert workspace.targets([fx / "schema.sql"]) == []


def test_a_path_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    workspace = Workspace(FixtureLibrary(FixtureDir(tmp_path / "fx")))
    with pytest.raises(UsageError, match="fixtures directory"):
        workspace.targets([])
    with pytest.raises(UsageError, match="no such file"):
        workspace.targets([tmp_path / "nope.sql"])


# ------------------------------------------------------------------ noqa, select, ignore

NOISY = (
    "INSERT INTO t VALUES (clock_timestamp());  -- sqlfix: noqa: SQLF501\n"
    "INSERT INTO t VALUES (now());  -- sqlfix: noqa\n"
    "INSERT INTO t VALUES (random());  -- sqlfix: noqa: SQLF101\n"  # the wrong code: reported
    "INSERT INTO t VALUES (now());  -- sqlfix: NOQA:SQLF102,SQLF501\n"
    "-- sqlfix: noqa: SQLF501\n"
    "INSERT INTO t VALUES (now());\n"  # the comment is on another line: reported
    "INSERT INTO t VALUES ('-- sqlfix: noqa', now());\n"  # inside a string: not a comment
    "INSERT INTO t VALUES (now());  # sqlfix: noqa\n"  # `#` is no SQL comment
)


def test_noqa_silences_its_codes_on_its_line(tmp_path: Path) -> None:
    assert [p for p in places(run_lint(tmp_path, {"a.sql": NOISY})) if p[3] == "SQLF501"] == [
        ("a.sql", 3, 23, "SQLF501"),
        ("a.sql", 6, 23, "SQLF501"),
        ("a.sql", 7, 42, "SQLF501"),
        ("a.sql", 8, 23, "SQLF501"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "CREATE TABLE t (id int);  -- sqlfix: noqa: SQLF101\n",
        "INSERT INTO t VALUES ({{ nope }});  -- sqlfix: noqa\n",
        "INSERT INTO t VALUES ('abc);  -- sqlfix: noqa\n",
    ],
)
def test_noqa_cannot_silence_what_the_loader_refuses(tmp_path: Path, text: str) -> None:
    assert run_lint(tmp_path, {"a.sql": text}).errors


@pytest.mark.parametrize(
    ("select", "ignore", "codes"),
    [
        (None, frozenset(), {"SQLF101", "SQLF501", "SQLF402"}),
        (frozenset({"SQLF101"}), frozenset(), {"SQLF101"}),
        (None, frozenset({"SQLF501"}), {"SQLF101", "SQLF402"}),
        (frozenset({"SQLF101", "SQLF501"}), frozenset({"SQLF501"}), {"SQLF101"}),
    ],
)
def test_select_and_ignore(
    tmp_path: Path, select: frozenset[str] | None, ignore: frozenset[str], codes: set[str]
) -> None:
    text = "DROP TABLE t;\nINSERT INTO t VALUES (now())\n"
    result = run_lint(tmp_path, {"a.sql": text}, LintOptions(select, ignore))
    assert {f.code for f in result.findings} == codes


def write_pyproject(root: Path, body: str) -> None:
    (root / "pyproject.toml").write_text(body, encoding="utf-8")


def test_options_come_from_the_config_and_the_command_line_replaces_them(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    write_pyproject(
        tmp_path,
        '[tool.sqlfix.lint]\nselect = ["SQLF1", "SQLF501"]\nignore = ["SQLF103"]\ntests = "tests"\n',
    )
    settings = load_settings(tmp_path)
    options = lint_options(settings)
    assert options.select == {"SQLF101", "SQLF102", "SQLF103", "SQLF104", "SQLF501"}
    assert options.ignore == {"SQLF103"}
    assert options.tests == tmp_path / "tests"
    options = lint_options(settings, select=["SQLF402"], ignore=[])
    assert (options.select, options.ignore) == ({"SQLF402"}, frozenset())


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        ('[tool.sqlfix.lint]\nselect = ["SQLF999"]\n', UsageError, "unknown rule code 'SQLF999'"),
        ('[tool.sqlfix.lint]\nignore = ["E501"]\n', UsageError, "unknown rule code 'E501'"),
        ('[tool.sqlfix.lint]\ntests = "nowhere"\n', UsageError, "tests directory nowhere"),
        ('[tool.sqlfix.lint]\nselect = "SQLF101"\n', ConfigError, "must be a list of rule codes"),
        ('[tool.sqlfix.lint]\ntests = 3\n', ConfigError, "must be a directory path"),
        ('[tool.sqlfix.lint]\nexclude = []\n', ConfigError, r"unknown key\(s\) in \[tool.sqlfix.lint\]: exclude"),
    ],
)
def test_bad_lint_config_names_the_problem(
    tmp_path: Path, body: str, error: type[Exception], match: str
) -> None:
    write_pyproject(tmp_path, body)
    with pytest.raises(error, match=match):
        lint_options(load_settings(tmp_path))


def test_unknown_code_on_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--select: unknown rule code 'SQLF109'"):
        lint_options(load_settings(tmp_path), select=["SQLF109"])


def test_dedupe_keeps_one_finding_per_place_and_one_per_cycle() -> None:
    direct = Finding("SQLF301", "requires names a missing fixture 'x' (a -> x)", "a.sql", 1, 14)
    via = Finding("SQLF301", "requires names a missing fixture 'x' (b -> a -> x)", "a.sql", 1, 14)
    one = Finding("SQLF302", "requires forms a cycle: a -> b -> a; remove one", "b.sql", 1, 14)
    rotated = Finding("SQLF302", "requires forms a cycle: b -> a -> b; remove one", "a.sql", 1, 14)
    assert dedupe([via, direct, one, rotated]) == [direct, one]


# ------------------------------------------------------------------ the tests' uses()

TEST_FILE = '''\
import pytest
from sqlfix import uses

pytestmark = uses("users.sql")

@uses("orders.sql", "nope.sql")
def test_a(sqlfix):
    sqlfix.load("dynamic.sql")
    note = "é"; sqlfix.render("missing_render.sql")

@pytest.mark.sqlfix("gone.sql")  # sqlfix: noqa: SQLF602
@pytest.mark.uses("network.sql")  # not sqlfix's mark (any more): names nothing
def test_b():
    names = ["products.sql"]
    uses(*names)  # not seen: names built at run time
'''


def test_uses_are_read_from_the_source_without_import(tmp_path: Path) -> None:
    tests = make_fixtures(tmp_path / "tests", {"test_shop.py": TEST_FILE, "helpers.py": 'uses("x.sql")'})
    found = [(u.name, u.line, u.col, u.call) for u in usage.scan(tests)]
    assert found == [
        ("users.sql", 4, 19, "uses"),
        ("orders.sql", 6, 7, "uses"),
        ("nope.sql", 6, 21, "uses"),
        ("dynamic.sql", 8, 17, "sqlfix.load"),
        ("missing_render.sql", 9, 31, "sqlfix.render"),  # columns count characters, not bytes
        ("gone.sql", 11, 21, "pytest.mark.sqlfix"),
    ]


def test_a_test_file_that_does_not_parse_is_skipped(tmp_path: Path) -> None:
    tests = make_fixtures(tmp_path / "tests", {"test_x.py": "def broken(:\n", "conftest.py": "uses('a.sql')\n"})
    assert [u.name for u in usage.scan(tests)] == ["a.sql"]


def test_unused_fixtures_and_uses_naming_missing_ones(tmp_path: Path) -> None:
    make_fixtures(tmp_path / "tests", {"test_shop.py": TEST_FILE})
    files: dict[str, str | bytes] = {
        "users.sql": "SELECT 1;\n",
        "orders.sql": "-- requires: products.sql\nSELECT 1;\n",
        "products.sql": "SELECT 1;\n",  # required by orders.sql: used
        "dynamic.sql": "SELECT 1;\n",
        "lonely.sql": "SELECT 1;\n",
        "kept.sql": "-- sqlfix: noqa: SQLF601 (loaded by hand in psql)\nSELECT 1;\n",
    }
    result = run_lint(tmp_path, files, LintOptions(tests=tmp_path / "tests"))
    assert places(result) == [
        ("lonely.sql", 1, 1, "SQLF601"),
        ("test_shop.py", 6, 21, "SQLF602"),
        ("test_shop.py", 9, 31, "SQLF602"),
    ]
    missing = result.findings[1]
    assert missing.path == str(Path("tests", "test_shop.py"))
    assert "names a missing fixture" in missing.message
    assert result.findings[0].severity is Severity.WARNING


def test_without_a_tests_directory_no_fixture_is_unused(tmp_path: Path) -> None:
    assert run_lint(tmp_path, {"lonely.sql": "SELECT 1;\n"}).findings == ()


# ------------------------------------------------------------------ registry and docs


def test_the_registry_holds_every_guard_rule_with_its_real_severity() -> None:
    assert set(guard.RULES) <= set(RULES)
    for code, (name, summary) in guard.RULES.items():
        assert (RULES[code].name, RULES[code].summary) == (name, summary)
    examples = {"SQLF101": "DROP TABLE t;", "SQLF403": "", "SQLF501": "SELECT now();", "SQLF402": "SELECT 1"}
    for code, sql in examples.items():
        (violation,) = [v for v in guard.scan(sql).violations if v.code == code]
        assert RULES[code].severity is violation.severity


def test_registry_codes_and_names() -> None:
    assert list(RULES) == sorted(RULES)
    assert all(re.fullmatch(r"SQLF\d{3}", code) for code in RULES)
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", r.name) for r in RULES.values())
    assert len({r.name for r in RULES.values()}) == len(RULES)
    assert {"SQLF601", "SQLF602", "SQLF701"} <= set(RULES)
    assert RULES["SQLF601"].severity is Severity.WARNING
    assert RULES["SQLF602"].severity is Severity.ERROR


DOCS = (REPO / "docs" / "lint.md").read_text(encoding="utf-8")


def doc_section(code: str) -> str:
    rule = RULES[code]
    start = DOCS.index(f"\n### {rule.name} ({code})\n")
    end = DOCS.find("\n### ", start + 1)
    return DOCS[start : end if end > 0 else len(DOCS)]


def doc_example(section: str, label: str) -> str | None:
    match = re.search(rf"\*\*{label}\*\*[^\n]*\n\n```sql\n(.*?)```", section, re.DOTALL)
    return match.group(1) if match else None


@pytest.mark.parametrize("code", list(RULES))
def test_every_rule_is_documented(code: str) -> None:
    section = doc_section(code)
    for part in ("**What it does**", "**Why**", "**Bad**", "**Good**", "**Silence it**"):
        assert part in section, f"{code}: {part} missing in docs/lint.md"
    assert f"[{RULES[code].name}](#{RULES[code].anchor})" in DOCS  # the table links it


SINGLE_FILE = ["SQLF101", "SQLF102", "SQLF103", "SQLF104", "SQLF201", "SQLF202", "SQLF203", "SQLF204"]
SINGLE_FILE += ["SQLF401", "SQLF402", "SQLF403", "SQLF404", "SQLF405", "SQLF501"]


@pytest.mark.parametrize("code", SINGLE_FILE)
def test_doc_examples_fire_and_stay_silent(tmp_path: Path, code: str) -> None:
    section = doc_section(code)
    bad, good = doc_example(section, "Bad"), doc_example(section, "Good")
    assert bad is not None and good is not None
    assert code in {f.code for f in run_lint(tmp_path / "bad", {"x.sql": bad}).findings}
    assert run_lint(tmp_path / "good", {"x.sql": good}).findings == ()


def test_requires_doc_examples(tmp_path: Path) -> None:
    section = doc_section("SQLF301")
    bad, good = doc_example(section, "Bad"), doc_example(section, "Good")
    assert bad is not None and good is not None
    users = "INSERT INTO users VALUES ({{ id('users', 'ann') }});\n"
    assert [f.code for f in run_lint(tmp_path / "b", {"orders.sql": bad, "users.sql": users}).findings] == ["SQLF301"]
    assert run_lint(tmp_path / "g", {"orders.sql": good, "users.sql": users}).findings == ()


# ------------------------------------------------------------------ formats

FINDINGS = [
    Finding("SQLF101", "DDL statement (DROP TABLE)", "fx/a.sql", 3, 5),
    Finding("SQLF501", "nondeterministic now(), 100%\nsure", "fx/b, c.sql", 1, 2, Severity.WARNING),
]


def test_text_format() -> None:
    assert report.text(FINDINGS, 2).splitlines() == [
        "fx/a.sql:3:5: SQLF101 DDL statement (DROP TABLE)",
        "fx/b, c.sql:1:2: SQLF501 nondeterministic now(), 100%",
        "sure",
        "Found 2 findings (1 error, 1 warning) in 2 files.",
    ]


@pytest.mark.parametrize(
    ("findings", "fixtures", "line"),
    [
        ([], 1, "All checks passed (1 fixture)."),
        ([], 5, "All checks passed (5 fixtures)."),
        (FINDINGS[:1], 3, "Found 1 finding (1 error, 0 warnings) in 1 file."),
    ],
)
def test_summary(findings: list[Finding], fixtures: int, line: str) -> None:
    assert report.summary(findings, fixtures) == line


def validate_json_findings(data: object) -> None:
    """The JSON output's schema: a list of ruff-like finding objects."""
    assert isinstance(data, list)
    for item in data:
        assert isinstance(item, dict)
        assert set(item) == {"code", "name", "severity", "message", "filename", "location", "url"}
        assert item["code"] in RULES and item["name"] == RULES[item["code"]].name
        assert item["severity"] in ("error", "warning")
        assert isinstance(item["message"], str) and item["message"]
        assert isinstance(item["filename"], str) and item["filename"]
        assert set(item["location"]) == {"row", "column"}
        assert all(isinstance(v, int) and v >= 1 for v in item["location"].values())
        assert item["url"] == f"https://sqlfix.readthedocs.io/en/latest/lint/#{RULES[item['code']].anchor}"


def test_json_format() -> None:
    data = json.loads(report.as_json(FINDINGS, 2))
    validate_json_findings(data)
    assert data[1] == {
        "code": "SQLF501",
        "name": "nondeterministic-function",
        "severity": "warning",
        "message": "nondeterministic now(), 100%\nsure",
        "filename": "fx/b, c.sql",
        "location": {"row": 1, "column": 2},
        "url": "https://sqlfix.readthedocs.io/en/latest/lint/#nondeterministic-function-sqlf501",
    }
    assert json.loads(report.as_json([], 0)) == []


def test_github_format_escapes_per_the_workflow_command_rules() -> None:
    assert report.github(FINDINGS, 2).splitlines() == [
        "::error file=fx/a.sql,line=3,col=5,title=SQLF101::DDL statement (DROP TABLE)",
        "::warning file=fx/b%2C c.sql,line=1,col=2,title=SQLF501::nondeterministic now(), 100%25%0Asure",
        "Found 2 findings (1 error, 1 warning) in 2 files.",
    ]


def test_requires_not_in_header_doc_examples(tmp_path: Path) -> None:
    section = doc_section("SQLF304")
    bad, good = doc_example(section, "Bad"), doc_example(section, "Good")
    assert bad is not None and good is not None
    users = "INSERT INTO users VALUES ({{ id('users', 'ann') }});\n"
    found = run_lint(tmp_path / "b", {"orders.sql": bad, "users.sql": users}).findings
    assert [(f.code, f.line, f.col) for f in found] == [("SQLF304", 2, 1)]
    assert run_lint(tmp_path / "g", {"orders.sql": good, "users.sql": users}).findings == ()


def test_uses_aliases_are_seen_and_other_uses_methods_are_not(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_alias.py").write_text(
        "import sqlfix as sf\n"
        "from sqlfix import uses as u\n"
        "@u('a.sql')\ndef test_a(): pass\n"
        "@sf.uses('b.sql')\ndef test_b(): pass\n"
        "class Other:\n    def uses(self, name): pass\n"
        "Other().uses('not-a-fixture.sql')\n",
        encoding="utf-8",
    )
    assert [u.name for u in usage.scan(tests)] == ["a.sql", "b.sql"]


def test_the_tests_directory_may_be_reached_through_dot_dirs(tmp_path: Path) -> None:
    tests = tmp_path / ".project" / "tests"
    tests.mkdir(parents=True)
    (tests / "test_x.py").write_text("from sqlfix import uses\n@uses('a.sql')\ndef test(): pass\n")
    (tests / ".hidden").mkdir()
    (tests / ".hidden" / "test_y.py").write_text("from sqlfix import uses\nuses('b.sql')\n")
    assert [u.name for u in usage.scan(tests)] == ["a.sql"]
    assert [u.name for u in usage.scan(tmp_path / ".project" / ".." / ".project" / "tests")] == ["a.sql"]


def test_an_empty_select_is_a_usage_error(tmp_path: Path) -> None:
    from sqlfix.cli.lint import lint_options
    from sqlfix.cli.targets import UsageError
    from sqlfix.config import load_settings

    with pytest.raises(UsageError, match="select names no rule"):
        lint_options(load_settings(tmp_path), select=[])


def test_every_missing_requirement_of_a_header_is_reported(tmp_path: Path) -> None:
    text = "-- requires: x.sql, users.sql, y.sql\nSELECT 1;\n"
    found = run_lint(tmp_path, {"m.sql": text, "users.sql": "SELECT 1;\n"}).findings
    assert [(f.code, f.line, f.col) for f in found] == [("SQLF301", 1, 14), ("SQLF301", 1, 32)]


def test_a_fixture_above_the_size_limit_is_refused_and_copy_rows_do_not_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlfix.compiler import library

    monkeypatch.setattr(library, "MAX_SQL_CHARS", 200)
    inserts = "".join(f"INSERT INTO t VALUES ({i}, 'row {i}');\n" for i in range(20))
    copy = "COPY t (a, b) FROM stdin;\n" + "".join(f"{i}\trow {i}\n" for i in range(100)) + "\\.\n"
    result = run_lint(tmp_path, {"big.sql": inserts, "copy.sql": copy})
    assert places(result) == [("big.sql", 1, 1, "SQLF406")]
    assert "COPY form" in result.findings[0].message


@pytest.mark.parametrize("text", [
    "/* rows */ COPY t (a) FROM stdin;\n1\n\\.\n",
    "INSERT INTO t VALUES (0); COPY t (a) FROM stdin;\n1\n\\.\n",
])
def test_copy_from_stdin_not_at_its_line_start_says_so(tmp_path: Path, text: str) -> None:
    # the message used to advise writing "COPY ... FROM stdin", which the fixture does
    result = run_lint(tmp_path, {"case.sql": text})
    refused = [f for f in result.findings if f.code == "SQLF103"]
    assert len(refused) == 1 and "not at the start of its line" in refused[0].message
    assert "on a line of its own" in refused[0].message


@pytest.mark.parametrize("after", [
    " INSERT INTO t VALUES (99);",
    "INSERT INTO t VALUES (99);",
    " SELECT 1; -- note",
    "\tDELETE FROM t;",
    " /* c */ UPDATE t SET a = 1;",
])
def test_a_statement_after_copy_from_stdin_on_its_line_is_refused(tmp_path: Path, after: str) -> None:
    # psql runs it after the rows; it was cut out with them and never ran
    text = f"COPY t (a) FROM stdin;{after}\n1\n\\.\nINSERT INTO t VALUES (2);\n"
    result = run_lint(tmp_path, {"case.sql": text})
    col = text.index(after.replace("/* c */", "").split()[0]) + 1  # at its first word
    assert places(result) == [("case.sql", 1, col, "SQLF405")]
    assert "after `\\.`" in result.findings[0].message


@pytest.mark.parametrize("after", ["", "   ", " -- rows follow", "\r", " /* c */", " /* c */ -- d"])
def test_blanks_and_comments_after_copy_from_stdin_are_fine(tmp_path: Path, after: str) -> None:
    text = f"COPY t (a) FROM stdin;{after}\n1\n\\.\n"
    assert run_lint(tmp_path, {"case.sql": text}).findings == ()


@pytest.mark.parametrize(("header", "col"), [
    ("-- sqlfix: expect-error 2350\n", 1),  # four characters: no SQLSTATE
    ("-- sqlfix: expect-error foreign_key_violation\n", 1),  # a condition name
    ("-- sqlfix: expect_error 23503\n", 1),
    ("-- sqlfix: expect-error\n", 1),
    ("-- requires: users.sql\n  -- SQLFIX: expect-errors 23503\n", 3),
    ("-- sqlfix: expect-error 23503\n-- sqlfix: expect-error 23505\n", 1),  # the second is not read
])
def test_a_sqlfix_header_line_that_is_not_read_is_reported(
    tmp_path: Path, header: str, col: int
) -> None:
    # it was ignored silently: `check` then failed the negative example as an ordinary one
    text = header + "INSERT INTO t VALUES (1);\n"
    result = run_lint(tmp_path, {"case.sql": text, "users.sql": "SELECT 1;\n"})
    line = header.count("\n")
    assert places(result) == [("case.sql", line, col, "SQLF305")]
    assert "expect-error" in result.findings[0].message


def test_a_well_formed_expect_error_header_raises_nothing(tmp_path: Path) -> None:
    text = "-- data the schema refuses\n--sqlfix:expect-error 23P01\nINSERT INTO t VALUES (1);\n"
    assert run_lint(tmp_path, {"case.sql": text}).findings == ()


def test_other_sqlfix_comment_lines_are_no_expect_error_header(tmp_path: Path) -> None:
    # render's file lines and noqa comments stay what they were
    text = "-- sqlfix: users.sql (seed 0)\n-- sqlfix: noqa: SQLF501\nINSERT INTO t VALUES (1);\n"
    assert run_lint(tmp_path, {"case.sql": text}).findings == ()


NEWER = """INSERT INTO t VALUES (1);
MERGE INTO t USING s ON t.a = s.a
  WHEN MATCHED THEN DO NOTHING;
SELECT 1_000;
SELECT JSON_VALUE('{}', '$.a');  -- sqlfix: noqa: SQLF407
"""


@pytest.mark.parametrize(("major", "codes"), [
    (14, [(2, 1, "MERGE", 15), (4, 1, "the numeric literal 1_000", 16)]),
    (15, [(4, 1, "the numeric literal 1_000", 16)]),
    (17, []),
])
def test_lint_names_syntax_the_configured_server_version_lacks(tmp_path: Path, major: int,
                                                               codes: list) -> None:
    # lint read no server_version: MERGE on 14 was left to the server's bare syntax error
    setting = f'server_version = "{major}" in pyproject.toml'
    result = run_lint(tmp_path, {"m.sql": NEWER}, LintOptions(server=(major, setting)))
    assert [(f.line, f.col, f.code, f.message) for f in result.findings] == [
        (line, col, "SQLF407", f"{what} needs PostgreSQL {since} or later, and {setting}; "
         f"rewrite the statement for {major}, or test on a newer server")
        for line, col, what, since in codes]


def test_lint_without_server_version_judges_no_version(tmp_path: Path) -> None:
    assert run_lint(tmp_path, {"m.sql": NEWER}).findings == ()


def test_the_cli_reads_server_version_for_lint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlfix.cli.main import main

    (tmp_path / "pyproject.toml").write_text('[tool.sqlfix]\nserver_version = "14"\n')
    make_fixtures(tmp_path / "fixtures_sql", {"m.sql": NEWER})
    assert main(["lint"]) == 1
    out = capsys.readouterr().out
    assert (f'fixtures_sql/m.sql:2:1: SQLF407 MERGE needs PostgreSQL 15 or later, and '
            f'[tool.sqlfix] server_version = "14" in {tmp_path / "pyproject.toml"}; ') in out
