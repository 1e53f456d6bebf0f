"""A throwaway PostgreSQL server for a test session, ready in a fraction of a second.

`initdb` runs once per installation into a cache directory; every start copies that cluster
into a private runtime directory (on /dev/shm when possible) and runs `postgres` on a unix
socket there, with durability switched off. A watchdog process removes the runtime directory
and kills the server if this Python process dies, even by SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from sqlfix.database.binaries import (
    Binaries,
    copy_is_whole,
    digest,
    discard_copy,
    find_binaries,
    runnable_by,
)
from sqlfix.database.server_options import ServerOptions
from sqlfix.errors import ServerError

DBNAME = "sqlfix_test"
# The name pg_dump schemas expect (`ALTER ... OWNER TO postgres` loads as it is).
SUPERUSER = "postgres"
ENV_CACHE_DIR = "SQLFIX_CACHE_DIR"
_CLUSTER_FORMAT = "v2"  # bump when the cached cluster's contents change
_PORT = 5432
_MAX_SOCKET_PATH = 100  # sun_path holds 104-108 bytes depending on the OS
_MIN_SHM_FREE = 256 * 1024 * 1024  # Docker's default 64 MB /dev/shm is too small for us
_READY_TIMEOUT = 60.0
_POLL_INTERVAL = 0.002
_RELAUNCH_TRIES = 5  # a restart waits up to this many seconds for the dead one's backends

# Runs as `python -I -S -c`: reads the postmaster pid from stdin; "done" means we stopped it
# ourselves. EOF without "done" means the parent died: stop the server, remove the directory.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
runtime, pid, group = sys.argv[1], None, None
for line in sys.stdin.buffer:
    word = line.split()
    if word == [b"done"]:
        sys.exit(0)
    elif word[:1] == [b"group"]:  # a setup_command's process group, while it runs
        group = int(word[1]) if len(word) > 1 else None
    else:
        pid = int(line)

if group is not None:  # first: it works against the server
    try:
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            os.killpg(group, 0)
            time.sleep(0.02)
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:  # a zombie is dead too (some pid 1s never reap orphans)
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True  # no /proc (macOS): kill() found it

if pid is None:  # it may have started before its pid reached us
    try:
        with open(os.path.join(runtime, "data", "postmaster.pid"), "rb") as f:
            pid = int(f.readline())
    except (OSError, ValueError):
        pass

if pid is not None:
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except OSError:
            break
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not alive(pid):
            break
# Until the folder stays gone for a second: a copy of the cluster (cp -a, chown -R) that
# was under way goes on writing into it for a moment after its parent died.
gone_since, deadline = None, time.monotonic() + 15
while time.monotonic() < deadline:
    if os.path.lexists(runtime):
        shutil.rmtree(runtime, ignore_errors=True)
        gone_since = None
    elif gone_since is None:
        gone_since = time.monotonic()
    elif time.monotonic() - gone_since >= 1:
        break
    time.sleep(0.1)
"""


