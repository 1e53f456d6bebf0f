"""`sqlfix import DUMP`: a data-only pg_dump (COPY or INSERT form) to fixture files.

One fixture per table, named after it (`customer.sql`; `sales.invoice.sql` outside
`public`), its rows as the dump wrote them: COPY blocks stay COPY blocks (the fastest
load), INSERT statements stay INSERTs. `-- requires:` comes from the foreign keys of the
project's schema, read on the embedded server (or the DSN) after the schema files and
`setup_command`. What a fixture must not hold is dropped and counted: SET, set_config(),
setval(), psql's \\restrict/\\unrestrict, the dump's comments. `--fake table.col=method`
replaces a column by `{{ fake.method() }}` (a table with faked columns is written as
INSERTs: template values are SQL literals, which COPY rows are not).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pglast
import psycopg
from psycopg.rows import tuple_row

from sqlfix.cli.targets import UsageError
from sqlfix.compiler import copy_blocks
from sqlfix.compiler.context import TemplateContext
from sqlfix.compiler.library import display_path
from sqlfix.compiler.render import render_template
from sqlfix.errors import FixtureError

_INSERT = re.compile(
    r'INSERT\s+INTO\s+(?P<table>(?:"(?:[^"]|"")*"|[\w$]+)(?:\s*\.\s*(?:"(?:[^"]|"")*"|[\w$]+))?)\s*'
    r"(?:\((?P<cols>[^)]*)\))?\s*(?:OVERRIDING\s+SYSTEM\s+VALUE\s+)?VALUES\s*", re.IGNORECASE)
_COPY_TARGET = re.compile(
    r'COPY\s+(?P<table>(?:"(?:[^"]|"")*"|[\w$]+)(?:\s*\.\s*(?:"(?:[^"]|"")*"|[\w$]+))?)',
    re.IGNORECASE)
_VALUE = re.compile(r"'(?:[^']|'')*'|[^,()']+")
_TEMPLATE = ("{{", "{%", "{#")
# PostgreSQL's reserved key words (and the type-function ones): always quoted as names.
_RESERVED_WORDS = (
    "ALL ANALYSE ANALYZE AND ANY ARRAY AS ASC ASYMMETRIC AUTHORIZATION BINARY BOTH CASE CAST "
    "CHECK COLLATE COLLATION COLUMN CONCURRENTLY CONSTRAINT CREATE CROSS CURRENT_CATALOG "
    "CURRENT_DATE CURRENT_ROLE CURRENT_SCHEMA CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER "
    "DEFAULT DEFERRABLE DESC DISTINCT DO ELSE END EXCEPT FALSE FETCH FOR FOREIGN FREEZE FROM "
    "FULL GRANT GROUP HAVING ILIKE IN INITIALLY INNER INTERSECT INTO IS ISNULL JOIN LATERAL "
    "LEADING LEFT LIKE LIMIT LOCALTIME LOCALTIMESTAMP NATURAL NOT NOTNULL NULL OFFSET ON ONLY "
    "OR ORDER OUTER OVERLAPS PLACING PRIMARY REFERENCES RETURNING RIGHT SELECT SESSION_USER "
    "SIMILAR SOME SYMMETRIC SYSTEM_USER TABLE TABLESAMPLE THEN TO TRAILING TRUE UNION UNIQUE "
    "USER USING VARIADIC VERBOSE WHEN WHERE WINDOW WITH")
_RESERVED = frozenset(_RESERVED_WORDS.split())
_COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}

# Foreign keys between user tables: child schema, child table, parent schema, parent table.
_FOREIGN_KEYS = b"""
SELECT cn.nspname, c.relname, pn.nspname, p.relname, bool_and(k.condeferrable)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE k.contype = 'f'
GROUP BY 1, 2, 3, 4
"""
_COLUMNS = b"""
SELECT a.attname, t.typcategory = 'N' FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


QualifiedName = tuple[str, str]  # (schema, table) as the catalog spells them


@dataclass
class Table:
    """What the dump holds for one table, in dump order."""

    ident: QualifiedName
    copies: list[tuple[str, str]] = field(default_factory=list)  # (COPY statement, rows)
    inserts: list[str] = field(default_factory=list)
    rows: int = 0

    @property
    def name(self) -> str:
        """schema.table, unquoted: for messages and for matching --tables and --fake."""
        return ".".join(self.ident)


