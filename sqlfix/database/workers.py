"""A database of its own for each pytest-xdist worker, cloned from the DSN's database.

pytest-django's way: worker `gw1` of a run against `myapp_test` tests in
`myapp_test_gw1`, made with `CREATE DATABASE myapp_test_gw1 TEMPLATE myapp_test`
and dropped when the worker ends. The schema (and `setup_command`) is applied to
the DSN's database first, by the first worker of the run to get an advisory lock;
the others find the run's id recorded there (`_sqlfix.clone_runs`) and clone what it
built, so migrations run once a run, not once a worker. PostgreSQL refuses to clone a
database while anyone is connected to it: the clone is retried for a while, then
the error says who to disconnect.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sqlfix.database.schema import cannot_connect, unsafe_database, with_connect_timeout
from sqlfix.errors import DatabaseError, RefusedDatabase

_MAINTENANCE = ("postgres", "template1")  # where CREATE/DROP DATABASE run from
_CLONE_PATIENCE = 30.0  # seconds to wait for other sessions to leave the template
_CLEAN_UP_TIMEOUT = 5  # connect_timeout of the controller's clean-up, unless the user chose one


_MAX_NAME = 63  # bytes PostgreSQL keeps of a name (NAMEDATALEN - 1)
# What sqlfix writes on each clone (COMMENT ON DATABASE): a database of that name without
# it is not a leftover of sqlfix's, and is never dropped.
CLONE_COMMENT = "sqlfix: pytest-xdist worker clone of "


def worker_dbname(template: str, worker: str) -> str:
    """`myapp_test` + `gw1` -> `myapp_test_gw1`.

    A name that would pass PostgreSQL's 63 bytes is cut, and a hash of the whole name
    keeps two long names that begin alike apart: `<cut>_<8 hex>_gw1`."""
    suffix = f"_{worker}"
    if len((template + suffix).encode()) <= _MAX_NAME:
        return template + suffix
    tag = "_" + hashlib.sha256(template.encode()).hexdigest()[:8]
    keep = _MAX_NAME - len(suffix.encode()) - len(tag)
    return template.encode()[:keep].decode(errors="ignore") + tag + suffix


def dbname_of(dsn: str) -> str:
    """The database a DSN names (libpq's default: the user name)."""
    with psycopg.connect(with_connect_timeout(dsn), autocommit=True) as conn:
        return conn.info.dbname


_CAN_CLONE = b"""
SELECT current_database(), r.rolsuper, r.rolcreatedb, d.datistemplate,
       pg_has_role(d.datdba, 'USAGE')
FROM pg_roles r, pg_database d
WHERE r.rolname = current_user AND d.datname = current_database()
"""


# A clone of the DSN's database (sqlfix's comment on it) with a session on it.
_BUSY_CLONE = b"""
SELECT d.datname FROM pg_database d
WHERE shobj_description(d.oid, 'pg_database') = %s
  AND EXISTS (SELECT FROM pg_stat_activity a  -- autovacuum may be in a crashed run's clone
              WHERE a.datid = d.oid AND a.backend_type = 'client backend')
ORDER BY 1 LIMIT 1
"""


def refuse_unclonable(dsn: str, allow_any_database: bool) -> str | None:
    """DatabaseError if no pytest-xdist worker could clone the DSN's database, for the
    controller to say once before the workers start (each would fail the same way): a
    name without 'test' (as the server reads it: a DSN may leave it to PGDATABASE or
    the user name), a user without CREATEDB, or a database the user may not copy
    (PostgreSQL copies a database for its owner or a superuser, or one marked
    IS_TEMPLATE), or clones another run's workers are testing in. Returns
    `schema.cannot_connect`'s words when the controller could not connect (refused, no
    answer in time, an unknown role or database): each worker would meet the same, and
    says these words at its first database test, without trying (or waiting) again.
    Else None; any other failure is the workers' to report."""
    try:
        with psycopg.connect(with_connect_timeout(dsn), autocommit=True) as conn:
            row = conn.execute(_CAN_CLONE).fetchone()
            busy = conn.execute(_BUSY_CLONE, [CLONE_COMMENT + row[0]]).fetchone() if row else None
    except psycopg.OperationalError as exc:
        return cannot_connect(dsn, exc)
    except psycopg.Error:
        return None
    if row is None:  # the user's role is not in pg_roles: let the workers meet what it is
        return None
    name, superuser, createdb, template, owner = row
    if busy is not None:  # this run's workers have not started: another run's are in it
        raise RefusedDatabase(_in_use(busy[0]))
    why = unsafe_database(name, allow_any_database)
    if why:
        raise RefusedDatabase(why)
    if not (superuser or createdb):
        raise RefusedDatabase(f"cannot create the pytest-xdist workers' copies of {name!r}: the "
                            f"DSN's user may not create databases. {_grant(name, False)}")
    if not (superuser or owner or template):
        raise RefusedDatabase(f"cannot copy {name!r} for the pytest-xdist workers: PostgreSQL "
                            f"copies a database for its owner only. {_grant(name, True)}")
    return None


@contextmanager
def maintenance(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the server's `postgres` (or `template1`) database."""
    last: psycopg.Error | None = None
    for dbname in _MAINTENANCE:
        try:
            conn = psycopg.connect(make_conninfo(with_connect_timeout(dsn), dbname=dbname),
                                   autocommit=True)
        except psycopg.errors.ConnectionTimeout:
            raise  # no answer from the server: nor would its other database answer
        except psycopg.OperationalError as exc:
            last = exc
            continue
        with conn:
            yield conn
        return
    raise DatabaseError(
        f"cannot connect to the server's 'postgres' or 'template1' database to create the "
        f"pytest-xdist workers' databases ({last}); grant CONNECT on one of them to the DSN's "
        "user, or run without -n")


def clone_for_worker(
    dsn: str, worker: str, prepare: Callable[[str], None], run: str | None = None,
    allow_any_database: bool = False,
) -> str:
    """The DSN of `worker`'s fresh clone of the DSN's database; raises DatabaseError.

    `prepare(dsn)` runs on the DSN's database first (the schema), one worker at a
    time, and once per `run` (pytest-xdist's `testrunuid`; None: every time); it
    must close every connection it opens, or the clone cannot be made. The clone
    is dropped first if a crashed run left it behind; one that a session is on (another
    run's worker) is not taken, nor one sqlfix did not make: DatabaseError. The DSN's
    database must be a test database (schema.unsafe_database): its name is checked, not
    the clone's, which a long name may lose 'test' from.
    """
    template = dbname_of(dsn)
    why = unsafe_database(template, allow_any_database)
    if why:
        raise RefusedDatabase(why)
    target = worker_dbname(template, worker)
    if conninfo_to_dict(dsn).get("dbname") is None:
        dsn = make_conninfo(dsn, dbname=template)
    with maintenance(dsn) as conn:
        lock = sql.SQL("SELECT pg_advisory_lock(hashtext({}))").format(
            sql.Literal(f"sqlfix: clone {template}"))
        conn.execute(lock)  # session-level: released when this connection closes
        if run is None or not _prepared_in(dsn, run):
            prepare(dsn)
            if run is not None:
                _record_run(dsn, run)
        _drop_left_behind(conn, target)
        _create(conn, target, template)
    return make_conninfo(dsn, dbname=target)


def _drop_left_behind(conn: psycopg.Connection[Any], target: str) -> None:
    """Drop the worker's clone a crashed run left (a dead run holds no session on it);
    raises DatabaseError if a session is on it: another run's worker is testing there."""
    found = conn.execute(b"SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                         b"WHERE datname = %s", [target]).fetchone()
    if found is None:
        return
    if not str(found[0] or "").startswith(CLONE_COMMENT):
        raise RefusedDatabase(
            f"database {target!r} exists, and sqlfix did not make it (it has no "
            f"{CLONE_COMMENT.strip()!r} comment), but a pytest-xdist worker of this run "
            "would test in a clone of that name. sqlfix drops only its own clones. Drop or "
            "rename that database if it is not needed, or point the run at a database "
            "with another name (a DSN with another dbname)")
    # client backends only: autovacuum may be working in a crashed run's clone
    in_use = conn.execute(
        b"SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
        b"AND backend_type = 'client backend'", [target]).fetchone()
    try:
        if in_use and in_use[0]:
            raise psycopg.errors.ObjectInUse()
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(target)))
    except psycopg.errors.ObjectInUse:
        raise RefusedDatabase(_in_use(target)) from None


def _grant(template: str, copying: bool) -> str:
    """What to give the DSN's user: ownership of `template` (to copy it) or CREATEDB."""
    if copying:
        return (f"Make the DSN's user the owner of {template!r} (ALTER DATABASE {template} "
                f"OWNER TO ...) or mark it as a template (ALTER DATABASE {template} "
                "IS_TEMPLATE true), or run without -n")
    return "Give the DSN's user CREATEDB (ALTER ROLE ... CREATEDB), or run without -n"


def _in_use(clone: str) -> str:
    return (f"the pytest-xdist worker database {clone!r} is in use: another test run on this "
            "server (another terminal, a CI job) is testing in it. sqlfix does not take it "
            "from that run: wait for it to end, or point this run at a database of its own "
            "(a DSN with another dbname, whose clones get other names)")


_RUNS = sql.Identifier("_sqlfix", "clone_runs")  # runs whose first worker built the template


def _prepared_in(dsn: str, run: str) -> bool:
    """Whether a worker of `run` prepared the DSN's database already."""
    with psycopg.connect(with_connect_timeout(dsn), autocommit=True) as conn:
        if conn.execute(b"SELECT to_regclass('_sqlfix.clone_runs')"
                        ).fetchone() == (None,):
            return False
        query = sql.SQL("SELECT 1 FROM {} WHERE run = {}").format(
            _RUNS, sql.Literal(run))
        return conn.execute(query).fetchone() is not None


def _record_run(dsn: str, run: str) -> None:
    with psycopg.connect(with_connect_timeout(dsn), autocommit=True) as conn:
        conn.execute(b"CREATE SCHEMA IF NOT EXISTS _sqlfix")
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (run text PRIMARY KEY, "
                             "at timestamptz NOT NULL DEFAULT now())").format(_RUNS))
        conn.execute(sql.SQL("INSERT INTO {} (run) VALUES ({}) ON CONFLICT DO NOTHING").format(
            _RUNS, sql.Literal(run)))
        # a run's row is needed while its workers start: older ones only grow the table
        conn.execute(sql.SQL("DELETE FROM {} WHERE at < now() - interval '1 day'").format(_RUNS))