@dataclass(frozen=True)
class _Identity:
    """Who runs initdb and postgres: `None` ids mean ourselves (we are not root)."""

    uid: int | None = None
    gid: int | None = None

    @property
    def ids(self) -> tuple[int, int] | None:
        return None if self.uid is None or self.gid is None else (self.uid, self.gid)

    @property
    def extra_groups(self) -> list[int] | None:
        return [] if self.uid is not None else None  # drop root's supplementary groups

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def chown_tree(self, root: Path) -> None:
        if self.uid is None:
            return
        self.chown(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                self.chown(Path(dirpath, name))


# libpq's own refusals, made by the client whatever the server does: asked for by a PG*
# variable (channel binding, an authentication method, a service, a session kind, GSS
# or SSL the socket does not offer). Anything else may be a server still starting or
# recovering (a backend that crashes on a damaged catalog closes the connection first):
# waited for, as before.
_CLIENT_REFUSALS = (
    "channel binding", "authentication method requirement", "server requested",
    "definition of service", "service file", "hot standby mode", "read-write mode",
    "read-only mode", "GSSAPI encryption required", "does not support SSL",
    "invalid connection option",
    "invalid sslmode", "invalid gssencmode", "invalid target_session_attrs",
    "invalid channel_binding", "invalid require_auth", "invalid load_balance_hosts",
    "sslnegotiation",
)
# The server's refusals of parameters the client's startup packet set (PGOPTIONS, PGTZ,
# PGDATESTYLE, PGCLIENTENCODING, PGGEQO): a FATAL, but from the client's settings too,
# once the log says the server is ready (its own bad settings stop it before that).
_STARTUP_REFUSALS = (
    "invalid value for parameter", "unrecognized configuration parameter",
    "invalid command-line argument", "cannot be changed",
)


def _client_side(refused: str) -> bool:
    """True for a refusal the client's settings caused (see _CLIENT_REFUSALS and
    _STARTUP_REFUSALS): libpq's own, or the server's of a parameter the client sent."""
    if "FATAL:" in refused:
        return any(words in refused for words in _STARTUP_REFUSALS)
    return any(words in refused for words in _CLIENT_REFUSALS)


def _client_refused(refused: str) -> str:
    """A server that says it is ready, and a connection refused all the same: the client's
    settings (libpq reads PG* variables for what the DSN leaves out: PGCHANNELBINDING,
    PGREQUIREAUTH, PGSERVICE, PGTARGETSESSIONATTRS...) decide it, and waiting changes nothing."""
    names = sorted(k for k in os.environ if k.startswith("PG"))
    which = (f"; libpq read these from the environment: {', '.join(names)}" if names
             else "")
    return (f"the embedded PostgreSQL is ready, but sqlfix's connection to it was refused "
            f"for the client's settings: {refused}{which}. Unset the variable that asks for "
            "something a local test server does not offer (channel binding, an authentication "
            "method, a service, a standby) or sets a parameter the server refuses "
            "(PGOPTIONS, PGTZ, PGDATESTYLE, PGCLIENTENCODING), or give the tests a DSN of your "
            "own")


class EmbeddedServer:
    """A running private PostgreSQL; `stop()` (or leaving the `with` block) removes it."""

    def __init__(self, runtime: _Runtime, binaries: Binaries) -> None:
        self._runtime = runtime
        self.binaries = binaries  # the installation actually run (maybe a private copy)
        self.dbname = DBNAME
        self.dsn = runtime.dsn(DBNAME)
        self.runtime_dir = runtime.dir
        self.log = runtime.log  # the server's log; removed with runtime_dir by stop()
        self.pid = runtime.pid
        self._settings: dict[str, str] = {}  # its postgres -c options, for a restart

    schema_dir: Path | None = None  # where save_schema() keeps this schema's cluster
    schema_cached = False  # started from a cluster that already holds the schema

    @property
    def tcp_dsn(self) -> str | None:
        """The DSN over TCP (127.0.0.1), when started with a `server_port`; else None."""
        if not self._runtime.tcp:
            return None
        return make_conninfo(host="127.0.0.1", port=self._runtime.port, user=SUPERUSER,
                             dbname=DBNAME)  # fmt: skip

    @classmethod
    def start(
        cls,
        binaries: Binaries | None = None,
        cache_dir: Path | None = None,
        options: ServerOptions | None = None,
        schema_key: str | None = None,
        rebuild: bool = False,
    ) -> EmbeddedServer:
        """Start a server (the first installation found, or of `options.version`).

        With `schema_key`, from the cluster saved for it by `save_schema()`, if any:
        `schema_key` names what the schema was built from (files, commands); the
        PostgreSQL installation and locale are added to it here. `rebuild` ignores
        a saved one. Raises `ServerError` saying what failed (with the end of the
        server's log).
        """
        options = options if options is not None else ServerOptions()
        try:
            return cls._start(binaries, cache_dir, options, schema_key, rebuild)
        except ServerError as exc:
            if "No space left on device" not in str(exc):  # initdb's or postgres's words
                raise
            raise ServerError(
                f"could not start the embedded PostgreSQL: {_why(exc, cache_dir)}") from exc
        except (OSError, subprocess.SubprocessError, psycopg.Error) as exc:
            raise ServerError(
                f"could not start the embedded PostgreSQL: {_why(exc, cache_dir)}") from exc

    @classmethod
    def _start(
        cls, binaries: Binaries | None, cache_dir: Path | None, options: ServerOptions,
        schema_key: str | None = None, rebuild: bool = False,
    ) -> EmbeddedServer:
        root = _cache_root(cache_dir)
        original = binaries or find_binaries(
            version=options.version, unpack_dir=root, option=options.version_option,
            source=options.version_source)
        ident = _server_identity()
        runnable = runnable_by(original, ident.ids, _runtime_base())
        try:
            template = _cached_cluster(runnable, original, root, ident, options)
        except ServerError:
            # initdb from root's private copy of the binaries: a copy a tmp cleaner thinned
            # out fails every run alike. Made again once; a second failure is the real one.
            # A whole copy is not why (a bad locale, a full disk), and other runs share it.
            if runnable is original or copy_is_whole(original, runnable) \
                    or not discard_copy(runnable, _runtime_base()):
                raise
            runnable = runnable_by(original, ident.ids, _runtime_base())
            template = _cached_cluster(runnable, original, root, ident, options)
        schema_dir = None
        if schema_key is not None:
            schema_dir = root / f"schema-{template.name}-{digest(schema_key)}"
            if not rebuild and (schema_dir / "PG_VERSION").is_file():
                template = schema_dir
        runtime = _Runtime(ident, options.port)
        try:
            try:
                _copy_cluster(template, runtime.data, ident)
                with contextlib.suppress(OSError):
                    os.utime(template)  # recently used: pruned last (see _prune)
            except OSError:
                if template != schema_dir:
                    raise
                # pruned or replaced while we copied: build the schema again
                shutil.rmtree(runtime.data, ignore_errors=True)
                template = _cached_cluster(runnable, original, root, ident, options)
                _copy_cluster(template, runtime.data, ident)
            runtime.launch(runnable, options.postgres_settings(_PORT))
            for _ in range(2):  # the saved schema's cluster, then initdb's
                try:
                    runtime.wait_ready(DBNAME)
                    break
                except _ClusterDamaged:
                    # A cached cluster that does not start is damaged (a file lost or cut
                    # short on disk): it goes, and the next one down takes its place (the
                    # schema built again from initdb's; initdb run again).
                    runtime.stop_server()
                    shutil.rmtree(runtime.data, ignore_errors=True)
                    shutil.rmtree(template, ignore_errors=True)
                    template = _cached_cluster(runnable, original, root, ident, options)
                    _copy_cluster(template, runtime.data, ident)
                    runtime.launch(runnable, options.postgres_settings(_PORT))
            else:
                runtime.wait_ready(DBNAME)
        except BaseException:
            runtime.close()
            raise
        server = cls(runtime, runnable)
        server._settings = options.postgres_settings(_PORT)
        server.schema_dir, server.schema_cached = schema_dir, template == schema_dir
        return server

    def save_schema(self) -> None:
        """Keep this server's cluster for the next run with the same schema key.

        A clean shutdown (so the copy needs no crash recovery), a copy published
        atomically, a restart on the same directory: about the cost of one start.
        Close every connection first; the DSN stays the same.
        """
        if self.schema_dir is None:
            return
        runtime = self._runtime
        try:
            if runtime.stop_server(signal.SIGINT) != 0:
                raise ServerError(f"PostgreSQL did not shut down cleanly:\n{runtime.log_tail()}")
            (runtime.data / "postmaster.opts").unlink(missing_ok=True)
            _publish(runtime.data, self.schema_dir, replace=True)
            # The catalog digests kept beside it describe the cluster it replaces: a
            # rebuild from the same initdb cluster can reuse the very same transaction
            # ids, so the digests' fingerprint would not tell (catalog_watch.Watch.take).
            self.schema_dir.with_name(self.schema_dir.name + ".watch.json").unlink(
                missing_ok=True)
            _prune(self.schema_dir)
            runtime.launch(self.binaries, self._settings)
            runtime.wait_ready(DBNAME)
        except (OSError, subprocess.SubprocessError, psycopg.Error) as exc:
            raise ServerError(f"could not save the schema's cluster: {exc}") from exc
        self.pid = runtime.pid

    def stop(self) -> None:
        self._runtime.close()

    def restart(self) -> None:
        """Start the postmaster again after it died, in the same directory: the same
        socket, port and DSN. PostgreSQL recovers the data directory from its WAL.

        Raises `ServerError` if it does not come up.
        """
        self._runtime.relaunch()
        self.pid = self._runtime.pid

    def watch_group(self, pgid: int | None) -> None:
        """Have the watchdog stop process group `pgid` (a setup_command) too, should this
        process die before it ends; None when it has ended."""
        self._runtime.tell_group(pgid)

    def exited(self) -> str | None:
        """None while the postmaster runs; once it has died, its exit code and log tail."""
        proc = self._runtime.proc
        code = wait_exit(proc, 0) if proc is not None else None
        if code is None:
            return None
        how = f"exited (exit code {code})"
        if code < 0:  # Popen's way of saying "by a signal"
            with contextlib.suppress(ValueError):
                how = f"was killed by {signal.Signals(-code).name}"
        return (f"the embedded PostgreSQL {how}: its log "
                f"{self._runtime.log} says:\n{self._runtime.log_tail(12)}")

    def exits_within(self, seconds: float) -> bool:
        """Whether the postmaster has exited, or does within `seconds` (a smart shutdown
        by SIGTERM ends only once its last connection closed: sqlfix's own, often)."""
        proc = self._runtime.proc
        return proc is not None and wait_exit(proc, seconds) is not None

    def gone(self) -> bool:
        """Whether the postmaster has died or is dying: reaped, or (Linux) a SIGKILL already
        pending for it or its exit under way, then waited for. kill() returns before the
        process is gone, and a test that SIGKILLs it and returns at once is otherwise
        checked in that moment, while its backend still answers."""
        proc = self._runtime.proc
        if proc is None:
            return False
        if wait_exit(proc, 0) is not None:
            return True
        return _dying(proc.pid) and wait_exit(proc, 5) is not None

    def alive(self) -> bool:
        """Whether the postmaster still runs (False once stopped or dead)."""
        proc = self._runtime.proc
        return proc is not None and wait_exit(proc, 0) is None

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedServer(dsn={self.dsn!r}, pid={self.pid})"


class _ClusterDamaged(ServerError):
    """The server could not read its data directory: a cached cluster it was copied from
    is damaged, and is to be made again."""


class _Runtime:
    """A private directory for one postmaster (data/, socket, log), guarded by a watchdog."""

    def __init__(self, ident: _Identity, tcp_port: int | None = None) -> None:
        self.ident = ident
        self.tcp = tcp_port is not None
        self.port = tcp_port if tcp_port is not None else _PORT  # also names the socket file
        self._owner = os.getpid()  # a forked child must not tear down our server at its exit
        self.dir = _make_runtime_dir(ident)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where the last launch's lines begin in the log
        self._launched: tuple[Binaries, dict[str, str]] | None = None
        try:
            self._pipe: int | None
            self._pipe, self._watchdog = _spawn_watchdog(self.dir)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        atexit.register(self.close)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log(self) -> Path:
        return self.dir / "postgres.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def dsn(self, dbname: str) -> str:
        return make_conninfo(host=str(self.dir), port=self.port, user=SUPERUSER, dbname=dbname)

    def relaunch(self) -> None:
        """The postmaster again, as `launch` started it; after it died."""
        assert self._launched is not None
        self.stop_server()  # reaps the dead one
        for attempt in range(_RELAUNCH_TRIES):
            # Backends of the dead postmaster exit when they notice; until then the
            # new one refuses the data directory ("shared memory block is still in use").
            self.launch(*self._launched)
            try:
                self.wait_ready(DBNAME)
                return
            except ServerError:
                self.stop_server()
                if attempt == _RELAUNCH_TRIES - 1:
                    raise
                time.sleep(1.0)

    def launch(self, binaries: Binaries, settings: dict[str, str]) -> None:
        self._launched = (binaries, settings)
        args = [str(binaries.postgres), "-D", str(self.data), "-k", str(self.dir)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        # Appended to: after a crash, the log keeps the dead server's last lines (the
        # failure report copies it), and wait_ready judges only what came after.
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:  # opened by us, so early FATALs land in it too
            # A session of its own: a terminal Ctrl-C must not race our orderly stop.
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir, env=_child_env(), start_new_session=True, user=self.ident.uid,
                group=self.ident.gid, extra_groups=self.ident.extra_groups,
            )  # fmt: skip
        self._tell(f"{self.proc.pid}\n")

    def wait_ready(self, dbname: str) -> None:
        assert self.proc is not None
        socket, deadline = self.dir / f".s.PGSQL.{self.port}", time.monotonic() + _READY_TIMEOUT
        damaged, missing = False, f'database "{dbname}" does not exist'.encode()
        marks = (b"PANIC:", missing, b"could not find the database system",
                 b"is not a valid data directory", b"contains invalid data",
                 b"all server processes terminated; reinitializing")
        while (code := wait_exit(self.proc, 0)) is None and time.monotonic() < deadline:
            if socket.exists():
                refused = self._connect_error(dbname)
                if refused is None:
                    return
                # A damaged cluster (a catalog cut short, a database's directory gone)
                # fails every connection the same way while the postmaster stays up:
                # only its log tells, and waiting longer changes nothing.
                log = self._log_bytes()
                if damaged := any(mark in log for mark in marks):
                    break
                if b"ready to accept connections" in log and _client_side(refused):
                    raise ServerError(_client_refused(refused))  # the client, not the server
            time.sleep(_POLL_INTERVAL)
        if code is not None:  # it exited: was it for its data files?
            log = self._log_bytes()
            damaged = any(mark in log for mark in marks)
        what = ("cannot read its data files (damaged)" if damaged
                else f"exited with code {code}" if code is not None
                else "did not get ready in time")
        raise (_ClusterDamaged if damaged else ServerError)(
            f"PostgreSQL {what} while starting; end of its log {self.log} (that folder is "
            f"removed with the failed server; its last lines are here):\n{self.log_tail()}"
        )

    def _connect_error(self, dbname: str) -> str | None:
        """Why a connection to `dbname` failed, or None when it worked."""
        try:
            with psycopg.connect(self.dsn(dbname), connect_timeout=5):
                return None
        except psycopg.OperationalError as exc:  # e.g. "the database system is starting up"
            return str(exc).strip() or type(exc).__name__

    def _log_bytes(self) -> bytes:
        """What the server last launched wrote to the log."""
        try:
            return self.log.read_bytes()[self._log_start:]
        except OSError:
            return b""

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop_server(self, sig: int | None = None) -> int | None:
        """Signal the postmaster (default SIGQUIT: immediate; SIGINT: clean) and reap it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if wait_exit(proc, 0) is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGQUIT if sig is None else sig)
            if wait_exit(proc, 30) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                wait_exit(proc, None)
        return proc.returncode

    def close(self) -> None:
        """Stop the server, delete the directory, dismiss the watchdog; safe to repeat."""
        atexit.unregister(self.close)
        if os.getpid() != self._owner:
            return
        self.stop_server()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._pipe is not None:
            self._tell("done\n")
            os.close(self._pipe)
            self._pipe = None
            if wait_exit(self._watchdog, 10) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._watchdog.pid, signal.SIGKILL)
                wait_exit(self._watchdog, None)

    def tell_group(self, pgid: int | None) -> None:
        self._tell(f"group {pgid}\n" if pgid is not None else "group\n")

    def _tell(self, message: str) -> None:
        if self._pipe is not None:
            with contextlib.suppress(OSError):  # a dead watchdog must not break us
                os.write(self._pipe, message.encode())


_PF_EXITING = 0x4  # the kernel's flag of a process on its way out (/proc/PID/stat, field 9)
_SIGKILL_BIT = 1 << (signal.SIGKILL - 1)


def _dying(pid: int) -> bool:
    """Whether `pid` is about to be gone: a SIGKILL pending (SigPnd/ShdPnd of
    /proc/PID/status) or its exit begun (PF_EXITING, or already a zombie). False where
    /proc cannot tell (macOS): waitpid alone decides there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        if fields[0] in (b"Z", b"X") or int(fields[6]) & _PF_EXITING:
            return True
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & _SIGKILL_BIT:
                return True
    except (OSError, ValueError, IndexError):
        return False
    return False


def wait_exit(proc: subprocess.Popen[bytes], seconds: float | None) -> int | None:
    """`proc`'s exit code (negative: the signal that ended it) once it has exited, waiting
    up to `seconds` (0: only look; None: without limit); None while it still runs.

    By os.waitpid, never Popen.poll()/wait(): a KeyboardInterrupt (Ctrl-C, or `server`'s
    SIGTERM) raised inside Popen.poll() can leave Popen's private lock taken, after which
    Popen.wait() blocks forever, and sqlfix's clean-up with it (seen in CI on CPython
    3.11; tests/database/test_server_reap.py holds the lock as the interrupt leaves it).
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    delay = 0.0005
    while proc.returncode is None:
        try:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already (by Popen itself): it has exited
            return proc.returncode if proc.returncode is not None else 0
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return proc.returncode


def _spawn_watchdog(runtime_dir: Path) -> tuple[int, subprocess.Popen[bytes]]:
    # Only we hold the write end (os.pipe fds are not inherited), so the watchdog reads EOF
    # exactly when this process is gone.
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(runtime_dir)],
            stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return write_end, proc


def _server_identity() -> _Identity:
    """initdb and postgres refuse to run as root: use `postgres`, else `nobody`."""
    if os.geteuid() != 0:
        return _Identity()
    import pwd  # POSIX only; imported here so that importing this module never fails

    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return _Identity(entry.pw_uid, entry.pw_gid)
    raise ServerError(
        "running as root, and there is neither a `postgres` nor a `nobody` user to run "
        "PostgreSQL as (it refuses to run as root); run as a normal user, or set SQLFIX_DSN"
    )


def _child_env() -> dict[str, str]:
    # The C locale always exists; PG* variables (PGDATA, PGPORT, ...) must not steer the server.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_", "LANG"))}
    env["LC_ALL"] = "C"
    return env


def _run_as(ident: _Identity, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, check=False, cwd=cwd,
        env=_child_env(), user=ident.uid, group=ident.gid, extra_groups=ident.extra_groups,
    )  # fmt: skip


def _runtime_base() -> Path:
    """/dev/shm when usable (copy and start are ~5x faster there), else the temp dir, else
    /tmp: the first the server's user can reach (see `_reachable`)."""
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        usage = shutil.disk_usage(shm)
        if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) and usage.free > _MIN_SHM_FREE:
            return shm
    temp = Path(tempfile.gettempdir())
    with contextlib.suppress(ServerError):  # no user to run as: start() says so itself
        if temp != Path("/tmp") and not _reachable(temp, _server_identity()):
            return Path("/tmp")
    return temp