@dataclass
class Parsed:
    tables: dict[QualifiedName, Table]
    dropped: Counter[str]


@functools.lru_cache(maxsize=1024)  # an --inserts dump names its few tables once a row
def _target(name: str, schema: str = "public") -> QualifiedName:
    """A table name as SQL writes it (quoted or not, qualified or not) as (schema, table).

    PostgreSQL's own parser reads it, so quotes, spaces, dots and case fold as the server's
    do. `schema`: the one an unqualified name is in.
    """
    try:
        statement = pglast.parse_sql(f"COPY {name} FROM stdin")[0].stmt
    except pglast.parser.ParseError as exc:
        raise UsageError(f"cannot read the table name {name!r}: {exc}") from None
    assert isinstance(statement, pglast.ast.CopyStmt) and statement.relation is not None
    return (statement.relation.schemaname or schema, str(statement.relation.relname))


# pg_dump before 10.3 named tables without their schema, after this line (one per schema)
_OLD_SEARCH_PATH = re.compile(
    r'SET\s+search_path\s*=\s*(?P<schema>"(?:[^"]|"")*"|[\w$]+)\s*,\s*pg_catalog\s*;?\s*\Z',
    re.IGNORECASE)


def _qualified(statement: str, pattern: re.Pattern[str], schema: str | None
               ) -> tuple[QualifiedName, str]:
    """The statement's table, and the statement with an unqualified name qualified by
    `schema` (an old dump's search_path): the fixture must not depend on the test's."""
    match = pattern.match(statement)
    assert match is not None
    ident = _target(match["table"], schema or "public")
    if schema is None or _target(match["table"], "")[0]:  # no old search_path, or qualified
        return ident, statement
    name = ".".join(_ident(part) for part in ident)
    return ident, statement[:match.start("table")] + name + statement[match.end("table"):]


def _table_filter(name: str) -> tuple[str | None, str]:
    """A --tables name as (schema or None when unqualified, table), read as SQL reads it."""
    try:
        schema, table = _target(name, "")
    except UsageError as exc:
        raise UsageError(f"--tables: {exc}") from None
    return schema or None, table


def choose_tables(tables: dict[QualifiedName, Table], names: frozenset[str] | None
                  ) -> dict[QualifiedName, Table]:
    """The tables --tables names (all when None); an unqualified name matches in any schema.

    Raises UsageError for a name that matches no table of the dump, listing them.
    """
    if names is None:
        return dict(tables)
    chosen: dict[QualifiedName, Table] = {}
    unknown: list[str] = []
    for name in sorted(names):
        schema, table = _table_filter(name)
        hits = [n for n in tables if n[1] == table and schema in (None, n[0])]
        if not hits:
            unknown.append(name)
        chosen.update((n, tables[n]) for n in hits)
    if unknown:
        known = ", ".join(".".join(_ident(p) for p in n) for n in sorted(tables))
        raise UsageError(
            f"--tables names table(s) the dump holds no rows for: {', '.join(unknown)}; "
            f"its tables: {known} (names are read as SQL reads them: quote mixed case, "
            'as in \'"Order Items"\')')
    return {n: tables[n] for n in tables if n in chosen}  # dump order


def _unquote(name: str) -> str:
    """A --tables / --fake table name as schema.table; public when unqualified."""
    return ".".join(_target(name))


_CLIENT_ENCODING = re.compile(rb"^SET client_encoding = '([\w-]+)';", re.MULTILINE)


