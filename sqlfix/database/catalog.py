"""What a data restore cannot put back: the schema's objects, and database and role settings.

A raw `COMMIT` in a test (or a write through another connection) can make DDL
permanent: a table created, a constraint added, a function replaced, `ALTER ROLE
... SET`, `ALTER DATABASE ... SET`. The restore only truncates and reloads rows,
so after an escape the session compares two fingerprints taken at the baseline:

- `Schema`: one row per catalog object in the user schemas (schemas, relations,
  columns, constraints, indexes, views, sequences' parameters, functions, types,
  triggers (also whether the internal foreign-key ones are enabled), policies,
  rules, extensions, event triggers, casts, publications, default privileges),
  with a text that changes when the object does; and roles (every one on sqlfix's
  own server, else the session user's attributes). One query; compared by a digest
  first, row by row only when the digests differ (to say what changed). Whether
  anything changed at all is `catalog_watch`'s to say: it reads every catalog.
- `Settings`: `pg_db_role_setting` rows that reach the test database's sessions
  (`ALTER ROLE <session user> [IN DATABASE <db>] SET`, `ALTER DATABASE <db> SET`,
  `ALTER ROLE ALL SET`), and the database's own properties (`ALLOW_CONNECTIONS`,
  `CONNECTION LIMIT`, `IS_TEMPLATE`). These are put back by `undo_settings`.

Names are read under `search_path = pg_catalog`, so they are schema-qualified
whatever the connection's own search_path is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

OWN_SCHEMAS = ("pg_catalog", "information_schema", "_sqlfix", "_sqlfix_baseline")

_OBJECTS = b"""
WITH ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname <> ALL (%(own)s) AND nspname NOT LIKE 'pg\\_%%'
), rel AS (
  SELECT c.*, ns.nspname FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
  WHERE c.relpersistence <> 't'
)
SELECT 'schema', quote_ident(nspname),
       concat_ws(' ', pg_get_userbyid(nspowner), nspacl::text)
FROM pg_namespace WHERE oid IN (SELECT oid FROM ns)
UNION ALL
SELECT CASE relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
         WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
         WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' WHEN 'c' THEN 'type' ELSE 'relation' END,
       format('%%I.%%I', nspname, relname),
       concat_ws(' ', relkind, relpersistence, relrowsecurity, relforcerowsecurity,
                 reloptions::text, relacl::text, pg_get_userbyid(relowner), relreplident,
                 relispartition, pg_get_expr(relpartbound, oid),
                 CASE WHEN relkind IN ('i', 'I') THEN pg_get_indexdef(oid) END,
                 CASE WHEN relkind IN ('v', 'm') THEN pg_get_viewdef(oid) END,
                 (SELECT concat_ws(' ', seqtypid, seqstart, seqincrement, seqmax, seqmin,
                                   seqcache, seqcycle)
                  FROM pg_sequence WHERE seqrelid = rel.oid))
FROM rel
UNION ALL
SELECT 'column', format('%%I.%%I.%%I', c.nspname, c.relname, a.attname),
       concat_ws(' ', a.attnum, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                 a.attidentity, a.attgenerated, a.attcollation, a.attacl::text,
                 pg_get_expr(d.adbin, d.adrelid))
FROM pg_attribute a JOIN rel c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
UNION ALL
SELECT 'constraint', format('%%I on %%s', k.conname, coalesce(
         (SELECT format('%%I.%%I', nspname, relname) FROM rel WHERE rel.oid = k.conrelid),
         format_type(k.contypid, NULL))),
       concat_ws(' ', pg_get_constraintdef(k.oid), k.condeferrable, k.condeferred,
                 k.convalidated)