def _make_runtime_dir(ident: _Identity) -> Path:
    # "sqlfix-XXXXXXXX/.s.PGSQL.5432" is 30 bytes: keep the base short for sun_path.
    bases = [_runtime_base(), Path(tempfile.gettempdir()), Path("/tmp")]
    usable = [b for b in bases if len(os.fsencode(b)) + 30 <= _MAX_SOCKET_PATH
              and _reachable(b, ident)]
    if not usable:
        raise ServerError(f"no temp dir short enough for a unix socket path and open to the "
                          f"server's user; tried {bases}")
    path = Path(tempfile.mkdtemp(prefix="sqlfix-", dir=usable[0]))
    ident.chown(path)  # mkdtemp makes it 0700 for us; the server must create files in it
    return path


def _reachable(folder: Path, ident: _Identity) -> bool:
    """Whether the server's user may pass through every folder down to `folder`: as root,
    a TMPDIR inside a 0700 folder (a venv's, a test's) is not, and initdb would fail
    with "Permission denied". By mode bits (ACLs aside); the user has no other groups."""
    if ident.uid is None:
        return True
    try:
        for part in (folder, *folder.parents):
            st = part.stat()
            bit = (stat.S_IXUSR if st.st_uid == ident.uid
                   else stat.S_IXGRP if st.st_gid == ident.gid else stat.S_IXOTH)
            if not st.st_mode & bit:
                return False
    except OSError:
        return False
    return True