def read_dump(path: Path) -> str:
    """The dump's text: UTF-8 (a byte-order mark skipped), else the encoding its
    `SET client_encoding = '...'` line names (pg_dump -E LATIN1); raises UsageError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the dump {path}: {exc}") from None
    _refuse_binary(path, data)
    try:
        return data.decode("utf-8-sig")  # a byte-order mark is not SQL
    except UnicodeDecodeError as exc:
        declared = _CLIENT_ENCODING.search(data)
        name = declared[1].decode("ascii") if declared else None
        codec = _PY_ENCODINGS.get(name.upper(), name) if name else None
        try:
            if codec is not None and codec.upper() not in ("UTF8", "SQL_ASCII"):
                return data.decode(codec)
        except (LookupError, UnicodeDecodeError):
            pass
        raise UsageError(
            f"cannot read the dump {path}: {exc} (its client_encoding: {name or 'not set'}); "
            "dump it again with pg_dump -E UTF8") from None


# Files that are no SQL text at all, by their first bytes: (magic, what, what to do)
_ARCHIVES = (
    (b"PGDMP", "a pg_dump archive (custom format, -Fc), not SQL text",
     "write it as SQL with `pg_restore --data-only -f dump.sql ARCHIVE` and import that"),
    (b"\x1f\x8b", "gzip-compressed", "gunzip it first"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "unzstd it first"),
    (b"\x04\x22\x4d\x18", "lz4-compressed", "unlz4 it first"),
)


def _refuse_binary(path: Path, data: bytes) -> None:
    """UsageError for an archive or compressed file: it is not a text encoding problem."""
    for magic, what, todo in _ARCHIVES:
        if data.startswith(magic):
            raise UsageError(f"cannot read the dump {path}: it is {what}; {todo}")
    if b"\0" in data[:8192]:
        raise UsageError(
            f"cannot read the dump {path}: it holds NUL bytes, so it is not SQL text (a "
            "tar or binary file?); make it with pg_dump --data-only in the default plain "
            "format, or write an archive as SQL with pg_restore --data-only -f dump.sql")


# PostgreSQL's names of encodings Python spells otherwise (the rest, LATIN1 etc., agree).
_PY_ENCODINGS = {f"WIN{n}": f"cp{n}" for n in (866, 874, 1250, 1251, 1252, 1253, 1254, 1255,
                                                  1256, 1257, 1258)}
_PY_ENCODINGS |= {"ISO_8859_5": "iso8859_5", "ISO_8859_6": "iso8859_6",
                  "ISO_8859_7": "iso8859_7", "ISO_8859_8": "iso8859_8", "SJIS": "shift_jis",
                  "EUC_JP": "euc_jp", "EUC_KR": "euc_kr", "KOI8R": "koi8_r", "KOI8U": "koi8_u"}


def parse_dump(text: str, source: str = "the dump") -> Parsed:
    """Tables and their rows from a data-only dump; what was dropped, counted by kind.

    Raises UsageError for a damaged COPY block (no `\\.` end, a row of the wrong field
    count): a dump cut short must not become a fixture that silently lacks rows.
    """
    dropped: Counter[str] = Counter()
    found = copy_blocks.find(text)
    if found.violations:
        first = found.violations[0]
        line = text.count("\n", 0, first.offset) + 1
        col = first.offset - (text.rfind("\n", 0, first.offset) + 1) + 1
        raise UsageError(
            f"{source}:{line}:{col}: {first.code} {first.message}; the dump is damaged (cut "
            "short, or edited by hand): dump it again, or fix it, before importing it")
    result, _, metas = copy_blocks.guard_scan(text, found)  # \restrict lines between statements
    paths = [(s.offset, m["schema"]) for s in result.statements
             if (m := _OLD_SEARCH_PATH.match(s.text)) is not None]

    starts = [at for at, _ in paths]  # in text order
    schemas = [_target(f"{name}.x")[0] for _, name in paths]

    def schema_at(offset: int) -> str | None:
        """The schema of the last old-style search_path before `offset`, if any."""
        before = bisect.bisect_left(starts, offset)
        return schemas[before - 1] if before else None

    tables: dict[QualifiedName, Table] = {}
    for block in found.blocks:
        # block.table has its spaces squeezed out; the statement keeps the name as written
        ident, copy = _qualified(block.statement, _COPY_TARGET, schema_at(block.start))
        table = tables.setdefault(ident, Table(ident))
        data = block.data(text)
        table.copies.append((copy, data))
        table.rows += data.count("\n")
    if metas:
        dropped["\\restrict/\\unrestrict line(s)"] = metas
    for statement in result.statements:
        _statement(statement.text, tables, dropped, schema_at(statement.offset))
    if any(line.strip().startswith("--") for line in text.splitlines()):
        dropped["the dump's comments"] = 1
    return Parsed(tables, dropped)


def _statement(text: str, tables: dict[QualifiedName, Table], dropped: Counter[str],
               schema: str | None = None) -> None:
    insert = _INSERT.match(text)
    if insert is not None:
        ident, text = _qualified(text, _INSERT, schema)
        table = tables.setdefault(ident, Table(ident))
        table.inserts.append(text)
        table.rows += max(1, len(_tuples(text[insert.end():])))
        return
    upper = " ".join(text.upper().split())
    if "SET_CONFIG(" in upper:
        dropped["set_config()"] += 1
    elif "SETVAL(" in upper:
        dropped["setval() (sqlfix moves sequences past fixture ids itself)"] += 1
    elif upper.startswith("SET "):
        dropped["SET"] += 1
    else:
        dropped[f"other statement ({upper.split(' ')[0]})"] += 1


def _tuples(values: str) -> list[list[str]]:
    """The value lists of `VALUES (...), (...);` as lists of literal texts."""
    out: list[list[str]] = []
    depth, pos = 0, 0
    current: list[str] = []
    while pos < len(values):
        ch = values[pos]
        if ch == "(":
            depth += 1
            if depth == 1:
                current, pos = [], pos + 1
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                out.append([v.strip() for v in current])
                pos += 1
                continue
        if depth >= 1 and ch not in ", \t\n":
            match = _VALUE.match(values, pos)
            assert match is not None
            if depth == 1:
                current.append(match.group())
            pos = match.end()
            continue
        pos += 1
    return out


_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _copy_literal(field_text: str, numeric: bool = False) -> str:
    """A COPY text-format field as an SQL literal; a number bare in a numeric column."""
    if field_text == "\\N":
        return "NULL"
    if numeric and _NUMBER.fullmatch(field_text):
        return field_text  # as pg_dump --inserts writes it; NaN, money's $ stay quoted
    value = re.sub(r"\\([0-7]{1,3}|x[0-9a-fA-F]{1,2}|.)", _unescape, field_text)
    return "'" + value.replace("'", "''") + "'"


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] in "01234567":
        return chr(int(code, 8))
    if code[0] == "x" and len(code) > 1:
        return chr(int(code[1:], 16))
    return _COPY_ESCAPES.get(code, code)


def _raw(literal: str) -> str:
    """A literal that holds template syntax, kept away from Jinja."""
    if any(t in literal for t in _TEMPLATE):
        return _in_raw(literal)
    return literal


def _in_raw(text: str) -> str:
    """`text` in `{% raw %}` blocks that Jinja renders to exactly `text`.

    Data may hold `{% endraw %}` itself, which would end the block early: every `{%`
    is split across two blocks (`{` ends one, `%` starts the next), so no block holds
    a `{%` and nothing but our own `{% endraw %}` can close one.
    """
    return "{% raw %}" + text.replace("{%", "{{% endraw %}{% raw %}%") + "{% endraw %}"


@dataclass(frozen=True)
class Options:
    out: Path
    tables: frozenset[str] | None  # None: every table
    fakes: dict[str, dict[str, str]]  # schema.table -> column -> Faker method
    force: bool
    faker_locale: str = "en_US"


_NAME_PART = r'(?:"(?:[^"]|"")*"|[\w$]+)'
_FAKE_SPEC = re.compile(
    rf"(?P<table>{_NAME_PART}(?:\.{_NAME_PART})?)\.(?P<col>{_NAME_PART})=(?P<method>[A-Za-z_]\w*)")


def parse_fakes(specs: Sequence[str]) -> dict[str, dict[str, str]]:
    """`users.email=email` -> {'public.users': {'email': 'email'}}; raises UsageError."""
    fakes: dict[str, dict[str, str]] = {}
    for spec in specs:
        match = _FAKE_SPEC.fullmatch(spec)
        if match is None:
            raise UsageError(f"--fake {spec!r}: write TABLE.COLUMN=FAKER_METHOD, such as "
                             "users.email=email, public.users.full_name=name or "
                             '\'"Order Items".note=sentence\'')
        col = match["col"]
        col = col[1:-1].replace('""', '"') if col.startswith('"') else col
        table = fakes.setdefault(_unquote(match["table"]), {})
        if col in table:
            raise UsageError(f"--fake names {_unquote(match['table'])}.{col} twice "
                             f"({table[col]} and {match['method']}): keep one")
        table[col] = match["method"]
    return fakes


def _render_table(table: Table, fake: dict[str, str], columns: list[str], requires: list[str],
                  source: str, numeric: frozenset[str] = frozenset()) -> str:
    head = [f"-- Imported by `sqlfix import` from {source}: {table.name}, {table.rows} row(s)."]
    if requires:
        head.append(f"-- requires: {', '.join(requires)}")
    body: list[str] = []
    if fake:
        head.append("-- Faked columns: " + ", ".join(f"{c} = fake.{m}()" for c, m in fake.items()))
        body = _faked(table, fake, columns, numeric)
    else:
        for statement, data in table.copies:
            block = f"{statement};\n{data}\\.\n"
            has_template = any(t in data for t in _TEMPLATE)
            body.append(_in_raw(f"\n{block}") + "\n" if has_template else block)
        body.extend(_raw_statement(s) + "\n" for s in table.inserts)
    return "\n".join(head) + "\n" + "".join(body)


def _raw_statement(statement: str) -> str:
    if not any(t in statement for t in _TEMPLATE):
        return statement
    return _in_raw(statement)


def _faked(table: Table, fake: dict[str, str], columns: list[str],
           numeric: frozenset[str]) -> list[str]:
    """The table's rows as INSERTs with the faked columns as template calls."""
    out: list[str] = []
    for statement, data in table.copies:
        if copy_blocks.find(f"{statement};\n\\.\n").blocks[0].text_format is False:
            raise UsageError(f"--fake on {table.name}: its COPY rows are not in pg_dump's "
                             "tab-separated text format (CSV, binary or a DELIMITER); "
                             "dump it with pg_dump --data-only, or fake it by hand")
        cols = [c.strip().strip('"') for c in re.sub(r"^.*?\(|\)[^)]*$", "", statement).split(",")]
        kinds = [c in numeric for c in cols]  # a row with extra fields fails in _insert
        rows = [[_copy_literal(f, i < len(kinds) and kinds[i])
                 for i, f in enumerate(line.split("\t"))] for line in data.split("\n") if line]
        out.extend(_insert(table.ident, cols, row, fake) for row in rows)
    for statement in table.inserts:
        match = _INSERT.match(statement)
        assert match is not None
        cols = columns
        if match["cols"]:
            cols = [c.strip().strip('"') for c in match["cols"].split(",")]
        if not cols:
            raise UsageError(_NO_COLUMNS.format(table.name))
        rows = _tuples(statement[match.end():])
        out.extend(_insert(table.ident, cols, row, fake) for row in rows)
    return out


