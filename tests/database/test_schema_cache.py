"""The schema built once across runs: the embedded server's cluster saved per schema key."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

from sqlfix.config import Settings
from sqlfix.database.session import DatabaseSession

# Counts its runs in a file, and leaves a table behind that proves it ran.
COMMAND = (
    f"{sys.executable} -c \"import os, psycopg; open('runs.txt', 'a').write('x'); "
    "psycopg.connect(os.environ['SQLFIX_DSN'], autocommit=True).execute("
    "'CREATE TABLE IF NOT EXISTS migrated (id int)')\""
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "fixtures_sql").mkdir()
    # a unique schema per test: the cache is the user's, shared with other tests
    (tmp_path / "schema.sql").write_text(
        f"-- {tmp_path}\nCREATE TABLE users (id int PRIMARY KEY, name text);\n"
        "INSERT INTO users VALUES (1, 'lookup');\n")
    return tmp_path


def session(root: Path, rebuild: bool = False, command: str = COMMAND) -> DatabaseSession:
    settings = Settings(root=root, fixtures_dir=root / "fixtures_sql",
                        schema=(root / "schema.sql",), setup_command=command)
    started = DatabaseSession(settings, rebuild=rebuild)
    started.start()
    return started


def runs(root: Path) -> int:
    return len((root / "runs.txt").read_text()) if (root / "runs.txt").exists() else 0


def tables(s: DatabaseSession) -> list[tuple[str, int]]:
    conn = s.connection()
    found = conn.execute(
        "SELECT 'users', count(*) FROM users UNION ALL SELECT 'migrated', count(*) FROM migrated"
    ).fetchall()
    conn.rollback()
    return [(str(name), int(n)) for name, n in found]


def test_the_second_session_starts_from_the_saved_schema(project):
    first = session(project)
    try:
        assert first.server is not None and not first.server.schema_cached
        assert tables(first) == [("users", 1), ("migrated", 0)]
    finally:
        first.stop()
    second = session(project)
    try:
        assert second.server is not None and second.server.schema_cached
        assert runs(project) == 1  # setup_command did not run again
        assert tables(second) == [("users", 1), ("migrated", 0)]
        assert second.baseline is not None and second.baseline.saved  # lookup rows captured
    finally:
        second.stop()


def _run_and_stop(project: Path, **kwargs: object) -> bool:
    s = session(project, **kwargs)  # type: ignore[arg-type]
    try:
        assert s.server is not None
        return s.server.schema_cached
    finally:
        s.stop()


def test_a_changed_schema_file_builds_again(project):
    assert not _run_and_stop(project)
    schema = project / "schema.sql"
    schema.write_text(schema.read_text() + "CREATE TABLE extra (id int);\n")
    assert not _run_and_stop(project)
    assert runs(project) == 2
    s = session(project)
    try:
        assert s.server is not None and s.server.schema_cached
        assert s.connection().execute("SELECT to_regclass('extra') IS NOT NULL").fetchone() == (
            True,)
    finally:
        s.stop()


@pytest.mark.slow  # four server starts, two of them from initdb: the full suite runs it
def test_changed_server_settings_build_again(project):
    """search_path decides where the schema's tables go: a schema built under other
    server_settings is not the one this run would build."""
    def where(server_settings: dict[str, str]) -> tuple[str, bool]:
        (project / "schema.sql").write_text(
            f"-- {project}\nCREATE SCHEMA IF NOT EXISTS app;\nCREATE TABLE users (id int);\n")
        s = DatabaseSession(Settings(
            root=project, fixtures_dir=project / "fixtures_sql",
            schema=(project / "schema.sql",), server_settings=server_settings))
        s.start()
        try:
            assert s.server is not None
            row = s.connection().execute(
                "SELECT relnamespace::regnamespace::text FROM pg_class WHERE relname = 'users'"
            ).fetchone()
            return str(row[0]), s.server.schema_cached
        finally:
            s.stop()

    assert where({}) == ("public", False)
    assert where({"search_path": "app, public"}) == ("app", False)
    assert where({"search_path": "app, public"}) == ("app", True)
    assert where({}) == ("public", True)


def test_a_changed_setup_command_builds_again(project):
    assert not _run_and_stop(project)
    assert not _run_and_stop(project, command=COMMAND + " # v2")
    assert _run_and_stop(project, command=COMMAND + " # v2")
    assert runs(project) == 2


def test_rebuild_ignores_the_saved_schema_and_saves_a_new_one(project):
    assert not _run_and_stop(project)
    assert not _run_and_stop(project, rebuild=True)
    assert runs(project) == 2
    assert _run_and_stop(project)


def test_a_failing_schema_saves_nothing(project):
    (project / "schema.sql").write_text(f"-- {project}\nCREATE TABLE broken (;\n")
    for _ in range(2):
        with pytest.raises(Exception, match="schema failed"):
            session(project)


def test_a_rebuild_from_the_saved_schema_runs_a_schema_that_creates_roles(project):
    # Started from the saved cluster, the schema's roles are already there; a rebuild runs
    # the schema again, so it must drop them first (it kept them once: "role ... already
    # exists", found on the pip-only machine, where every run shares one cache).
    role = f"cache_role_{abs(hash(str(project))) % 10**8}"
    (project / "schema.sql").write_text(
        f"-- {project}\nCREATE ROLE {role} NOLOGIN;\n"
        f"CREATE TABLE users (id int PRIMARY KEY, name text);\nGRANT SELECT ON users TO {role};\n"
        "INSERT INTO users VALUES (1, 'lookup');\n")
    assert not _run_and_stop(project)
    s = session(project)
    try:
        assert s.server is not None and s.server.schema_cached
        conn = s.connection()
        conn.execute("CREATE TABLE leaked (id int)")
        psycopg.Connection.commit(conn)  # the escape: committed DDL
        said = s.restore()
        assert "sqlfix rebuilt the test database" in said, said
        assert tables(s) == [("users", 1), ("migrated", 0)]
        check = s.connection()
        assert check.execute("SELECT to_regclass('leaked'), count(*) FROM pg_roles "
                             "WHERE rolname = %s", [role]).fetchone() == (None, 1)
        check.rollback()
    finally:
        s.stop()


@pytest.fixture
def digest_computations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many catalogs each computation of the catalog digests covered, in order."""
    from sqlfix.database import catalog_watch

    computed: list[int] = []
    real = catalog_watch.Watch._digests

    def counting(self, conn, names):
        computed.append(len(names))
        return real(self, conn, names)

    monkeypatch.setattr(catalog_watch.Watch, "_digests", counting)
    return computed


