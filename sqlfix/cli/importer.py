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

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psycopg
from psycopg.rows import tuple_row

from sqlfix.cli.targets import UsageError
from sqlfix.compiler import copy_blocks
from sqlfix.compiler.library import display_path

_INSERT = re.compile(
    r"INSERT\s+INTO\s+(?P<table>(?:\"[^\"]*\"|[\w$]+)(?:\.(?:\"[^\"]*\"|[\w$]+))?)\s*"
    r"(?:\((?P<cols>[^)]*)\))?\s*(?:OVERRIDING\s+SYSTEM\s+VALUE\s+)?VALUES\s*", re.IGNORECASE)
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

# Foreign keys between user tables: (child, parent), each as schema.table.
_FOREIGN_KEYS = b"""
SELECT DISTINCT format('%s.%s', cn.nspname, c.relname), format('%s.%s', pn.nspname, p.relname)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE k.contype = 'f'
"""
_COLUMNS = b"""
SELECT a.attname FROM pg_attribute a
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


@dataclass
class Table:
    """What the dump holds for one table, in dump order."""

    name: str  # schema.table, unquoted
    copies: list[tuple[str, str]] = field(default_factory=list)  # (COPY statement, rows)
    inserts: list[str] = field(default_factory=list)
    rows: int = 0

    @property
    def file_name(self) -> str:
        schema, _, table = self.name.partition(".")
        return f"{table}.sql" if schema == "public" else f"{self.name}.sql"


@dataclass
class Parsed:
    tables: dict[str, Table]
    dropped: Counter[str]


def _unquote(name: str) -> str:
    parts = re.findall(r'"((?:[^"]|"")*)"|([^."\s]+)', name)
    text = ".".join(q.replace('""', '"') if q else p for q, p in parts)
    return text if "." in text else f"public.{text}"


def parse_dump(text: str) -> Parsed:
    """Tables and their rows from a data-only dump; what was dropped, counted by kind."""
    dropped: Counter[str] = Counter()
    found = copy_blocks.find(text)
    tables: dict[str, Table] = {}
    for block in found.blocks:
        table = tables.setdefault(_unquote(block.table), Table(_unquote(block.table)))
        data = block.data(text)
        table.copies.append((block.statement, data))
        table.rows += data.count("\n")
    result, _, metas = copy_blocks.guard_scan(text, found)  # \restrict lines between statements
    if metas:
        dropped["\\restrict/\\unrestrict line(s)"] = metas
    for statement in result.statements:
        _statement(statement.text, tables, dropped)
    if any(line.strip().startswith("--") for line in text.splitlines()):
        dropped["the dump's comments"] = 1
    return Parsed(tables, dropped)


def _statement(text: str, tables: dict[str, Table], dropped: Counter[str]) -> None:
    insert = _INSERT.match(text)
    if insert is not None:
        name = _unquote(insert["table"])
        table = tables.setdefault(name, Table(name))
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


def _copy_literal(field_text: str) -> str:
    """A COPY text-format field as an SQL literal."""
    if field_text == "\\N":
        return "NULL"
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
        return f"{{% raw %}}{literal}{{% endraw %}}"
    return literal


@dataclass(frozen=True)
class Options:
    out: Path
    tables: frozenset[str] | None  # None: every table
    fakes: dict[str, dict[str, str]]  # schema.table -> column -> Faker method
    force: bool


def parse_fakes(specs: Sequence[str]) -> dict[str, dict[str, str]]:
    """`users.email=email` -> {'public.users': {'email': 'email'}}; raises UsageError."""
    fakes: dict[str, dict[str, str]] = {}
    for spec in specs:
        match = re.fullmatch(r"(?P<table>[\w$.]+)\.(?P<col>[\w$]+)=(?P<method>[A-Za-z_]\w*)", spec)
        if match is None:
            raise UsageError(f"--fake {spec!r}: write TABLE.COLUMN=FAKER_METHOD, such as "
                             "users.email=email or public.users.full_name=name")
        fakes.setdefault(_unquote(match["table"]), {})[match["col"]] = match["method"]
    return fakes


def _render_table(table: Table, fake: dict[str, str], columns: list[str], requires: list[str],
                  source: str) -> str:
    head = [f"-- Imported by `sqlfix import` from {source}: {table.name}, {table.rows} row(s)."]
    if requires:
        head.append(f"-- requires: {', '.join(requires)}")
    body: list[str] = []
    if fake:
        head.append("-- Faked columns: " + ", ".join(f"{c} = fake.{m}()" for c, m in fake.items()))
        body = _faked(table, fake, columns)
    else:
        for statement, data in table.copies:
            block = f"{statement};\n{data}\\.\n"
            has_template = any(t in data for t in _TEMPLATE)
            body.append(f"{{% raw %}}\n{block}{{% endraw %}}\n" if has_template else block)
        body.extend(_raw_statement(s) + "\n" for s in table.inserts)
    return "\n".join(head) + "\n" + "".join(body)


def _raw_statement(statement: str) -> str:
    if not any(t in statement for t in _TEMPLATE):
        return statement
    return f"{{% raw %}}{statement}{{% endraw %}}"


def _faked(table: Table, fake: dict[str, str], columns: list[str]) -> list[str]:
    """The table's rows as INSERTs with the faked columns as template calls."""
    out: list[str] = []
    for statement, data in table.copies:
        cols = [c.strip().strip('"') for c in re.sub(r"^.*?\(|\)[^)]*$", "", statement).split(",")]
        rows = [[_copy_literal(f) for f in line.split("\t")] for line in data.split("\n") if line]
        out.extend(_insert(table.name, cols, row, fake) for row in rows)
    for statement in table.inserts:
        match = _INSERT.match(statement)
        assert match is not None
        cols = columns
        if match["cols"]:
            cols = [c.strip().strip('"') for c in match["cols"].split(",")]
        out.extend(_insert(table.name, cols, row, fake) for row in _tuples(statement[match.end():]))
    return out


