"""The statement guard: what a fixture may hold, where each problem is reported."""

from __future__ import annotations

import re

import pytest

from sqlfix.compiler.guard import RULES, GuardResult, Statement, Violation, inside_string, scan
from sqlfix.errors import Severity

DDL, TX, OTHER = "SQLF101", "SQLF102", "SQLF103"
OUTSIDE, SYNTAX = "SQLF104", "SQLF404"
OPEN, NO_SEMI, EMPTY, NONDET = "SQLF401", "SQLF402", "SQLF403", "SQLF501"

# (id, sql, expected violation codes in offset order)
CASES: list[tuple[str, str, tuple[str, ...]]] = [
    # --- allowed data statements
    ("insert", "INSERT INTO users (id, name) VALUES (1, 'ann');", ()),
    ("update", "UPDATE users SET name = 'bo' WHERE id = 1;", ()),
    ("delete", "DELETE FROM users WHERE id = 1;", ()),
    ("select", "SELECT setval('users_id_seq', 10);", ()),
    ("values", "VALUES (1), (2);", ()),
    ("table", "TABLE users;", ()),
    (
        "merge",
        "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id);",
        (),
    ),
    ("paren-select", "(SELECT 1) UNION (SELECT 2);", ()),
    ("lowercase", "insert into users values (1);", ()),
    ("insert-select", "INSERT INTO t (a) SELECT a FROM (SELECT 1 AS a) s;", ()),
    ("with-insert", "WITH x AS (SELECT 1 AS id) INSERT INTO t SELECT id FROM x;", ()),
    ("with-dml-cte", "WITH x AS (INSERT INTO a VALUES (1) RETURNING id) SELECT id FROM x;", ()),
    (
        "with-recursive",
        "WITH RECURSIVE n(i) AS (VALUES (1) UNION ALL SELECT i + 1 FROM n WHERE i < 3)\n"
        "INSERT INTO nums SELECT i FROM n;",
        (),
    ),
    ("set-local", "SET LOCAL search_path TO app, public;", ()),
    ("set-constraints", "SET CONSTRAINTS ALL DEFERRED;", ()),
    ("set-local-lower", "set local timezone = 'UTC';", ()),
    ("params-and-casts", "INSERT INTO t VALUES ($1::int, 'x'::text, -1.5e3, .5);", ()),
    ("several", "INSERT INTO a VALUES (1);\n\nINSERT INTO b VALUES (2);\n", ()),
    ("stray-semicolons", "INSERT INTO a VALUES (1);;\n;", ()),
    ("keyword-in-name", "INSERT INTO begin_log (created_at, drop_count) VALUES ('x', 0);", ()),
    # --- keywords inside literals, identifiers and comments are data
    ("string", "INSERT INTO t (s) VALUES ('CREATE TABLE x; DROP TABLE y; BEGIN;');", ()),
    ("string-doubled-quote", "INSERT INTO t (s) VALUES ('it''s; COMMIT; now()');", ()),
    ("e-string", r"INSERT INTO t (s) VALUES (E'it\'s; DROP TABLE x');", ()),
    ("e-string-backslash-end", r"INSERT INTO t (s) VALUES (e'dir\\'); SELECT 1;", ()),
    ("standard-backslash", r"INSERT INTO t (s) VALUES ('a\'); -- not a string: ');", ()),
    ("e-string-continued", "INSERT INTO t VALUES (E'a'\n  'it\\'s; DROP TABLE x');", ()),
    ("string-continued", "INSERT INTO t VALUES ('a' -- c\n'b; COMMIT');", ()),
    ("unicode-bit-hex", r"INSERT INTO t VALUES (U&'d\0061t', B'101', X'1F', N'n');", ()),
    ("dollar", "INSERT INTO t (s) VALUES ($$DROP TABLE x; now()$$);", ()),
    ("dollar-tag", "INSERT INTO t (s) VALUES ($fn$ BEGIN; $$ x $$; COMMIT; $fn$);", ()),
    ("dollar-in-identifier", "INSERT INTO t$$x (a$b) VALUES (1);", ()),
    (
        "quoted-identifier",
        'INSERT INTO "create" ("drop", "now", "select ""x""") VALUES (1, 2, 3);',
        (),
    ),
    ("line-comment", "INSERT INTO t VALUES (1); -- DROP TABLE t;\n", ()),
    ("block-comment", "/* COMMIT; */ INSERT INTO t VALUES (1);", ()),
    ("nested-comment", "/* a /* b */ DROP TABLE x; */ INSERT INTO t VALUES (1);", ()),
    ("comment-then-code", "-- header\n/* c */ INSERT /* x */ INTO t VALUES (1); /* tail */", ()),
    ("into-in-string", "SELECT 'SELECT 1 INTO t' AS s;", ()),
    ("into-in-subquery-insert", "INSERT INTO t SELECT * FROM s;", ()),
    ("now-in-string", "INSERT INTO t VALUES ('now()', 'CURRENT_DATE');", ()),
    ("now-as-column", "INSERT INTO t (now, random) VALUES (1, 2);", ()),
    ("random-as-table", "INSERT INTO random (a) VALUES (1);", ()),
    ("random-as-qualified-table", "INSERT INTO app.random (a) VALUES (1);", ()),
    ("current-date-as-column", "SELECT t.current_date, 1 AS localtime FROM t;", ()),
    (
        "uuid-from-template",
        "INSERT INTO t (id) VALUES ('7c9e6679-7425-40de-944b-e07fc1f90ae7');",
        (),
    ),
    # --- SQLF101 ddl-statement
    ("create-table", "CREATE TABLE t (id int);", (DDL,)),
    ("create-lower", "create unique index i on t (a);", (DDL,)),
    (
        "create-function-dollar",
        "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$\n"
        "LANGUAGE plpgsql;\nINSERT INTO t VALUES (1);",
        (DDL,),
    ),
    (
        "create-function-atomic",
        "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; SELECT 2; END;\n"
        "INSERT INTO t VALUES (1);",
        (DDL,),
    ),
    ("alter", "ALTER TABLE t ADD COLUMN b int;", (DDL,)),
    ("drop", "DROP TABLE IF EXISTS t;", (DDL,)),
    ("truncate", "TRUNCATE users;", (DDL,)),
    ("grant", "GRANT SELECT ON t TO app;", (DDL,)),
    ("revoke", "REVOKE ALL ON t FROM app;", (DDL,)),
    ("comment-on", "COMMENT ON TABLE t IS 'users';", (DDL,)),
    ("security-label", "SECURITY LABEL ON TABLE t IS 'x';", (DDL,)),
    ("reindex", "REINDEX TABLE t;", (DDL,)),
    ("cluster", "CLUSTER t USING t_pkey;", (DDL,)),
    ("refresh", "REFRESH MATERIALIZED VIEW v;", (DDL,)),
    ("import-foreign", "IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO app;", (DDL,)),
    ("select-into", "SELECT * INTO copy FROM t;", (DDL,)),
    ("select-into-temp", "select a, b into temp copy from t;", (DDL,)),
    ("with-select-into", "WITH x AS (SELECT 1 AS a) SELECT a INTO copy FROM x;", (DDL,)),
    ("paren-select-into", "(SELECT 1 INTO copy);", (DDL,)),
    ("ddl-after-backslash-string", r"INSERT INTO t (s) VALUES ('a\'); DROP TABLE x; --');", (DDL,)),
    # the continued part of an E'' string keeps E'' rules: \'' is a quote, then the end
    ("ddl-after-e-continuation", "SELECT E'a'\n-- c\n'x\\''; DROP TABLE t; --';", (DDL,)),
    # --- SQLF102 transaction-control
    ("begin", "BEGIN;", (TX,)),
    ("begin-work", "begin work;", (TX,)),
    ("start", "START TRANSACTION ISOLATION LEVEL SERIALIZABLE;", (TX,)),
    ("commit", "COMMIT;", (TX,)),
    ("end", "END;", (TX,)),
    ("rollback", "ROLLBACK;", (TX,)),
    ("abort", "ABORT;", (TX,)),
    ("savepoint", "SAVEPOINT s;", (TX,)),
    ("release", "RELEASE SAVEPOINT s;", (TX,)),
    ("rollback-to", "ROLLBACK TO SAVEPOINT s;", (TX,)),
    ("prepare-transaction", "PREPARE TRANSACTION 'x';", (TX,)),
    ("commit-prepared", "COMMIT PREPARED 'x';", (TX,)),
    ("rollback-prepared", "ROLLBACK PREPARED 'x';", (TX,)),
    ("wrapped", "BEGIN;\nINSERT INTO t VALUES (1);\nCOMMIT;", (TX, TX)),
    # --- SQLF103 disallowed-statement
    ("call", "CALL seed_users();", (OTHER,)),
    ("do", "DO $$ BEGIN INSERT INTO t VALUES (1); END $$;", (OTHER,)),
    ("copy", "COPY t FROM stdin;", (OTHER,)),
    ("set", "SET search_path = app;", (OTHER,)),
    ("set-session", "SET SESSION timezone = 'UTC';", (OTHER,)),
    ("set-transaction", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;", (OTHER,)),
    ("reset", "RESET ALL;", (OTHER,)),
    ("vacuum", "VACUUM t;", (OTHER,)),
    ("analyze", "ANALYZE t;", (OTHER,)),
    ("lock", "LOCK TABLE t IN EXCLUSIVE MODE;", (OTHER,)),
    ("discard", "DISCARD ALL;", (OTHER,)),
    ("load", "LOAD 'auto_explain';", (OTHER,)),
    ("listen", "LISTEN ch;", (OTHER,)),
    ("notify", "NOTIFY ch, 'x';", (OTHER,)),
    ("unlisten", "UNLISTEN *;", (OTHER,)),
    ("prepare", "PREPARE q AS SELECT 1;", (OTHER,)),
    ("execute", "EXECUTE q;", (OTHER,)),
    ("deallocate", "DEALLOCATE q;", (OTHER,)),
    ("explain", "EXPLAIN ANALYZE DELETE FROM t;", (OTHER,)),
    ("checkpoint", "CHECKPOINT;", (OTHER,)),
    ("show", "SHOW search_path;", (OTHER,)),
    ("declare", "DECLARE c CURSOR FOR SELECT 1;", (OTHER,)),
    ("meta-include", "\\i other.sql\nINSERT INTO t VALUES (1);", (OTHER,)),
    ("meta-set", "\\set n 3\n", (OTHER,)),
    ("meta-copy", "\\copy t from 'rows.csv' csv\n", (OTHER,)),
    ("meta-indented", "INSERT INTO t VALUES (1);\n   \\ir more.sql\n", (OTHER,)),
    ("meta-cuts-statement", "SELECT 1 \\gset\n", (OTHER,)),
    # --- SQLF401 unterminated-literal (the end of the text is then not checked)
    ("open-string", "INSERT INTO t VALUES ('abc);", (OPEN,)),
    ("open-e-string", r"INSERT INTO t VALUES (E'abc\');", (OPEN,)),
    ("open-identifier", 'INSERT INTO "t VALUES (1);', (OPEN,)),
    ("open-dollar", "INSERT INTO t VALUES ($$abc);", (OPEN,)),
    ("open-dollar-tag", "INSERT INTO t VALUES ($x$abc$$);", (OPEN,)),
    ("open-e-continuation", "SELECT E'a'\n'x\\'; DROP TABLE t; --", (OPEN,)),
    ("open-comment", "INSERT INTO t VALUES (1);\n/* note", (OPEN,)),
    ("open-nested-comment", "/* a /* b */ INSERT INTO t VALUES (1);", (OPEN,)),
    ("open-after-ddl", "DROP TABLE t;\nINSERT INTO t VALUES ('x", (DDL, OPEN)),
    # --- SQLF402 missing-semicolon
    ("no-semicolon", "INSERT INTO t VALUES (1)", (NO_SEMI,)),
    ("no-semicolon-comment", "INSERT INTO t VALUES (1) -- last\n", (NO_SEMI,)),
    ("no-semicolon-last", "INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2)\n", (NO_SEMI,)),
    ("ddl-and-no-semicolon", "CREATE TABLE t (a int)", (DDL, NO_SEMI)),
    # --- SQLF403 empty-fixture
    ("empty", "", (EMPTY,)),
    ("whitespace", " \n\t\n", (EMPTY,)),
    ("comments-only", "-- users\n/* none yet */\n", (EMPTY,)),
    ("semicolons-only", ";\n;", (EMPTY,)),
    # --- SQLF501 nondeterministic-function
    ("now", "INSERT INTO t VALUES (now());", (NONDET,)),
    ("now-upper-space", "INSERT INTO t VALUES (NOW ());", (NONDET,)),
    ("now-qualified", "INSERT INTO t VALUES (pg_catalog.now());", (NONDET,)),
    ("random", "UPDATE t SET score = random();", (NONDET,)),
    ("gen-random-uuid", "INSERT INTO t VALUES (gen_random_uuid());", (NONDET,)),
    ("uuid-generate-v4", "INSERT INTO t VALUES (uuid_generate_v4());", (NONDET,)),
    ("clock", "INSERT INTO t VALUES (clock_timestamp());", (NONDET,)),
    ("statement-ts", "INSERT INTO t VALUES (statement_timestamp());", (NONDET,)),
    ("transaction-ts", "INSERT INTO t VALUES (transaction_timestamp());", (NONDET,)),
    ("timeofday", "INSERT INTO t VALUES (timeofday());", (NONDET,)),
    ("setseed", "SELECT setseed(0.5);", (NONDET,)),
    ("current-timestamp", "INSERT INTO t VALUES (CURRENT_TIMESTAMP);", (NONDET,)),
    ("current-timestamp-precision", "INSERT INTO t VALUES (current_timestamp(0));", (NONDET,)),
    ("current-date", "INSERT INTO t VALUES (current_date);", (NONDET,)),
    ("current-time", "INSERT INTO t VALUES (CURRENT_TIME);", (NONDET,)),
    ("localtimestamp", "INSERT INTO t VALUES (LOCALTIMESTAMP);", (NONDET,)),
    ("localtime", "INSERT INTO t VALUES (LOCALTIME);", (NONDET,)),
    ("two-in-one", "INSERT INTO t VALUES (now(), random());", (NONDET, NONDET)),
    ("in-where", "DELETE FROM t WHERE at < now() - interval '1 day';", (NONDET,)),
    ("in-set-local", "SET LOCAL x.y = 1; UPDATE t SET at = now();", (NONDET,)),
    # --- settings: SET LOCAL only, and only settings that leave the reading of text and the
    # session's identity alone (#8: standard_conforming_strings off made 'x\\' end later)
    ("set-local-scs", "SET LOCAL standard_conforming_strings = off;", (OTHER,)),
    ("set-local-scs-upper", "SET LOCAL STANDARD_CONFORMING_STRINGS TO 'off';", (OTHER,)),
    ("set-local-client-encoding", "SET LOCAL client_encoding = 'SJIS';", (OTHER,)),
    ("set-local-names", "SET LOCAL NAMES 'SJIS';", (OTHER,)),
    ("set-local-backslash-quote", "SET LOCAL backslash_quote = on;", (OTHER,)),
    ("set-local-escape-warning", "SET LOCAL escape_string_warning = off;", (OTHER,)),
    ("set-local-role", "SET LOCAL ROLE postgres;", (OTHER,)),
    ("set-local-session-auth", "SET LOCAL SESSION AUTHORIZATION postgres;", (OTHER,)),
    ("set-local-statement-timeout", "SET LOCAL statement_timeout = 0;", (OTHER,)),
    ("set-local-transaction", "SET LOCAL TRANSACTION READ WRITE;", (OTHER,)),
    ("set-local-timezone", "SET LOCAL TIME ZONE 'UTC';", ()),
    ("set-local-datestyle", "SET LOCAL datestyle = 'ISO, DMY';", ()),
    ("set-local-schema", "SET LOCAL SCHEMA 'app';", ()),
    ("set-local-custom", "SET LOCAL app.tenant_id = '42';", ()),
    ("set-local-default", "SET LOCAL search_path TO DEFAULT;", ()),
    ("set-constraints-named", "SET CONSTRAINTS orders_user_fk IMMEDIATE;", ()),
    # --- SQLF104 outside-reach: calls with effects beyond the test's transaction
    ("lo-export", "SELECT lo_export(16384, '/tmp/x');", (OUTSIDE,)),
    ("lo-import-qualified", "SELECT pg_catalog.lo_import('/etc/passwd');", (OUTSIDE,)),
    ("lo-export-quoted", 'SELECT "pg_catalog"."lo_export"(1, \'/tmp/x\');', (OUTSIDE,)),
    ("lo-export-unicode-escaped", 'SELECT U&"\\006Co_export"(1, \'/tmp/x\');', (OUTSIDE,)),
    ("now-unicode-escaped", 'INSERT INTO t VALUES (U&"\\006Eow"());', (NONDET,)),
    ("lo-in-insert", "INSERT INTO t (oid) VALUES (lo_from_bytea(0, '\\x00'));", (OUTSIDE,)),
    ("read-file", "INSERT INTO t SELECT pg_read_file('/etc/passwd');", (OUTSIDE,)),
    ("read-binary-file", "SELECT pg_read_binary_file('x');", (OUTSIDE,)),
    ("ls-dir", "SELECT * FROM pg_ls_dir('.');", (OUTSIDE,)),
    ("ls-waldir", "SELECT * FROM pg_ls_waldir();", (OUTSIDE,)),
    ("stat-file", "SELECT pg_stat_file('postgresql.conf');", (OUTSIDE,)),
    ("file-write", "SELECT pg_file_write('x', 'y', false);", (OUTSIDE,)),
    ("terminate", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity;", (OUTSIDE,)),
    ("cancel", "SELECT pg_cancel_backend(1);", (OUTSIDE,)),
    ("reload", "SELECT pg_reload_conf();", (OUTSIDE,)),
    ("rotate", "SELECT pg_rotate_logfile();", (OUTSIDE,)),
    ("dblink", "SELECT * FROM dblink('dbname=x', 'DROP TABLE t') AS r(a text);", (OUTSIDE,)),
    ("dblink-exec", "SELECT dblink_exec('DROP TABLE t');", (OUTSIDE,)),
    ("set-config", "SELECT set_config('standard_conforming_strings', 'off', true);", (OUTSIDE,)),
    ("advisory-lock", "SELECT pg_advisory_lock(1);", (OUTSIDE,)),
    ("advisory-xact-lock", "SELECT pg_advisory_xact_lock(1);", ()),
    ("sleep", "SELECT pg_sleep(10);", (OUTSIDE,)),
    ("query-to-xml", "SELECT query_to_xml('DROP TABLE t', true, true, '');", (OUTSIDE,)),
    ("notify-fn", "SELECT pg_notify('ch', 'x');", (OUTSIDE,)),
    ("in-cte", "WITH x AS (SELECT lo_export(1, '/tmp/y')) INSERT INTO t SELECT 1 FROM x;", (OUTSIDE,)),
    ("in-where-sub", "DELETE FROM t WHERE id IN (SELECT pg_cancel_backend(1));", (OUTSIDE,)),
    ("copy-to-file", "COPY t TO '/tmp/t.csv';", (OUTSIDE,)),
    ("copy-from-program", "COPY t FROM PROGRAM 'id';", (OUTSIDE,)),
    ("copy-stdout", "COPY t TO STDOUT;", (OTHER,)),
    ("lo-name-as-column", "INSERT INTO t (lo_export, pg_sleep) VALUES (1, 2);", ()),
    ("lo-in-string", "INSERT INTO t VALUES ('lo_export(1, ''/tmp/x'')');", ()),
    # --- #8 item 1: the backslash trick is one standard string to the server as to the guard
    # with standard strings, '' inside is a quote and the backslash a character: one SELECT
    ("backslash-trick", "SELECT 'x\\''; DROP TABLE t; --';", ()),
    ("backslash-trick-2", "INSERT INTO t VALUES ('a\\'); DROP TABLE x; --');", (DDL,)),
    (
        "backslash-trick-after-scs",
        "SET LOCAL standard_conforming_strings = off;\nSELECT 'x\\''; DROP TABLE t; --';",
        (OTHER,),
    ),
    # --- SQLF404 syntax-error, found without a database
    ("nul-between-statements", "SELECT 1;\x00DROP TABLE t;", (SYNTAX, DDL)),
    ("nul-in-string", "INSERT INTO t VALUES ('a\x00b');", (SYNTAX,)),
    ("unknown", "FROBNICATE t;", (SYNTAX,)),
    ("starts-with-identifier", '"users" VALUES (1);', (SYNTAX,)),
    ("paren-not-query", "(CREATE TABLE x (a int));", (SYNTAX,)),
    ("typo", "INSRT INTO t VALUES (1);", (SYNTAX,)),
    ("semicolon-in-open-paren", "INSERT INTO t VALUES (1;\nINSERT INTO t VALUES (2);", (SYNTAX,)),
    ("cut-short", "INSERT INTO t VALUES (1,", (SYNTAX,)),
    ("error-then-more", "SELEC 1;\nDROP TABLE t;\nINSERT t;\nINSERT INTO t VALUES (1);", (SYNTAX, DDL, SYNTAX)),
    ("error-after-atomic", "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; SELECT 2; END;\nSELEC 1;", (DDL, SYNTAX)),
    # --- several rules at once, in offset order
    (
        "mixed",
        "BEGIN;\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (now());\nCOPY t TO stdout;\n"
        "INSERT INTO t VALUES (1)",
        (TX, DDL, NONDET, OTHER, NO_SEMI),
    ),
]


@pytest.mark.parametrize(("sql", "codes"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_codes(sql: str, codes: tuple[str, ...]) -> None:
    assert tuple(v.code for v in scan(sql).violations) == codes


def test_case_ids_are_unique() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


# (sql, [(code, what the text at the violation's offset starts with)])
OFFSETS: list[tuple[str, list[tuple[str, str]]]] = [
    ("INSERT INTO t VALUES (1);\n  DROP TABLE t;", [(DDL, "DROP TABLE t;")]),
    ("/* setup */ DROP TABLE t;", [(DDL, "DROP TABLE t;")]),
    ("-- x\n\n  COMMIT;", [(TX, "COMMIT;")]),
    ("SELECT a, b INTO copy FROM t;", [(DDL, "INTO copy")]),
    ("WITH x AS (SELECT 1) SELECT * INTO copy FROM x;", [(DDL, "INTO copy")]),
    ("INSERT INTO t VALUES (1);\n\\i other.sql\n", [(OTHER, "\\i other.sql")]),
    ("INSERT INTO t VALUES ('ok'), ('open);", [(OPEN, "'open);")]),
    ("INSERT INTO t VALUES (E'x\\');", [(OPEN, "E'x")]),
    ('SELECT "a;', [(OPEN, '"a;')]),
    ("SELECT 1;\nSELECT $body$ x;", [(OPEN, "$body$ x;")]),
    ("SELECT 1; /* a /* b */ c", [(OPEN, "/* a /* b */ c")]),
    (
        "INSERT INTO t VALUES (1);\n-- c\nINSERT INTO t VALUES (2)\n",
        [(NO_SEMI, "INSERT INTO t VALUES (2)")],
    ),
    ("-- nothing\n", [(EMPTY, "-- nothing")]),
    (
        "INSERT INTO t VALUES (1, NOW(), 'now()', Current_Date);",
        [(NONDET, "NOW()"), (NONDET, "Current_Date")],
    ),
    (
        "SAVEPOINT a;\nINSERT INTO t VALUES (random());\nTRUNCATE t;\nVACUUM;",
        [(TX, "SAVEPOINT a;"), (NONDET, "random()"), (DDL, "TRUNCATE t;"), (OTHER, "VACUUM;")],
    ),
]


# pglast reports parse-tree locations in bytes of UTF-8: the guard's offsets are characters
OFFSETS += [
    ("INSERT INTO t VALUES ('ééé', now());", [(NONDET, "now()")]),
    ("SELECT '😀';\nSELECT 'déjà' INTO c;", [(DDL, "INTO c")]),
    ("SELECT 'éé';\nSELEC 1;", [(SYNTAX, "SELEC 1")]),
    ("SELECT 'éé', lo_export(1, '/x');", [(OUTSIDE, "lo_export(")]),
    ("SELECT 'é' /* é */, CURRENT_DATE;", [(NONDET, "CURRENT_DATE")]),
    ("INSERT INTO t VALUES (1);\nSELECT 'café', pg_sleep(1)", [(NO_SEMI, "SELECT 'caf"), (OUTSIDE, "pg_sleep")]),
    ("INSERT INTO t VALUES (1,\n  2 3);", [(SYNTAX, "3);")]),
]


@pytest.mark.parametrize(("sql", "expected"), OFFSETS)
def test_offsets(sql: str, expected: list[tuple[str, str]]) -> None:
    violations = scan(sql).violations
    assert [v.code for v in violations] == [code for code, _ in expected]
    for violation, (_, prefix) in zip(violations, expected, strict=True):
        assert sql[violation.offset :].startswith(prefix), violation


# (sql, [(keyword, text)]) for every statement kept
STATEMENTS: list[tuple[str, list[tuple[str, str]]]] = [
    ("", []),
    ("-- only\n;;", []),
    (
        "-- users\nINSERT INTO a VALUES (1);\n\n/* b */ insert into b values (2) ; -- end\n",
        [("INSERT", "INSERT INTO a VALUES (1);"), ("INSERT", "insert into b values (2) ;")],
    ),
    (
        "WITH x AS (SELECT 1) SELECT * FROM x;SET LOCAL a.b = 1;(VALUES (1));",
        [
            ("WITH", "WITH x AS (SELECT 1) SELECT * FROM x;"),
            ("SET", "SET LOCAL a.b = 1;"),
            ("(", "(VALUES (1));"),
        ],
    ),
    (
        "INSERT INTO t VALUES ('a;b', $$c;d$$, \"e;f\"); -- g;h\nSELECT 1",
        [("INSERT", "INSERT INTO t VALUES ('a;b', $$c;d$$, \"e;f\");"), ("SELECT", "SELECT 1")],
    ),
    (
        "\\set x 1  \nINSERT INTO t VALUES (1);",
        [("\\", "\\set x 1  \nINSERT INTO t VALUES (1);")],
    ),
    (
        "INSERT INTO t SELECT (1;\nSELECT 2);\nSELECT 3;",
        [("INSERT", "INSERT INTO t SELECT (1;"), ("SELECT", "SELECT 2);"), ("SELECT", "SELECT 3;")],
    ),
    (
        "CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END;\nCALL p();",
        [
            ("CREATE", "CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END;"),
            ("CALL", "CALL p();"),
        ],
    ),
    ("INSERT INTO t VALUES ('open", [("INSERT", "INSERT INTO t VALUES ('open")]),
]


@pytest.mark.parametrize(("sql", "expected"), STATEMENTS)
def test_statements(sql: str, expected: list[tuple[str, str]]) -> None:
    statements = scan(sql).statements
    assert [(s.keyword, s.text) for s in statements] == expected
    for statement in statements:
        assert sql[statement.offset :].startswith(statement.text)


def test_result_types() -> None:
    result = scan("INSERT INTO t VALUES (now());")
    assert isinstance(result, GuardResult)
    assert result.statements == (Statement("INSERT INTO t VALUES (now());", 0, "INSERT"),)
    (violation,) = result.violations
    assert isinstance(violation, Violation)
    assert (violation.offset, violation.code) == (22, NONDET)


def test_rules_table() -> None:
    assert set(RULES) == {DDL, TX, OTHER, OUTSIDE, OPEN, NO_SEMI, EMPTY, SYNTAX, NONDET}
    assert RULES[DDL][0] == "ddl-statement"
    assert RULES[NONDET][0] == "nondeterministic-function"
    for name, summary in RULES.values():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name)
        assert summary and "\n" not in summary


@pytest.mark.parametrize("sql", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_violation_fields(sql: str) -> None:
    for v in scan(sql).violations:
        assert v.name == RULES[v.code][0]
        warning = v.code in (EMPTY, NONDET)
        assert v.severity is (Severity.WARNING if warning else Severity.ERROR)
        assert v.message and "\n" not in v.message
        assert 0 <= v.offset <= max(len(sql) - 1, 0)


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("CREATE UNIQUE INDEX i ON t (a);", "(CREATE UNIQUE INDEX)"),
        ("create or replace function f() returns int as 'select 1' language sql;",
         "(CREATE OR REPLACE FUNCTION)"),
        ("CREATE TABLE data (a int);", "(CREATE TABLE)"),
        ("SELECT 1 INTO t;", "INSERT INTO ... SELECT"),
        ("START TRANSACTION;", "(START TRANSACTION)"),
        ("COMMIT;", "rolled back"),
        ("SET search_path = x;", "SET LOCAL"),
        ("\\i other.sql", "psql meta-command (\\i)"),
        ("FROBNICATE;", 'syntax error at or near "FROBNICATE"'),
        ("SET LOCAL standard_conforming_strings = off;", "SET LOCAL standard_conforming_strings"),
        ("SELECT pg_catalog.lo_export(1, '/x');", "pg_catalog.lo_export()"),
        ("SELECT pg_terminate_backend(1);", "other sessions"),
        ("COPY t FROM '/etc/passwd';", "COPY with a file"),
        ("SELECT 'x", "string literal"),
        ("/* a /* b */", "nest"),
        ("SELECT $q$ x", "$q$"),
        ("SELECT 1", "';'"),
        ("INSERT INTO t VALUES (1;", 'syntax error at or near ";"'),
        ("INSERT INTO t VALUES (1", "cut short"),
        ("INSERT INTO t VALUES (now());", "`now`"),
        ("INSERT INTO t VALUES (random());", "`rng`"),
        ("INSERT INTO t VALUES (gen_random_uuid());", "`fake`"),
    ],
)  # fmt: skip
def test_messages(sql: str, needle: str) -> None:
    assert any(needle in v.message for v in scan(sql).violations)


def test_each_violation_once_in_offset_order() -> None:
    sql = "BEGIN; SELECT now(), random() INTO t; DO $$ $$; \\q\n"
    violations = scan(sql).violations
    keys = [(v.offset, v.code) for v in violations]
    assert keys == sorted(set(keys))
    assert [v.code for v in violations] == [TX, DDL, OTHER, OTHER]


@pytest.mark.parametrize(
    ("sql", "marker", "inside"),
    [
        ("SELECT ''abc'';", "abc", False),
        ("SELECT 'x', '|';", "|", True),
        ("SELECT '|'", "'|", False),  # at the opening quote: not inside
        ("SELECT E'a\\'|';", "|", True),
        ("SELECT $$ | $$;", "|", True),
        ('SELECT "|";', "|", False),  # quoted identifier
        ("SELECT 1; -- '|'\n", "|", False),  # comment
        ("SELECT 1 | 2;", "|", False),
        ("SELECT 'open |", "|", True),
    ],
)
def test_inside_string(sql: str, marker: str, inside: bool) -> None:
    assert inside_string(sql, sql.index(marker)) is inside


def test_placeholder_quoted_twice() -> None:
    # `'{{ name }}'` rendered: the value's own quotes follow the template's
    sql = "INSERT INTO t VALUES (''ann'');"
    assert inside_string(sql, sql.index("'ann")) is True
    assert inside_string(sql, sql.index("'ann") - 1) is False


def test_large_input_is_linear() -> None:
    row = "INSERT INTO t (a, b) VALUES (1, 'x; DROP TABLE t'); -- CREATE\n"
    result = scan(row * 5000)
    assert len(result.statements) == 5000
    assert result.violations == ()