def _create(conn: psycopg.Connection[Any], target: str, template: str) -> None:
    query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(target), sql.Identifier(template))
    deadline = time.monotonic() + _CLONE_PATIENCE
    while True:
        try:
            conn.execute(query)
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(target), sql.Literal(CLONE_COMMENT + template)))
            return
        except psycopg.errors.ObjectInUse as exc:
            if time.monotonic() > deadline:
                raise DatabaseError(
                    f"cannot clone database {template!r} for a pytest-xdist worker: "
                    f"{exc.diag.message_primary} ({exc.diag.message_detail or 'no detail'}). "
                    "PostgreSQL copies a database only while nobody is connected to it: "
                    "close other sessions on it (psql, an IDE, a running app), or run "
                    "without -n") from exc
            time.sleep(0.1)
        except psycopg.errors.InsufficientPrivilege as exc:
            # PostgreSQL copies a database for its owner (or a superuser) only, unless
            # it is marked as a template; creating any needs CREATEDB.
            copying = "copy database" in (exc.diag.message_primary or "")
            raise RefusedDatabase(
                f"cannot create database {target!r} for a pytest-xdist worker: "
                f"{exc.diag.message_primary}. {_grant(template, copying)}") from exc


def drop_worker_database(dsn: str) -> None:
    """Drop a worker's clone (at the end of its session); errors are the caller's to ignore."""
    name = conninfo_to_dict(dsn)["dbname"]
    with maintenance(dsn) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(str(name))))


