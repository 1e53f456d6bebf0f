"""The restricted role fixtures load under: no reach outside the database.

The statement guard reads a fixture's text; this is the layer that holds at the
server even if the guard missed something. When the session's user is a
superuser (the embedded server, or a DSN that logs in as one), sqlfix creates
the role `sqlfix_fixture` (NOLOGIN, BYPASSRLS so fixtures write rows the way the
schema's owner would) and grants it, in every schema but the system ones and
`_sqlfix`, USAGE on the schema, SELECT/INSERT/UPDATE/DELETE on its tables and
USAGE/SELECT/UPDATE on its sequences: nothing else. TRUNCATE is not granted
(the guard refuses it too). The loader enters the role with `SET LOCAL ROLE`
around each load and leaves it afterwards, so `lo_export`, `pg_read_file`,
`pg_terminate_backend`, `COPY ... TO 'file'` fail with "permission denied".

`set_config('role', 'none', true)` would leave the role from inside a SELECT,
so EXECUTE on `set_config` is revoked from PUBLIC in the test database and
granted back to every other role that existed at setup (superusers need no
grant). A role created later by a test needs `GRANT EXECUTE ON FUNCTION
set_config(text, text, boolean) TO it` to call it.

A user who is not a superuser cannot read or write server files or end other
users' backends anyway, unless granted the pg_* roles for it; then only the
guard stands, and `prepare` says so in its `note`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

ROLE = "sqlfix_fixture"
_ATTR = "_sqlfix_fixture_role"
# Built-in roles that reach outside the database; a non-superuser holding one is noted.
_OUTSIDE_ROLES = (
    "pg_read_server_files", "pg_write_server_files", "pg_execute_server_program",
    "pg_signal_backend",
)


@dataclass(frozen=True)
class FixtureRole:
    """Which server-side layer is active: `name` is the role, or None for "guard only"."""

    name: str | None
    note: str


_CREATE = sql.SQL(
    """DO $sqlfix$
BEGIN
    CREATE ROLE {role} NOLOGIN NOINHERIT BYPASSRLS;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database of this cluster created it first
END
$sqlfix$"""
).format(role=sql.Identifier(ROLE))

_SCHEMAS = b"""
SELECT nspname FROM pg_namespace
WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', '_sqlfix')
ORDER BY nspname
"""
_SET_CONFIG = "pg_catalog.set_config(text, text, boolean)"
_OTHER_ROLES = b"""
SELECT rolname FROM pg_roles
WHERE NOT rolsuper AND rolname !~ '^pg_' AND rolname <> %s
ORDER BY rolname
"""


def prepare(conn: psycopg.Connection[Any]) -> FixtureRole:
    """Create and grant the role (after the schema and setup_command ran); commits.

    Returns the role, or a FixtureRole with `name=None` and a note saying why
    only the guard is active. Raises psycopg.Error only for unexpected failures.
    """
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute(
        b"SELECT rolsuper, ARRAY(SELECT b.rolname FROM pg_roles b WHERE "
        b"b.rolname = ANY(%s) AND pg_has_role(current_user, b.oid, 'USAGE')) "
        b"FROM pg_roles WHERE rolname = current_user",
        [list(_OUTSIDE_ROLES)],
    ).fetchone()
    conn.rollback()
    superuser, outside = (bool(row[0]), list(row[1])) if row else (False, [])
    if not superuser:
        reach = (
            f"; it holds {', '.join(outside)}, so fixtures can reach outside the database "
            "as far as those allow"
            if outside
            else ""
        )
        return FixtureRole(
            None,
            f"the database user {conn.info.user!r} is not a superuser: fixtures load as that "
            f"user, checked by the statement guard only{reach}",
        )
    with conn.transaction():
        cur.execute(_CREATE)
        for (schema,) in cur.execute(_SCHEMAS).fetchall():
            names = {"schema": sql.Identifier(schema), "role": sql.Identifier(ROLE)}
            for grant in (
                "GRANT USAGE ON SCHEMA {schema} TO {role}",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
                "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
            ):
                cur.execute(sql.SQL(grant).format(**names))
        cur.execute(f"REVOKE EXECUTE ON FUNCTION {_SET_CONFIG} FROM PUBLIC".encode())
        for (other,) in cur.execute(_OTHER_ROLES, [ROLE]).fetchall():
            cur.execute(
                sql.SQL("GRANT EXECUTE ON FUNCTION {f} TO {role}").format(
                    f=sql.SQL(_SET_CONFIG), role=sql.Identifier(other)
                )
            )
    return FixtureRole(ROLE, f"fixtures load as role {ROLE} (DML on the schema's tables only)")


def attach(conn: psycopg.Connection[Any], role: FixtureRole | None) -> None:
    """Remember on `conn` which role its loads run under (read by `acting_as`)."""
    setattr(conn, _ATTR, role)


def switch(conn: psycopg.Connection[Any], before: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The statements into the fixture role and back to `before` (a `current_setting('role')`).

    For a caller that knows the role in effect and sends these along with the
    load (see `loader.load`); empty when `conn` has no fixture role. Same
    order as `acting_as`: enter before the loader's savepoint.
    """
    role: FixtureRole | None = getattr(conn, _ATTR, None)
    if role is None or role.name is None:
        return (), ()
    made = _SWITCHES.get((role.name, before))
    if made is None:  # once per role pair: the same two statements every test
        back = sql.SQL("NONE") if before == "none" else sql.Identifier(before)
        enter = sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role.name)).as_string(conn)
        leave = sql.SQL("SET LOCAL ROLE {}").format(back).as_string(conn)
        made = _SWITCHES[(role.name, before)] = ((enter,), (leave,))
    return made


_SWITCHES: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}


@contextmanager
def acting_as(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Run the block as the fixture role, if `conn` has one; then as before.

    Wrap the loader's statements (including any replay that locates an error):
    the role is set with SET LOCAL, before the loader's savepoint, so rolling
    back to that savepoint does not leave it.
    """
    role: FixtureRole | None = getattr(conn, _ATTR, None)
    if role is None or role.name is None:
        yield
        return
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute(
        sql.SQL("SELECT current_setting('role'); SET LOCAL ROLE {}").format(
            sql.Identifier(role.name)
        )
    ).fetchone()
    before = row[0] if row else "none"
    try:
        yield
    finally:
        if conn.info.transaction_status == TransactionStatus.INTRANS:
            back = sql.SQL("NONE") if before == "none" else sql.Identifier(before)
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(back))