def _dump_columns(table: Table) -> list[str]:
    """The columns the dump's own COPY and INSERT column lists name (no schema at hand)."""
    seen: dict[str, None] = {}
    for statement, _data in table.copies:
        match = re.search(r"\((?P<cols>[^)]*)\)\s*FROM", statement, re.IGNORECASE)
        for col in match["cols"].split(",") if match else ():
            seen[col.strip().strip('"')] = None
    for statement in table.inserts:
        insert = _INSERT.match(statement)
        for col in insert["cols"].split(",") if insert and insert["cols"] else ():
            seen[col.strip().strip('"')] = None
    return list(seen)


_NO_COLUMNS = ("--fake on {} needs its columns: its INSERTs name none and no schema is "
               "configured; set [tool.sqlfix] schema, or dump with pg_dump --column-inserts")


def _check_fakes(table: Table, fake: dict[str, str], columns: list[str]) -> None:
    """Every --fake column of `table` must be one of its columns; raises UsageError."""
    if fake and not columns:
        raise UsageError(_NO_COLUMNS.format(table.name))
    unknown = [c for c in fake if columns and c not in columns]
    if unknown:
        raise UsageError(
            f"--fake names column(s) {', '.join(unknown)} that {table.name} does not have; "
            f"its columns: {', '.join(columns)}")
    held = _dump_columns(table)
    named_all = all(_INSERT.match(i)["cols"] for i in table.inserts) and all(  # type: ignore[index]
        re.search(r"\)\s*FROM", c, re.IGNORECASE) for c, _ in table.copies)
    absent = [c for c in fake if named_all and c not in held]
    if absent:
        raise UsageError(
            f"--fake names column(s) {', '.join(absent)} that the dump's rows of {table.name} "
            f"do not hold (a generated column, or one left out of the dump): there is nothing "
            f"to fake; its rows hold: {', '.join(held)}")


