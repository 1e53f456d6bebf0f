"""The database as the schema left it, and the two ways back to it.

`capture` runs once per session, right after the schema: it records every
sequence's position and copies the rows of any table the schema filled (lookup
data) into the `_sqlfix_baseline` schema.

- `reset_sequences` runs after every test, in one round trip: `nextval()` is not
  transactional, so a rolled-back insert still advances a sequence; putting back
  the ones that moved keeps DEFAULT ids the same whatever order tests run in.
- `restore` runs only after a test's changes escaped the boundary (a raw COMMIT):
  it truncates every table, reloads the copied rows and resets every sequence.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from sqlfix.database.boundary import scalar

COPY_SCHEMA = "_sqlfix_baseline"
_OWN_SCHEMAS = ("pg_catalog", "information_schema", "_sqlfix", COPY_SCHEMA)

_TABLES = b"""
SELECT n.nspname, c.relname, c.relkind = 'p'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname <> ALL (%s) AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY 1, 2
"""
_SEQUENCES = b"""
SELECT format('%%I.%%I', schemaname, sequencename)
FROM pg_sequences WHERE schemaname <> ALL (%s) AND schemaname NOT LIKE 'pg\\_%%'
ORDER BY 1
"""
_FOREIGN_KEYS = b"""
SELECT cn.nspname, c.relname, rn.nspname, r.relname
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_class r ON r.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE k.contype = 'f'
"""
# Sequences that feed a column: serial (OWNED BY, deptype 'a') and identity ('i').
_FED_COLUMNS = b"""
SELECT format('%%I.%%I', sn.nspname, s.relname), tn.nspname, t.relname, a.attname,
       q.seqincrement > 0, CASE WHEN q.seqincrement > 0 THEN q.seqmax ELSE q.seqmin END
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_sequence q ON q.seqrelid = s.oid
JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_class t ON t.oid = d.refobjid AND t.relkind IN ('r', 'p')
JOIN pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
JOIN pg_type ty ON ty.oid = a.atttypid AND ty.typname IN ('int2', 'int4', 'int8')
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
  AND sn.nspname <> ALL (%s) AND sn.nspname NOT LIKE 'pg\\_%%'
ORDER BY 1
"""
# Materialized views with rows, oldest first (a view built on another comes after it).
_VIEWS = b"""
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm' AND c.relispopulated
  AND n.nspname <> ALL (%s) AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY c.oid
"""
_INSERTABLE_COLUMNS = b"""
SELECT a.attname FROM pg_attribute a
WHERE a.attrelid = format('%%I.%%I', %s::text, %s::text)::regclass
  AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum
"""


@dataclass(frozen=True)
class Baseline:
    tables: tuple[tuple[str, str], ...]  # (schema, table) of every user table
    saved: tuple[tuple[str, str], ...]  # tables with rows, copied to COPY_SCHEMA; parents first
    reset_query: bytes = b""  # puts back every sequence that moved; see reset_sequences
    advance_query: bytes = b""  # moves sequences past fixtures' explicit ids; see advance_query
    partitioned: frozenset[tuple[str, str]] = frozenset()  # read whole: partitions are not listed
    positions: bytes = b""  # reads every sequence's position (see positions_query)
    # populated materialized view -> digest of its rows (see view_digests); oldest first
    views: dict[tuple[str, str], str] = field(default_factory=dict)
    # advance_query returning the (sequence, new value) pairs it moved: see boundary.Advances
    advance_pairs: bytes = b""
    # a first load's plan -> the setval()s its advance made (see boundary.Advances)
    advances: dict[Any, str] = field(default_factory=dict, compare=False)


class StaleViews(Exception):
    """Materialized views a test refreshed that a refresh over the baseline's tables does
    not bring back (the schema filled their tables after creating them, or they read
    now() or random()): only a rebuild of the database does. `lines` name them."""

    why = ("the test refreshed materialized views, and a refresh over the baseline's tables "
           "does not give back their rows:")

    def __init__(self, views: Iterable[tuple[str, str]]) -> None:
        self.lines = [f"materialized view {schema}.{name}" for schema, name in views]
        self.advice = ("Refresh such a view at the end of the schema files, after the rows it "
                       "reads (one that reads now(), random() or a setting cannot be given "
                       "back): then a test that refreshes it costs a refresh, not a rebuild")
        super().__init__(f"{self.why} {', '.join(self.lines)}")


def view_digests(
    conn: psycopg.Connection[Any], views: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """`row count:sum of 64-bit hashes of the rows' text` of each materialized view; one
    round trip (a scan of each). REFRESH rewrites every row, so nothing cheaper tells
    whether the rows are those of the baseline."""
    views = list(views)
    if not views:
        return {}
    parts = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}::int, count(*)::text || ':' || "
                "coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM {} AS t").format(
            sql.Literal(i), sql.Identifier(*v))
        for i, v in enumerate(views))
    rows = conn.cursor(row_factory=tuple_row).execute(parts).fetchall()
    return {views[i]: str(digest) for i, digest in rows}


def positions_query(sequences: list[str]) -> bytes:
    """One SELECT of (name, last_value, is_called) of every sequence in `sequences`.

    Reading a sequence relation directly costs about half of going through the
    pg_sequences view.
    """
    if not sequences:
        return b""
    return sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}, last_value, is_called FROM {}").format(sql.Literal(n), sql.SQL(n))
        for n in sequences
    ).as_bytes(None)


def reset_query_for(rows: list[tuple[Any, ...]]) -> bytes:
    """One statement that setval()s each sequence whose state differs from `rows`.

    `rows`: what `positions_query` returned then. The statement returns how many moved.
    """
    if not rows:
        return b""
    parts = [
        sql.SQL(
            "SELECT setval({name}, {value}, {called}) FROM {seq} "
            "WHERE (last_value, is_called) IS DISTINCT FROM ({value}, {called})"
        ).format(name=sql.Literal(name), value=sql.Literal(value), called=sql.Literal(called),
                 seq=sql.SQL(name))
        for name, value, called in rows
    ]
    query = sql.SQL("SELECT count(*) FROM ({}) AS moved").format(
        sql.SQL(" UNION ALL ").join(parts))
    return query.as_bytes(None)


def _reset_query(conn: psycopg.Connection[Any], sequences: list[str]) -> bytes:
    """One statement that setval()s each sequence whose state differs from now.

    The statement is built once per session.
    """
    if not sequences:
        return b""
    rows = conn.cursor(row_factory=tuple_row).execute(positions_query(sequences)).fetchall()
    return reset_query_for(rows)


def _copy_name(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(COPY_SCHEMA, f"{schema}.{table}")


def capture(conn: psycopg.Connection[Any]) -> Baseline:
    """Record the state after the schema; commits its copies."""
    own = list(_OWN_SCHEMAS)
    cur = conn.cursor(row_factory=tuple_row)
    with conn.transaction():
        rows = cur.execute(_TABLES, [own]).fetchall()
        tables = [(r[0], r[1]) for r in rows]
        partitioned = frozenset((r[0], r[1]) for r in rows if r[2])
        seqs = [r[0] for r in cur.execute(_SEQUENCES, [own])]
        reset = _reset_query(conn, seqs)
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE; CREATE SCHEMA {}").format(
            sql.Identifier(COPY_SCHEMA), sql.Identifier(COPY_SCHEMA)))
        saved = [t for t in tables if _has_rows(conn, own_rows(t, partitioned))]
        for schema, table in saved:
            cur.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(
                _copy_name(schema, table), own_rows((schema, table), partitioned)))
        edges = [((r[0], r[1]), (r[2], r[3])) for r in cur.execute(_FOREIGN_KEYS)]
        fed = [Fed(r[0], (r[1], r[2]), r[3], r[4], r[5])
               for r in cur.execute(_FED_COLUMNS, [own])]
        views = view_digests(conn, [(r[0], r[1]) for r in cur.execute(_VIEWS, [own])])
    advance = advance_query(fed).as_bytes(conn) if fed else b""
    pairs = advance_query(fed, pairs=True).as_bytes(conn) if fed else b""
    return Baseline(tuple(tables), tuple(parents_first(saved, edges)), reset, advance, partitioned,
                    positions_query(seqs), views, pairs)


class Fed(NamedTuple):
    """A sequence that feeds a serial or identity column."""

    sequence: str  # its name, quoted as SQL
    table: tuple[str, str]  # (schema, table) of the column
    column: str
    ascending: bool  # its increment is positive
    end: int  # the last value it can hand out: MAXVALUE, or MINVALUE when descending


def advance_query(fed: list[Fed], pairs: bool = False) -> sql.Composed:
    """One statement that moves each sequence past the explicit ids of its column.

    Past the largest id, or the smallest for a descending sequence, among the ids it
    could hand out (between its start and its end): an id beyond its MAXVALUE cannot
    collide, and a setval() beyond it would fail the load. A sequence whose end is
    taken stays where it is: it has no id past it, and moving it would make every
    DEFAULT fail where the free ids below would do.
    The statement takes one parameter, the id() values the fixtures used (bigint[]):
    those are left out, so a fixture with only id() labels moves no sequence and an
    app's first DEFAULT id stays what the schema made it. The ids come from a hash of
    the label, anywhere in 1000..2**31-1, so a sequence moved past one would jump far
    for nothing. Each max() is one backward index scan on a primary key; the ids are
    left out through an uncorrelated NOT IN subquery, which the server hashes once (a
    `<> ALL (f.ids)` compared every row with every id, and the planner estimated the
    selectivity of each element: 17 ms a load at 2,000 rows, 0.5 ms at 200). setval() is
    not transactional: the boundary's sequence reset puts the sequences back after the
    test. Returns the number of sequences moved; with `pairs`, a row (sequence, new
    value) for each sequence it moved instead.
    """
    rows = sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "SELECT {name}::regclass, (SELECT {agg}({col}) FROM {table} "
            "WHERE {col} NOT IN (SELECT unnest(ids) FROM f) AND {col} {within} {end}), "
            "{end}::bigint, {up}, last_value, is_called FROM {seq}"
        ).format(name=sql.Literal(f.sequence), col=sql.Identifier(f.column),
                 table=sql.Identifier(*f.table), seq=sql.SQL(f.sequence),
                 agg=sql.SQL("max" if f.ascending else "min"),
                 within=sql.SQL("<=" if f.ascending else ">="), end=sql.Literal(f.end),
                 up=sql.Literal(f.ascending))
        for f in fed
    )
    # top is an id the sequence hands out next or later (compared, not computed: a
    # last_value + 1 overflows at the type's end)
    select = "s.seq::text, setval(s.seq, s.top)" if pairs else "count(setval(s.seq, s.top))"
    return sql.SQL(
        "WITH f(ids) AS (SELECT %s::bigint[]) "
        "SELECT " + select + " FROM LATERAL ({}) AS s(seq, top, e, up, last, "
        "called) WHERE s.top <> s.e AND (s.top = s.last AND NOT s.called "
        "OR CASE WHEN s.up THEN s.top > s.last ELSE s.top < s.last END)").format(rows)


def own_rows(table: tuple[str, str], partitioned: frozenset[tuple[str, str]]) -> sql.Composable:
    """The table's own rows as a FROM item: ONLY, so an INHERITS parent leaves out its
    children's rows (they are tables of their own here). A partitioned table has no rows
    of its own (ONLY would read none); its partitions are not listed, so it is read whole.
    """
    name = sql.Identifier(*table)
    return name if table in partitioned else sql.SQL("ONLY {}").format(name)


def parents_first(
    tables: list[tuple[str, str]], edges: list[tuple[tuple[str, str], tuple[str, str]]]
) -> list[tuple[str, str]]:
    """`tables` ordered so a referenced table comes before the tables that reference it.

    Tables in a foreign-key cycle keep their order; their constraints must be
    deferrable (or the reload runs with triggers off, see `restore`).
    """
    wanted = set(tables)
    needs = {t: {p for c, p in edges if c == t and p in wanted and p != t} for t in tables}
    order: list[tuple[str, str]] = []
    while len(order) < len(tables):
        ready = [t for t in tables if t not in order and needs[t] <= set(order)]
        order.extend(ready or [t for t in tables if t not in order])
    return order


def _has_rows(conn: psycopg.Connection[Any], source: sql.Composable) -> bool:
    query = sql.SQL("SELECT EXISTS (SELECT FROM {})").format(source)
    return bool(scalar(conn, query.as_bytes(conn)))


def reset_sequences(conn: psycopg.Connection[Any], baseline: Baseline) -> int:
    """Put back every sequence that moved; one round trip. Returns how many moved.

    setval() is not transactional: this holds even if the caller then rolls back.
    """
    if not baseline.reset_query:
        return 0
    return int(scalar(conn, baseline.reset_query) or 0)


def restore(
    conn: psycopg.Connection[Any], baseline: Baseline,
    tables: Collection[tuple[str, str]] | None = None,
) -> str:
    """Truncate every table (or only `tables`), reload the schema's own rows, reset sequences,
    refresh the materialized views whose rows changed; commits.

    `tables` must be closed under foreign keys (every table referencing one of
    them included), or the CASCADE empties tables that are not reloaded. Each is
    truncated ONLY: an INHERITS parent's children are tables of their own here.
    Triggers (foreign-key checks included) are off during the reload when the
    role may do that (`session_replication_role`), so the reload adds nothing
    the schema did not; otherwise tables are reloaded referenced-first.
    Returns a one-line account of what was done, for the failure message.
    Raises StaleViews (nothing done) when a refreshed view cannot be brought back.
    """
    wanted = set(baseline.tables if tables is None else tables)
    targets = [t for t in baseline.tables if t in wanted]
    reloaded = [t for t in baseline.saved if t in wanted]
    with conn.transaction():
        quiet = _triggers_off(conn)
        if targets:
            names = sql.SQL(", ").join(own_rows(t, baseline.partitioned) for t in targets)
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(names))
        for schema, table in reloaded:
            _reload(conn, schema, table)
        moved = reset_sequences(conn, baseline)
        views = _refresh_views(conn, baseline)
    triggers = "triggers off" if quiet else "triggers on: not allowed to turn them off"
    refreshed = f", refreshed {_count(views, 'materialized view')}" if views else ""
    # Only the tables whose schema inserted rows are reloaded: none is the common case
    rows = (f"reloaded the schema's rows into {_count(len(reloaded), 'table')} ({triggers}), "
            if reloaded else "")
    return (f"sqlfix restored the baseline: truncated {_count(len(targets), 'table')}, "
            f"{rows}reset {_count(moved, 'sequence')}{refreshed}")


def _refresh_views(conn: psycopg.Connection[Any], baseline: Baseline) -> int:
    """Refresh (oldest first) the materialized views whose rows differ from the baseline's,
    after the tables are back; how many. Raises StaleViews if that does not bring them back.

    Their rows change only by a REFRESH, which a committed test (or an escape) may run.
    """
    if not baseline.views:
        return 0
    now = view_digests(conn, baseline.views)
    changed = [v for v, digest in baseline.views.items() if now.get(v) != digest]
    for view in changed:
        conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(*view)))
    again = view_digests(conn, changed)
    stale = [v for v in changed if again[v] != baseline.views[v]]
    if stale:
        raise StaleViews(stale)
    return len(changed)


def _count(number: int, noun: str) -> str:
    """"1 table", "2 tables"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _triggers_off(conn: psycopg.Connection[Any]) -> bool:
    try:
        with conn.transaction():  # a savepoint: a refusal leaves the transaction usable
            conn.execute(b"SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def _reload(conn: psycopg.Connection[Any], schema: str, table: str) -> None:
    target = sql.Identifier(schema, table)
    cur = conn.cursor(row_factory=tuple_row)
    columns = [r[0] for r in cur.execute(_INSERTABLE_COLUMNS, [schema, table])]
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    cur.execute(sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
        target, cols, cols, _copy_name(schema, table)))