def _cache_place(cache_dir: Path | None) -> tuple[Path, str]:
    """The cache directory and where that came from (for messages)."""
    if cache_dir is not None:
        return Path(cache_dir), "the cache_dir given"
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser(), f"${ENV_CACHE_DIR}"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "sqlfix", ("$XDG_CACHE_HOME" if os.path.isabs(xdg)
                             else "the default, ~/.cache/sqlfix")


_MAX_SHOWN = 2000  # characters of an error's text: a copy's error may list 1,000 files


def connect_timeout_hint(problem: str) -> str:
    """`problem`, naming PGCONNECT_TIMEOUT when psycopg could not read the connect_timeout
    it took from there (psycopg's message names only the parameter)."""
    timeout = os.environ.get("PGCONNECT_TIMEOUT")
    if "bad value for connect_timeout" not in problem or timeout is None:
        return problem
    return (f"{problem} (PGCONNECT_TIMEOUT={timeout!r} in the environment: a whole number "
            "of seconds; fix or unset it)")


def _why(exc: BaseException, cache_dir: Path | None) -> str:
    """`exc` in words: a full disk or a folder sqlfix may not write named, with what to
    do (shutil and cp list every file that failed: hundreds of lines of the same)."""
    text = connect_timeout_hint(str(exc))
    code = getattr(exc, "errno", None)
    root, source = _cache_place(cache_dir)
    runtime = _runtime_base()
    folder = (f"the folder the server runs in, {runtime} (/dev/shm when it has 256 MB free, "
              "else the temporary directory, TMPDIR)")
    cache = f"sqlfix's cache directory {root} (from {source})"
    if code == errno.ENOSPC or "No space left on device" in text:
        # The text names the copy's source and target alike: the place left without
        # room (partial copies are removed by now) is the one that filled up.
        short = [what for what, path in ((cache, root), (folder, runtime)) if _short_of_space(path)]
        if len(short) == 1 and short[0] == cache:
            return (f"no space left on the device of {cache}: free space there, or point "
                    f"{ENV_CACHE_DIR} at a directory with room (about 40 MB per PostgreSQL "
                    "version and saved schema)")
        if len(short) == 1:
            return (f"no space left on the device of {folder}: free space there, or set "
                    "TMPDIR to a folder with room (about 40 MB a server)")
        return (f"no space left on a device sqlfix writes to: {cache} or {folder}; free "
                f"space, or move them ({ENV_CACHE_DIR}, TMPDIR). The error: "
                f"{text[:_MAX_SHOWN]}")
    # ENOTDIR: a file where the path needs a folder (SQLFIX_CACHE_DIR=some_file/sub)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR) and str(root) in str(
            getattr(exc, "filename", "") or ""):
        return (f"cannot write in {cache}: {getattr(exc, 'strerror', text)}; point "
                f"{ENV_CACHE_DIR} at a directory sqlfix may create and write")
    return text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}... ({len(text)} characters)"