FROM pg_constraint k WHERE k.connamespace IN (SELECT oid FROM ns)
UNION ALL
SELECT CASE p.prokind WHEN 'a' THEN 'aggregate' WHEN 'p' THEN 'procedure'
         ELSE 'function' END,
       format('%%I.%%I(%%s)', ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
       concat_ws(' ', md5(p.prosrc), p.probin, pg_get_function_result(p.oid), p.prolang,
                 p.provolatile, p.prosecdef, p.proleakproof, p.proisstrict, p.proparallel,
                 p.proconfig::text, p.proacl::text, pg_get_userbyid(p.proowner))
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
UNION ALL
SELECT 'type', format('%%I.%%I', ns.nspname, t.typname),
       concat_ws(' ', t.typtype, format_type(t.typbasetype, t.typtypmod), t.typnotnull,
                 t.typdefault, t.typacl::text, pg_get_userbyid(t.typowner),
                 (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                  FROM pg_enum e WHERE e.enumtypid = t.oid))
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
WHERE t.typtype IN ('b', 'd', 'e', 'r', 'm') AND t.typcategory <> 'A'
UNION ALL
SELECT 'trigger', format('%%I on %%I.%%I', tg.tgname, c.nspname, c.relname),
       concat_ws(' ', pg_get_triggerdef(tg.oid), tg.tgenabled)
FROM pg_trigger tg JOIN rel c ON c.oid = tg.tgrelid WHERE NOT tg.tgisinternal
UNION ALL
SELECT 'internal triggers', format('on %%I.%%I', c.nspname, c.relname),
       string_agg(tg.tgenabled::text, '' ORDER BY tg.tgenabled)
FROM pg_trigger tg JOIN rel c ON c.oid = tg.tgrelid WHERE tg.tgisinternal
GROUP BY c.nspname, c.relname
UNION ALL
SELECT 'policy', format('%%I on %%I.%%I', pol.polname, c.nspname, c.relname),
       concat_ws(' ', pol.polcmd, pol.polpermissive, pol.polroles::text,
                 pg_get_expr(pol.polqual, pol.polrelid),
                 pg_get_expr(pol.polwithcheck, pol.polrelid))
FROM pg_policy pol JOIN rel c ON c.oid = pol.polrelid
UNION ALL
SELECT 'rule', format('%%I on %%I.%%I', r.rulename, c.nspname, c.relname), pg_get_ruledef(r.oid)
FROM pg_rewrite r JOIN rel c ON c.oid = r.ev_class WHERE r.rulename <> '_RETURN'
UNION ALL
SELECT 'extension', quote_ident(extname), concat_ws(' ', extversion, extnamespace)
FROM pg_extension
UNION ALL
SELECT 'event trigger', quote_ident(evtname),
       concat_ws(' ', evtevent, evtenabled, evtfoid, evttags::text)
FROM pg_event_trigger
UNION ALL
SELECT 'cast', format('(%%s AS %%s)', format_type(castsource, NULL), format_type(casttarget, NULL)),
       concat_ws(' ', castfunc, castcontext, castmethod)
FROM pg_cast WHERE oid >= 16384
UNION ALL
SELECT 'publication', quote_ident(pubname), concat_ws(' ', puballtables, pubinsert, pubupdate)
FROM pg_publication
UNION ALL
SELECT 'role', quote_ident(rolname),
       concat_ws(' ', rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
                 rolreplication, rolbypassrls, rolconnlimit)
FROM pg_roles WHERE %(roles)s OR rolname = session_user
UNION ALL
SELECT 'default privileges',
       -- in words: "of role app on tables in schema public"
       format('of role %%s on %%s in %%s', quote_ident(pg_get_userbyid(defaclrole)),
              CASE defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                   WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas'
                   ELSE 'objects of kind ' || defaclobjtype::text END,
              CASE WHEN defaclnamespace = 0 THEN 'every schema'
                   ELSE 'schema ' || defaclnamespace::regnamespace::text END),
       defaclacl::text
FROM pg_default_acl
"""

_DATABASE = b"""
SELECT datallowconn, datconnlimit, datistemplate FROM pg_database
WHERE datname = %(db)s
"""
_SETTINGS = b"""
SELECT s.setdatabase <> 0, s.setrole <> 0, unnest(s.setconfig)
FROM pg_db_role_setting s
WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = %(db)s))
  AND s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = session_user))