def drop_clones_left(dsn: str, workers: list[str], patience: float = 3.0) -> list[str]:
    """On the pytest-xdist controller at the end of a run: drop the workers' clones that
    are still there (workers interrupted by Ctrl-C, or crashed, never dropped theirs);
    returns the names dropped. Only sqlfix's own clones (CLONE_COMMENT), and only once no
    client is on them: backends of workers that just died take a moment to end.
    Failures are dropped: the next run replaces a leftover clone all the same."""
    dropped: list[str] = []
    try:
        dsn = with_connect_timeout(dsn, _CLEAN_UP_TIMEOUT)  # the run's end waits for no server
        template = dbname_of(dsn)
        targets = [worker_dbname(template, worker) for worker in workers]
        with maintenance(dsn) as conn:
            left = [r[0] for r in conn.execute(
                b"SELECT datname FROM pg_database WHERE datname = ANY (%s) "
                b"AND shobj_description(oid, 'pg_database') LIKE %s",
                [targets, CLONE_COMMENT + "%"])]
            deadline = time.monotonic() + patience
            while left:
                busy = {r[0] for r in conn.execute(
                    b"SELECT DISTINCT datname FROM pg_stat_activity WHERE datname = ANY (%s) "
                    b"AND backend_type = 'client backend'", [left])}
                for name in [n for n in left if n not in busy]:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(
                        sql.Identifier(name)))
                    dropped.append(name)
                left = [n for n in left if n in busy]
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    except (psycopg.Error, DatabaseError):
        pass
    return dropped