_ROOM = 64 * 1024 * 1024  # a cluster is 35-40 MB: less free than this cannot hold a copy


def _short_of_space(path: Path) -> bool:
    """Whether the file system `path` is on (or would be, once made) has no room left."""
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free < _ROOM
            except OSError:
                return False
    return False


def _cache_root(cache_dir: Path | None) -> Path:
    """The cache directory; ServerError naming where it came from if it is not one."""
    root, source = _cache_place(cache_dir)
    if root.exists() and not root.is_dir():
        raise ServerError(
            f"sqlfix's cache directory {str(root)!r} (from {source}) exists but is not a "
            f"directory: point {ENV_CACHE_DIR} at a directory sqlfix may create and write")
    return root


def _cached_cluster(
    runnable: Binaries, original: Binaries, root: Path, ident: _Identity, options: ServerOptions
) -> Path:
    """The initdb'ed cluster with `sqlfix_test` in it, built on first use."""
    locale = options.locale
    shown = re.sub(r"[^A-Za-z0-9_.@-]", "_", locale)
    key = (f"cluster-{_CLUSTER_FORMAT}-pg{original.version}-{shown}-"
           f"{digest(str(original.bindir) + chr(0) + locale)}")  # fmt: skip
    final = root / key
    if (final / "PG_VERSION").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    import fcntl  # POSIX only; imported here so that importing this module never fails

    # The lock only saves xdist workers from each running initdb; the rename is what is safe.
    with open(root / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not (final / "PG_VERSION").is_file():
            _build_cluster(runnable, ident, final, options)
    return final


def _build_cluster(binaries: Binaries, ident: _Identity, final: Path, options: ServerOptions
                   ) -> None:
    locale = options.locale
    runtime = _Runtime(ident)  # built where the server user can write, then copied as us
    try:
        result = _run_as(ident, [
            str(binaries.initdb), "-D", str(runtime.data), "-A", "trust", "-U", SUPERUSER,
            "-E", "UTF8", f"--locale={locale}", "--no-sync",
            "--wal-segsize=1",  # 1 MB WAL: less to copy
        ], cwd=runtime.dir)  # fmt: skip
        if result.returncode != 0:
            raise ServerError(f"initdb failed:\n{result.stdout}{result.stderr}"
                              + _locale_hint(options, result.stderr))  # fmt: skip
        runtime.launch(binaries, ServerOptions().postgres_settings(_PORT))
        runtime.wait_ready("postgres")
        with psycopg.connect(runtime.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DBNAME}")
        # A clean shutdown, so that every copy starts without crash recovery.
        if runtime.stop_server(signal.SIGINT) != 0:
            raise ServerError(f"PostgreSQL did not shut down cleanly:\n{runtime.log_tail()}")
        (runtime.data / "postmaster.opts").unlink(missing_ok=True)
        _publish(runtime.data, final)
    finally:
        runtime.close()


def _locale_hint(options: ServerOptions, stderr: str) -> str:
    if "locale" not in stderr.lower():
        return ""
    source = f" (from {options.locale_source})" if options.locale_source else ""
    return (f"\n{options.locale_option} = {options.locale!r}{source}: the machine has no such "
            "locale; pick one that `locale -a` lists (e.g. \"C.UTF-8\"), or remove the key")


def _copy_cluster(template: Path, data: Path, ident: _Identity) -> None:
    """Copy a cached cluster to `data`, owned by the server's user; raises OSError.

    With `cp -a` and `chown -R` where they exist: ~1,300 files, 0.16 s and 0.03 s
    against 0.24 s and 0.10 s through shutil and os.chown file by file (2 cores).
    """
    cp, chown = shutil.which("cp"), shutil.which("chown")
    if cp is None or (ident.ids is not None and chown is None):
        shutil.copytree(template, data, symlinks=True)
        ident.chown_tree(data)
        return
    _run([cp, "-a", "--", str(template), str(data)])
    if ident.ids is not None and chown is not None:
        _run([chown, "-R", "-h", f"{ident.ids[0]}:{ident.ids[1]}", "--", str(data)])


def _run(command: list[str]) -> None:
    """Run a file-copying command; its failure as the OSError shutil would raise."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"`{' '.join(command)}` failed: {done.stderr.strip()}")


def _publish(source: Path, final: Path, replace: bool = False) -> None:
    """Copy `source` to `final` atomically: the first of racing processes wins.

    With `replace`, an existing `final` is moved aside first (a rebuild).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    old = final.parent / f".{final.name}-old-{os.getpid()}"
    try:
        shutil.copytree(source, staging, symlinks=True, dirs_exist_ok=True)
        if replace and final.exists():
            with contextlib.suppress(OSError):
                os.rename(final, old)
        os.rename(staging, final)  # fails if another process published first: fine
    except OSError:
        if not (final / "PG_VERSION").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


_KEEP_SCHEMAS = 4  # saved schema clusters per installation: ~40 MB each


def _prune(kept: Path) -> None:
    """Remove all but the newest few schema clusters of the same installation."""
    prefix = kept.name.rsplit("-", 1)[0] + "-"
    others = [p for p in kept.parent.glob(prefix + "*") if p.is_dir() and p != kept]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in others[_KEEP_SCHEMAS - 1:]:
        shutil.rmtree(stale, ignore_errors=True)
        # the catalog digests kept beside it (see catalog_watch.Watch.take)
        stale.with_name(stale.name + ".watch.json").unlink(missing_ok=True)