ORDER BY 1, 2, 3
"""

Scope = tuple[bool, bool]  # (for this database only, for the session's role only)


@dataclass(frozen=True)
class Schema:
    """The schema's objects: `(kind, name) -> definition text`, and a digest of them all."""

    objects: dict[tuple[str, str], str]
    digest: str

    def changes(self, now: Schema) -> list[str]:
        """One line per object created, dropped or changed since `self`, e.g.
        "table public.leak_tbl was created"; [] when the digests match."""
        if self.digest == now.digest:
            return []
        keys = sorted(set(self.objects) | set(now.objects))
        changed = [k for k in keys if self.objects.get(k) != now.objects.get(k)]
        # a table created or dropped: its columns, constraints, triggers go without saying
        whole = {name for kind, name in changed if kind in _RELATIONS
                 and ((kind, name) not in self.objects or (kind, name) not in now.objects)}
        lines = []
        for kind, name in changed:
            if kind not in _RELATIONS and _belongs_to(kind, name, whole):
                continue
            old, new = self.objects.get((kind, name)), now.objects.get((kind, name))
            was = "were" if kind in _PLURAL else "was"
            what = ("changed" if old is not None and new is not None
                    else f"{was} created" if old is None else f"{was} dropped")
            lines.append(f"{kind} {name} {what}")
        return lines


_PLURAL = ("internal triggers", "default privileges")  # kinds named in the plural
_RELATIONS = ("table", "view", "materialized view", "foreign table", "type", "sequence")


def _belongs_to(kind: str, name: str, relations: set[str]) -> bool:
    if kind == "column":
        return name.rpartition(".")[0] in relations
    if name.startswith("on "):  # internal triggers
        return name[3:] in relations
    return " on " in name and name.rpartition(" on ")[2] in relations


@dataclass(frozen=True)
class Settings:
    """Settings that reach a new session on the test database, and the database's properties."""

    values: dict[Scope, dict[str, str]]  # scope -> {name: value}
    database: tuple[bool, int, bool]  # allow connections, connection limit, is template


def _read_only_off(conn: psycopg.Connection[Any]) -> None:
    # A test may have set default_transaction_read_only on the database; this session writes.
    conn.execute(b"SET LOCAL transaction_read_only = off")


def take_schema(conn: psycopg.Connection[Any], roles: bool) -> Schema:
    """The schema fingerprint; in a transaction of its own, rolled back.

    Every role of the server with `roles` (a server of sqlfix's own), else only the
    session's own (other databases' users come and go). Read only once
    `catalog_watch` found a change, to name it.
    """
    cur = conn.cursor(row_factory=tuple_row)
    try:
        cur.execute(b"SET LOCAL search_path = pg_catalog")
        rows = cur.execute(_OBJECTS, {"own": list(OWN_SCHEMAS), "roles": roles}).fetchall()
    finally:
        conn.rollback()
    objects = {(str(kind), str(name)): str(text or "") for kind, name, text in rows}
    digest = hashlib.sha256()
    for key in sorted(objects):
        digest.update(f"{key[0]}\0{key[1]}\0{objects[key]}\0".encode())
    return Schema(objects, digest.hexdigest())


def take_settings(conn: psycopg.Connection[Any], dbname: str | None = None) -> Settings:
    """The settings fingerprint of database `dbname` (default: `conn`'s) for `conn`'s session
    user; in a transaction of its own, rolled back. The catalogs read are shared: `conn`
    may be connected to another database of the server."""
    cur = conn.cursor(row_factory=tuple_row)
    params = {"db": dbname or conn.info.dbname}
    try:
        values: dict[Scope, dict[str, str]] = {}
        for in_db, for_role, item in cur.execute(_SETTINGS, params).fetchall():
            name, _, value = str(item).partition("=")
            values.setdefault((bool(in_db), bool(for_role)), {})[name] = value
        row = cur.execute(_DATABASE, params).fetchone()
    finally:
        conn.rollback()
    assert row is not None
    return Settings(values, (bool(row[0]), int(row[1]), bool(row[2])))