def _insert(name: str, cols: list[str], row: list[str], fake: dict[str, str]) -> str:
    if len(cols) != len(row):
        raise UsageError(f"a row of {name} has {len(row)} value(s) for {len(cols)} column(s): "
                         f"{', '.join(row)[:200]}")
    values = [f"{{{{ fake.{fake[c]}() }}}}" if c in fake else _raw(v)
              for c, v in zip(cols, row, strict=True)]
    quoted = ", ".join(_ident(c) for c in cols)
    target = ".".join(_ident(part) for part in name.split(".", 1))
    return f"INSERT INTO {target} ({quoted}) VALUES ({', '.join(values)});\n"


def _ident(name: str) -> str:
    """An identifier as pg_dump writes it: bare when it can be, else double-quoted."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) and name.upper() not in _RESERVED:
        return name
    return psycopg.sql.Identifier(name).as_string(None)


def requires_of(tables: Iterable[str], edges: Iterable[tuple[str, str]],
                files: dict[str, str]) -> tuple[dict[str, list[str]], list[str]]:
    """Each table's `requires` (imported parents only); edges that would close a cycle left out."""
    wanted = set(tables)
    parents: dict[str, list[str]] = {t: [] for t in wanted}
    for child, parent in sorted(set(edges)):
        if child in wanted and parent in wanted and child != parent:
            parents[child].append(parent)
    kept: dict[str, list[str]] = {t: [] for t in wanted}  # table -> parent tables
    notes: list[str] = []

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(kept[node])
        return False

    for child in sorted(wanted):
        for parent in parents[child]:
            if reaches(parent, child):
                notes.append(f"{files[child]} and {files[parent]} reference each other: "
                             f"{files[child]} does not require {files[parent]}; load them "
                             "together (SET CONSTRAINTS ALL DEFERRED needs deferrable keys)")
            else:
                kept[child].append(parent)
    return {t: [files[p] for p in ps] for t, ps in kept.items()}, notes


def schema_facts(conn: psycopg.Connection[Any], tables: Iterable[str]) -> tuple[
        list[tuple[str, str]], dict[str, list[str]]]:
    """Foreign-key edges and each table's columns, from the database the schema built."""
    cur = conn.cursor(row_factory=tuple_row)
    edges = [(r[0], r[1]) for r in cur.execute(_FOREIGN_KEYS)]
    columns: dict[str, list[str]] = {}
    for name in tables:
        ident = psycopg.sql.Identifier(*name.split(".", 1)).as_string(conn)
        try:
            columns[name] = [r[0] for r in cur.execute(_COLUMNS, [ident])]
        except psycopg.errors.UndefinedTable:
            conn.rollback()
            columns[name] = []
    conn.rollback()
    return edges, columns


def write_fixtures(parsed: Parsed, options: Options, conn: psycopg.Connection[Any] | None,
                   source: str, out: TextIO) -> int:
    """Write one fixture per table; returns how many were written."""
    chosen = {n: t for n, t in parsed.tables.items() if options.tables is None or
              n in options.tables or n.split(".", 1)[1] in options.tables}
    unknown = set(options.fakes) - set(chosen)
    if unknown:
        raise UsageError("--fake names table(s) not imported from the dump: "
                         + ", ".join(sorted(unknown)))
    edges, columns = schema_facts(conn, chosen) if conn is not None else ([], {})
    missing = [n for n in chosen if conn is not None and not columns.get(n)]
    if missing:
        raise UsageError(f"table(s) {', '.join(sorted(missing))} of the dump are not in the "
                         "project's schema: fix [tool.sqlfix] schema / setup_command first")
    files = {n: t.file_name for n, t in chosen.items()}
    requires, notes = requires_of(chosen, edges, files)
    options.out.mkdir(parents=True, exist_ok=True)
    targets = {n: options.out / files[n] for n in chosen}
    existing = [display_path(p) for p in targets.values() if p.exists()]
    if existing and not options.force:
        raise UsageError(f"{', '.join(existing)} exist(s); pass --force to overwrite")
    for name in sorted(chosen):
        table = chosen[name]
        text = _render_table(table, options.fakes.get(name, {}), columns.get(name, []),
                             requires[name], source)
        targets[name].write_text(text, encoding="utf-8")
        form = "INSERT (faked)" if name in options.fakes else ("COPY" if table.copies else "INSERT")
        out.write(f"wrote {display_path(targets[name])}: {table.rows} row(s), {form}"
                  f"{'; requires ' + ', '.join(requires[name]) if requires[name] else ''}\n")
    for note in notes:
        out.write(f"note: {note}\n")
    if parsed.dropped:
        kinds = ", ".join(f"{n} {k}" if k != "the dump's comments" else k
                          for k, n in sorted(parsed.dropped.items()))
        out.write(f"dropped (a fixture must not hold them): {kinds}\n")
    skipped = sorted(set(parsed.tables) - set(chosen))
    if skipped:
        out.write(f"skipped (not in --tables): {', '.join(skipped)}\n")
    return len(chosen)
