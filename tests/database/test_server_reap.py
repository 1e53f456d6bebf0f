"""The embedded server stops though a Ctrl-C left a Popen's private lock taken.

A KeyboardInterrupt raised inside `Popen.poll()` (Ctrl-C in a pytest run, `server`'s
SIGTERM) can land between the lock's acquire() and its try/finally. The lock then stays
taken: poll() says "running" forever and Popen.wait() blocks forever. `sqlfix server` hung
so in CI after printing "stopped" (SIGTERM while its loop polled the postmaster). sqlfix
reaps its processes with os.waitpid (`server.wait_exit`); these tests take the lock as the
interrupt leaves it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import psycopg

from sqlfix.database.server import EmbeddedServer, wait_exit


def _taken(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """`proc` with its private lock held, as an interrupted poll() leaves it."""
    lock = proc._waitpid_lock  # type: ignore[attr-defined]
    assert lock.acquire(blocking=False)
    return proc


def test_wait_exit_reads_the_exit_code_while_popens_lock_is_taken() -> None:
    exited = _taken(subprocess.Popen(["sh", "-c", "exit 3"]))
    assert wait_exit(exited, 30) == 3
    assert exited.returncode == 3 and exited.poll() == 3  # Popen sees it too

    running = _taken(subprocess.Popen(["sleep", "60"]))
    try:
        assert wait_exit(running, 0) is None
        assert wait_exit(running, 0.2) is None  # bounded: it still runs
        os.kill(running.pid, signal.SIGTERM)
        assert wait_exit(running, 30) == -signal.SIGTERM  # Popen's sign for a signal
    finally:
        if running.returncode is None:
            running.kill()
            wait_exit(running, None)


def test_wait_exit_of_a_process_popen_reaped_already() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert wait_exit(proc, 0) == 0


def test_a_server_stops_though_an_interrupt_left_popens_locks_taken(tmp_path: Path) -> None:
    server = EmbeddedServer.start(cache_dir=tmp_path / "cache")
    runtime = server._runtime
    assert runtime.proc is not None
    postmaster, folder = runtime.proc.pid, runtime.dir
    _taken(runtime.proc)
    _taken(runtime._watchdog)
    assert server.alive() and server.exited() is None  # the taken lock misleads no check
    _stop(server)
    assert not folder.exists()
    try:
        os.kill(postmaster, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"the postmaster {postmaster} still runs")


def test_a_dead_server_is_seen_dead_though_its_popens_lock_is_taken(tmp_path: Path) -> None:
    server = EmbeddedServer.start(cache_dir=tmp_path / "cache")
    try:
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        proc = server._runtime.proc
        assert proc is not None and server.alive()
        _taken(proc)
        os.kill(proc.pid, signal.SIGKILL)
        assert server.exits_within(30)
        assert not server.alive()
        assert "was killed by SIGKILL" in (server.exited() or "")
    finally:
        _stop(server)


def _stop(server: EmbeddedServer) -> None:
    """server.stop(), failing the test instead of hanging it (Popen.wait() would block
    forever on the taken lock: SIGQUIT, 30 s, then the hang)."""
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    stopper.join(60)
    assert not stopper.is_alive(), "stop() hung on the taken lock"