def _check_methods(methods: dict[str, str], locale: str) -> None:
    """Each Faker method renders as `{{ fake.method() }}` would in a fixture; raises UsageError.

    Rendering one call through the compiler gives the very refusal `render` would give
    later (no such provider, a blocked one such as seed_instance, Faker not installed).
    """
    for method, spec in sorted(methods.items()):
        try:
            render_template(f"{{{{ fake.{method}() }}}}", name="--fake", path="--fake",
                            context=TemplateContext(0, 0, locale=locale))
        except FixtureError as exc:
            raise UsageError(f"--fake {spec}: "
                             + "; ".join(f"{f.code} {f.message}" for f in exc.findings)) from None


_KEEP = frozenset({"NULL", "DEFAULT"})


def _insert(ident: QualifiedName, cols: list[str], row: list[str], fake: dict[str, str]) -> str:
    if len(cols) != len(row):
        raise UsageError(f"a row of {'.'.join(ident)} has {len(row)} value(s) for {len(cols)} "
                         f"column(s): {', '.join(row)[:200]}")
    # NULL and DEFAULT hold no personal data: faking them would change what the rows mean
    values = [f"{{{{ fake.{fake[c]}() }}}}" if c in fake and v.upper() not in _KEEP else _raw(v)
              for c, v in zip(cols, row, strict=True)]
    quoted = ", ".join(_ident(c) for c in cols)
    target = ".".join(_ident(part) for part in ident)
    return f"INSERT INTO {target} ({quoted}) VALUES ({', '.join(values)});\n"