def test_later_sessions_take_the_catalog_digests_from_beside_the_saved_schema(
        project, digest_computations):
    computed = digest_computations
    digests = []
    for _ in range(3):
        s = session(project)
        try:
            assert s.watch is not None
            digests.append(s.watch.digests)
        finally:
            s.stop()
    # the first session computes them, on the cluster it saved: the later ones start from
    # a copy of it and see the same catalogs, to the transaction ids
    assert len(computed) == 1 and computed[0] > 10
    assert digests[0] == digests[1] == digests[2]


def test_digests_kept_for_other_catalogs_are_not_taken(fresh_dsn: str, tmp_path: Path) -> None:
    from sqlfix.database import catalog_watch
    from sqlfix.database.schema import connect

    cache = tmp_path / "x.watch.json"
    conn = connect(fresh_dsn)
    try:
        first = catalog_watch.Watch.take(conn, shared=False, cache=cache)
        assert first.digests == catalog_watch.Watch.take(conn, shared=False, cache=cache).digests
        with psycopg.connect(fresh_dsn, autocommit=True) as other:
            other.execute("CREATE TABLE another (id int)")
        second = catalog_watch.Watch.take(conn, shared=False, cache=cache)
        assert second.digests["pg_class"] != first.digests["pg_class"]
        assert second.digests == catalog_watch.Watch.take(conn, shared=False).digests
        cache.write_text("{not json")  # damaged: computed anew
        assert catalog_watch.Watch.take(conn, shared=False, cache=cache).digests == second.digests
    finally:
        conn.close()


def test_a_rebuild_computes_the_catalog_digests_again(project, digest_computations):
    """A rebuild starts from the same initdb cluster and may reuse the very transaction ids
    of the build it replaces: the digests' fingerprint would match, the catalogs not."""
    computed = digest_computations
    for rebuild in (False, True, False):
        assert not _run_and_stop(project, rebuild=rebuild) or not rebuild
    # the first build and the rebuild compute them; the third session takes the rebuild's
    assert len(computed) == 2


@pytest.mark.parametrize("damage", ["pg_class emptied", "database directory gone",
                                    "pg_control gone", "database's PG_VERSION emptied",
                                    "pg_filenode.map emptied"])
def test_a_damaged_saved_schema_is_dropped_and_built_again(project, damage):
    """pg_class cut to nothing in the saved cluster: every connection PANICs; the test
    database's directory gone: "does not exist"; pg_control gone: the server exits. The
    session builds the schema again (from the initdb cache) instead of failing every run."""
    assert not _run_and_stop(project)
    first = session(project)
    try:
        assert first.server is not None and first.server.schema_cached
        schema_dir = first.server.schema_dir
        assert schema_dir is not None
        conn = first.connection()
        oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()"
                           ).fetchone()
        conn.rollback()
    finally:
        first.stop()
    if damage == "pg_class emptied":
        damaged = list(schema_dir.glob("base/*/1259"))
        assert damaged
        for file in damaged:
            file.write_bytes(b"")
    elif damage == "database directory gone":
        import shutil

        assert oid is not None
        shutil.rmtree(schema_dir / "base" / str(oid[0]))
    elif damage == "database's PG_VERSION emptied":
        assert oid is not None
        (schema_dir / "base" / str(oid[0]) / "PG_VERSION").write_bytes(b"")
    elif damage == "pg_filenode.map emptied":
        (schema_dir / "global" / "pg_filenode.map").write_bytes(b"")
    else:
        (schema_dir / "global" / "pg_control").unlink()
    again = session(project)
    try:
        assert again.server is not None and not again.server.schema_cached
        assert tables(again) == [("users", 1), ("migrated", 0)]
        # The log keeps the damaged cluster's server too (appended to); the server that
        # runs now, on the rebuilt one, wrote the lines after its launch.
        log = again.server._runtime._log_bytes().decode(errors="replace")
        assert "ready to accept connections" in log
        assert "PANIC" not in log
    finally:
        again.stop()
    assert runs(project) == 2  # built again, and saved again for the next one
    assert _run_and_stop(project)
