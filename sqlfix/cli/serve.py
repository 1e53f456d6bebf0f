"""`python -m sqlfix server`: the embedded server the tests would get, started by hand.

Same binaries, options, schema and `setup_command` as a test session; it prints the
connection strings and stays up until Ctrl-C (or SIGTERM), then removes everything.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import sys
import time
from types import FrameType
from typing import TextIO

from sqlfix.cli import EXIT_INTERRUPTED
from sqlfix.config import Settings
from sqlfix.database.session import DatabaseSession
from sqlfix.errors import ServerError

_POLL_SECONDS = 0.1


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Later signals while we stop: `timeout`, docker and systemd signal the whole process
    group, often twice. A Python function, not SIG_IGN: a signal already pending when the
    handler becomes SIG_IGN raises "OSError: Signal 15 ignored due to race condition"."""


class _Stop:
    """The handler of the first Ctrl-C or SIGTERM; no later one cuts the clean-up short.

    While the server starts it raises KeyboardInterrupt, to cut initdb or a setup_command
    short. Once it serves it only sets `requested`, which the wait loop reads: an exception
    raised at an arbitrary point of that loop (inside Popen.poll(), say) can leave a lock
    taken that the clean-up then waits for.
    """

    def __init__(self) -> None:
        self.serving = False
        self.requested = False
        self.signum = int(signal.SIGINT)  # the first stop signal's number

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, _ignore)
        self.requested, self.signum = True, signum
        if not self.serving:
            raise KeyboardInterrupt


def serve(settings: Settings, out: TextIO) -> int:
    """Start, print how to connect, wait for Ctrl-C; raises `SqlfixError` if it cannot start.

    For the `server` command only: after Ctrl-C or SIGTERM it leaves both signals blocked
    for the rest of the process (see below)."""
    if settings.dsn:
        out.write(f"note: ignoring the DSN from {settings.source('dsn')}: "
                  "`server` always starts the embedded PostgreSQL\n")  # fmt: skip
    session = DatabaseSession(dataclasses.replace(settings, dsn=None))
    stop = _Stop()
    # A signal the shell had us ignore (`nohup`, a script's `&` job for SIGINT) stays so.
    previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        session.start()
        stop.serving = True  # before the DSN is printed: a stop after that is a clean one
        server = session.server
        assert server is not None
        _describe(settings, server.binaries.version, server.dsn, server.tcp_dsn, out)
        out.write(f"log:  {server.log}\nPress Ctrl-C to stop; the server and its data are "
                  "then removed.\n")  # fmt: skip
        out.flush()
        while not stop.requested and server.alive():
            time.sleep(_POLL_SECONDS)  # resumed after the handler: a stop waits <= this
        if not stop.requested:
            # The log goes with the server's folder: its last lines are in the message.
            raise ServerError(
                f"PostgreSQL stopped by itself (not by sqlfix); {server.exited()}")
        _say(out, "stopped\n")
        return 0
    except KeyboardInterrupt:  # only while it starts (see _Stop)
        name = signal.Signals(stop.signum).name
        sys.stderr.write(f"sqlfix server: interrupted ({name}) before the server was ready; "
                         "nothing was left behind\n")
        # As a shell reports a process ended by that signal: 130 for Ctrl-C, 143 for
        # SIGTERM (also what a SIGTERM before the handlers are in place gives).
        return EXIT_INTERRUPTED - signal.SIGINT + stop.signum
    finally:
        session.stop()
        if stop.requested:
            # A stop signal came: the process is on its way out, and Python puts the
            # default handlers back as it finalizes, when a late signal would still end
            # it (exit 143 for a clean stop). Blocked, they are never delivered.
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        else:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _say(out: TextIO, text: str) -> None:
    """`text`, unless the reader is gone (`sqlfix server | head -3`, then Ctrl-C)."""
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())  # no 2nd error at exit


def _describe(
    settings: Settings, version: str, dsn: str, tcp_dsn: str | None, out: TextIO
) -> None:
    schema = ", ".join(str(p) for p in settings.schema) or "none"
    setup = " and setup_command" if settings.setup_command else ""
    out.write(f"sqlfix: embedded PostgreSQL {version} ready; schema: {schema}{setup}\n")
    out.write(f"dsn:  {dsn}\n")
    if tcp_dsn is not None:
        out.write(f"tcp:  {tcp_dsn}\n")
    # Quoted for a shell: a socket folder may hold a space or a quote (TMPDIR's)
    out.write(f"psql: psql {shlex.quote(tcp_dsn or dsn)}\n")