def _ident(name: str) -> str:
    """An identifier as pg_dump writes it: bare when it can be, else double-quoted."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) and name.upper() not in _RESERVED:
        return name
    return psycopg.sql.Identifier(name).as_string(None)


# Characters a file name must not hold (path separators, ones Windows refuses, the
# comma that separates `-- requires:` names) and control characters.
_UNSAFE_FILE_CHARS = re.compile(r'[/\\:*?"<>|,\x00-\x1f\x7f]')


def file_names(tables: Iterable[QualifiedName]) -> dict[QualifiedName, str]:
    """Each table's fixture file name: `table.sql` in public, else `schema.table.sql`.

    Made safe to join to --out: separators and the like become `_`, a leading dot or
    space becomes `_` (no `..`, no hidden files), and names that then collide (also by
    case only, as on macOS and Windows) get `-2`, `-3`, ... in dump order.
    """
    names: dict[QualifiedName, str] = {}
    taken: set[str] = set()
    for ident in tables:
        schema, table = ident
        stem = table if schema == "public" else f"{schema}.{table}"
        stem = _UNSAFE_FILE_CHARS.sub("_", stem).rstrip(" .")
        stem = re.sub(r"^[. ]", "_", stem) or "_"
        name, n = f"{stem}.sql", 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}-{n}.sql"
        taken.add(name.lower())
        names[ident] = name
    return names


# A foreign key between two tables: child, parent, and whether every such key is
# DEFERRABLE (checked at the end of the load, so the parent may come later).
Edge = tuple[QualifiedName, QualifiedName, bool]


def requires_of(tables: Iterable[QualifiedName], edges: Iterable[Edge],
                files: dict[QualifiedName, str],
                ) -> tuple[dict[QualifiedName, list[str]], list[str]]:
    """Each table's `requires` (imported parents only); edges that would close a cycle left out.

    Immediate keys are kept first: a cycle is broken at a deferrable key where it has one,
    since only there may the child's rows be loaded before the parent's.
    """
    wanted = set(tables)
    parents: dict[QualifiedName, list[tuple[QualifiedName, bool]]] = {t: [] for t in wanted}
    for child, parent, deferrable in sorted(set(edges)):
        if child in wanted and parent in wanted and child != parent:
            parents[child].append((parent, deferrable))
    kept: dict[QualifiedName, list[QualifiedName]] = {t: [] for t in wanted}  # -> parents
    notes: list[str] = []

    def reaches(start: QualifiedName, goal: QualifiedName) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(kept[node])
        return False

    for deferrable_pass in (False, True):
        for child in sorted(wanted):
            for parent, deferrable in parents[child]:
                if deferrable != deferrable_pass:
                    continue
                if not reaches(parent, child):
                    kept[child].append(parent)
                elif deferrable:
                    notes.append(
                        f"{files[child]} and {files[parent]} reference each other: "
                        f"{files[child]} does not require {files[parent]} (its key to it is "
                        f"deferrable, checked at the end of the load): load {files[parent]}, "
                        f"which brings {files[child]} first")
                else:
                    notes.append(
                        f"{files[child]} and {files[parent]} reference each other: "
                        f"{files[child]} does not require {files[parent]}, and neither key is "
                        "deferrable, so rows that point both ways cannot load: make one key "
                        "DEFERRABLE, or set one side's column to NULL in its fixture")
    return {t: [files[p] for p in ps] for t, ps in kept.items()}, notes


def schema_facts(conn: psycopg.Connection[Any], tables: Iterable[QualifiedName]) -> tuple[
        list[Edge], dict[QualifiedName, list[str]],
        dict[QualifiedName, frozenset[str]]]:
    """Foreign-key edges, each table's columns and its numeric ones, from the schema's database."""
    cur = conn.cursor(row_factory=tuple_row)
    edges = [((r[0], r[1]), (r[2], r[3]), bool(r[4])) for r in cur.execute(_FOREIGN_KEYS)]
    columns: dict[QualifiedName, list[str]] = {}
    numeric: dict[QualifiedName, frozenset[str]] = {}
    for name in tables:
        ident = psycopg.sql.Identifier(*name).as_string(conn)
        try:
            found = list(cur.execute(_COLUMNS, [ident]))
        except psycopg.errors.UndefinedTable:
            conn.rollback()
            found = []
        columns[name] = [r[0] for r in found]
        numeric[name] = frozenset(r[0] for r in found if r[1])
    conn.rollback()
    return edges, columns, numeric


def write_fixtures(parsed: Parsed, options: Options, conn: psycopg.Connection[Any] | None,
                   source: str, out: TextIO) -> int:
    """Write one fixture per table; returns how many were written."""
    chosen = choose_tables(parsed.tables, options.tables)
    fakes = {t.name: options.fakes[t.name] for t in chosen.values() if t.name in options.fakes}
    unknown = set(options.fakes) - set(fakes)
    if unknown:
        raise UsageError("--fake names table(s) not imported from the dump: "
                         + ", ".join(sorted(unknown)))
    edges, columns, numeric = schema_facts(conn, chosen) if conn is not None else ([], {}, {})
    missing = [chosen[n].name for n in chosen if conn is not None and not columns.get(n)]
    if missing:
        raise UsageError(f"table(s) {', '.join(sorted(missing))} of the dump are not in the "
                         "project's schema: fix [tool.sqlfix] schema / setup_command first")
    for ident, table in chosen.items():
        _check_fakes(table, fakes.get(table.name, {}), columns.get(ident) or _dump_columns(table))
    _check_methods({m: f"{t}.{c}={m}" for t, cols in fakes.items() for c, m in cols.items()},
                   options.faker_locale)
    files = file_names(chosen)
    requires, notes = requires_of(chosen, edges, files)
    if options.out.exists() and not options.out.is_dir():
        raise UsageError(f"--out {options.out} is a file, not a directory: choose a directory "
                         "(it is made if missing)")
    try:
        options.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make the directory --out {options.out}: {exc}") from None
    targets = {n: options.out / files[n] for n in chosen}
    inside = options.out.resolve()
    # file_names() makes this hold; a symlink planted in --out must not break it either
    outside = [display_path(p) for p in targets.values() if p.resolve().parent != inside]
    if outside:
        raise UsageError(f"{', '.join(outside)} would be written outside {options.out}; "
                         "remove the link there or choose another --out")
    existing = [display_path(p) for p in targets.values() if p.exists()]
    if existing and not options.force:
        raise UsageError(f"{', '.join(existing)} exist(s); pass --force to overwrite")
    for name in sorted(chosen):
        table = chosen[name]
        text = _render_table(table, fakes.get(table.name, {}), columns.get(name, []),
                             requires[name], source, numeric.get(name, frozenset()))
        try:
            targets[name].write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {display_path(targets[name])}: {exc}") from None
        form = "INSERT (faked)" if table.name in fakes else ("COPY" if table.copies else "INSERT")
        out.write(f"wrote {display_path(targets[name])}: {table.rows} row(s), {form}"
                  f"{'; requires ' + ', '.join(requires[name]) if requires[name] else ''}\n")
    for note in notes:
        out.write(f"note: {note}\n")
    if parsed.dropped:
        kinds = ", ".join(f"{n} {k}" if k != "the dump's comments" else k
                          for k, n in sorted(parsed.dropped.items()))
        out.write(f"dropped (a fixture must not hold them): {kinds}\n")
    skipped = sorted(t.name for n, t in parsed.tables.items() if n not in chosen)
    if skipped:
        out.write(f"skipped (not in --tables): {', '.join(skipped)}\n")
    return len(chosen)