def _target(dbname: str, scope: Scope) -> sql.Composable:
    db = sql.Identifier(dbname)
    role = sql.SQL("SESSION_USER")
    in_db, for_role = scope
    if in_db and for_role:
        return sql.SQL("ROLE {} IN DATABASE {}").format(role, db)
    if in_db:
        return sql.SQL("DATABASE {}").format(db)
    return sql.SQL("ROLE {}").format(role if for_role else sql.SQL("ALL"))


def _describe(scope: Scope) -> str:
    in_db, for_role = scope
    if in_db and for_role:
        return "ALTER ROLE <session user> IN DATABASE <test database>"
    if in_db:
        return "ALTER DATABASE <test database>"
    return "ALTER ROLE <session user>" if for_role else "ALTER ROLE ALL"


def undo_settings(
    conn: psycopg.Connection[Any], baseline: Settings, dbname: str | None = None
) -> list[str]:
    """Put back the settings and database properties `baseline` recorded; commits.

    Returns one line per setting undone, e.g. "ALTER ROLE <session user> SET
    search_path = pg_catalog was undone (RESET)"; [] when nothing changed.
    Raises psycopg.Error when the server refuses (the role lost the right to).
    """
    dbname = dbname or conn.info.dbname
    now = take_settings(conn, dbname)
    lines: list[str] = []
    with conn.transaction():
        _read_only_off(conn)
        for scope in sorted(set(baseline.values) | set(now.values)):
            old, new = baseline.values.get(scope, {}), now.values.get(scope, {})
            target = _target(dbname, scope)
            for name in sorted(set(old) | set(new)):
                if old.get(name) == new.get(name):
                    continue
                if name not in old:
                    conn.execute(sql.SQL("ALTER {} RESET {}").format(target, sql.Identifier(name)))
                    lines.append(f"{_describe(scope)} SET {name} = {new[name]} was undone (RESET)")
                else:
                    _set_back(conn, target, name, old[name])
                    was = f"SET {name} = {new[name]}" if name in new else f"RESET {name}"
                    lines.append(f"{_describe(scope)} {was} was undone (back to {old[name]})")
        if now.database != baseline.database:
            allow, limit, template = baseline.database
            conn.execute(sql.SQL(
                "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {} CONNECTION LIMIT {} IS_TEMPLATE {}"
            ).format(sql.Identifier(dbname), sql.Literal(allow), sql.Literal(limit),
                     sql.Literal(template)))
            lines.append("ALTER DATABASE <test database> WITH ALLOW_CONNECTIONS/CONNECTION "
                         f"LIMIT/IS_TEMPLATE was undone (back to {allow}/{limit}/{template})")
    return lines


def _set_back(conn: psycopg.Connection[Any], target: sql.Composable, name: str, value: str) -> None:
    """`ALTER ... SET name` to the stored text `value`, parsed as the setting itself parses it.

    The stored text is the flattened value (`"$user", public` for a list): set it
    for this transaction with set_config(), then store it `FROM CURRENT`; a setting
    that cannot change at run time is given as a literal instead.
    """
    try:
        with conn.transaction():
            conn.execute(b"SELECT set_config(%s, %s, true)", [name, value])
            conn.execute(sql.SQL("ALTER {} SET {} FROM CURRENT").format(
                target, sql.Identifier(name)))
    except psycopg.Error:
        conn.execute(sql.SQL("ALTER {} SET {} = {}").format(
            target, sql.Identifier(name), sql.Literal(value)))
