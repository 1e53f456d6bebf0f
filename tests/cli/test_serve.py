"""`python -m sqlfix server`: started by hand, prints its DSN, stays up until Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from helpers import EXAMPLE_FIXTURES, REPO, setup_command_that_waits, sqlfix_command, wait_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(project: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_") or k == "SQLFIX_PG_BINDIR"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqlfix", "server"], cwd=project, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    shown: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Press Ctrl-C"):
            return proc, shown
        key, _, value = line.partition(":")
        shown[key] = value.strip()
    proc.wait()
    raise AssertionError(f"no DSN printed; stderr: {proc.stderr.read() if proc.stderr else ''}")


def test_server_prints_dsns_serves_the_tests_schema_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE_FIXTURES, tmp_path / "fixtures_sql")
    port = _free_port()
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
        f'server_port = {port}\nserver_settings = {{ work_mem = "9MB" }}\n'
    )
    proc, shown = _start(tmp_path)
    try:
        assert re.match(r"embedded PostgreSQL \d+", shown["sqlfix"])
        for dsn in (shown["dsn"], shown["tcp"]):
            with psycopg.connect(dsn) as conn:
                assert conn.execute("SELECT to_regclass('orders') IS NOT NULL, current_user").fetchone() == (True, "postgres")
                assert conn.execute("SHOW work_mem").fetchone() == ("9MB",)
        assert f"port={port}" in shown["tcp"] and "host=127.0.0.1" in shown["tcp"]
        runtime = Path(re.search(r"host=(\S+)", shown["dsn"]).group(1))  # type: ignore[union-attr]
        assert runtime.is_dir() and Path(shown["log"]).is_file()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped" in out and "Traceback" not in err
        assert not runtime.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT])
def test_signals_during_the_clean_up_do_not_cut_it_short(tmp_path: Path, first: int) -> None:
    # `timeout`, docker stop and systemd signal the whole process group, often more than
    # once: every signal after the first lands while the server is being stopped.
    (tmp_path / "fixtures_sql").mkdir()
    proc, shown = _start(tmp_path)
    try:
        runtime = Path(re.search(r"host=(\S+)", shown["dsn"]).group(1))  # type: ignore[union-attr]
        os.killpg(proc.pid, first)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            time.sleep(0.001)
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err and "race condition" not in err, err
        # A clean stop is exit 0, also when the last signals land while Python exits
        assert proc.returncode == 0, (proc.returncode, err)
        assert "stopped" in out
        assert not runtime.exists()
        _wait_gone(runtime)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _loaded(pid: int, library: str) -> bool:
    """Whether process `pid` has mapped a shared library whose path contains `library`."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
@pytest.mark.parametrize("moment", ["importing", "starting"])
def test_ctrl_c_while_it_starts_is_no_traceback(tmp_path: Path, moment: str) -> None:
    # While Python imports sqlfix (pglast's parser is mapped: past Python's own start-up,
    # where a Ctrl-C is Python's "Fatal Python error", not sqlfix's), or while the server
    # starts (initdb, postgres: children of the command).
    (tmp_path / "fixtures_sql").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_") or k == "SQLFIX_PG_BINDIR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqlfix", "server"], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO),
                                                                      "SQLFIX_CACHE_DIR": str(tmp_path / "cache")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                      text=True).stdout.split()
            if (moment == "importing" and _loaded(proc.pid, "pglast")) or (
                    moment == "starting" and len(children) > 1):  # the watchdog, and one more
                break
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err, err
    if "Press Ctrl-C" in out:  # it was up already: a clean stop
        assert (proc.returncode, "stopped" in out) == (0, True), (out, err)
    else:  # interrupted before the server was up: never "stopped" and 0
        # 130, or Python's own exit by SIGINT after the one-line message (a Ctrl-C that
        # lands inside an import): a shell reports both as 130
        assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, out, err)
        assert "interrupted" in err and "stopped" not in out
    runtime = re.search(r"host=(\S+)", out)
    if runtime:
        assert not Path(runtime.group(1)).exists()


def test_interrupted_before_it_is_ready_is_no_success(tmp_path: Path) -> None:
    # `sqlfix server && next-step`: a server that never came up must not exit 0.
    (tmp_path / "fixtures_sql").mkdir()
    reached = setup_command_that_waits(tmp_path)
    with sqlfix_command(tmp_path, "server") as proc:
        wait_for(reached, proc)
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out, err)  # 128 + SIGTERM, as a shell reports it
    assert ("sqlfix server: interrupted (SIGTERM) before the server was ready; nothing was "
            "left behind") in err
    assert "stopped" not in out and "Traceback" not in err


def test_a_sigint_the_shell_had_it_ignore_stays_ignored(tmp_path: Path) -> None:
    # `nohup`, or a script's `&` job: SIGINT is ignored when it starts, and stays so.
    (tmp_path / "fixtures_sql").mkdir()
    ignored = {"preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    with sqlfix_command(tmp_path, "server", **ignored) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Press Ctrl-C"):
                break
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None  # still serving
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out.strip()) == (0, "stopped"), err


def test_a_server_that_dies_is_reported_with_its_logs_last_lines(tmp_path: Path) -> None:
    # The log goes with the server's folder: the message carries its end, not its path.
    (tmp_path / "fixtures_sql").mkdir()
    proc, shown = _start(tmp_path)
    try:
        postmaster = subprocess.run(["pgrep", "-P", str(proc.pid), "postgres"],
                                    capture_output=True, text=True).stdout.split()
        assert len(postmaster) == 1
        os.kill(int(postmaster[0]), signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, err
    assert ("sqlfix server: PostgreSQL stopped by itself (not by sqlfix); the embedded "
            "PostgreSQL was killed by SIGKILL") in err, err
    assert "database system is ready to accept connections" in err  # the log's last lines
    assert not Path(shown["log"]).exists() and "Traceback" not in err


def _wait_gone(runtime: Path) -> None:
    """No postmaster left running on the removed directory."""
    for _ in range(100):
        found = subprocess.run(["pgrep", "-f", f"-k {runtime}"], capture_output=True, text=True)
        if found.returncode != 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"a postmaster still runs for {runtime}: pids {found.stdout.split()}")


def test_server_with_a_bad_setting_exits_2_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.sqlfix]\nserver_settings = { port = 5 }\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_")}
    result = subprocess.run(
        [sys.executable, "-m", "sqlfix", "server"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env={**env, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 2
    assert "server_settings.port: port is set by sqlfix (use server_port" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("command", "setting", "words"), [
    ("check", "default_transaction_read_only = true", "cannot execute"),
    ("server", "DateStyle = 'SQL, DMY'", "DateStyle"),
    ("check", 'search_path = "nope"', "schema failed: 3F000 no schema has been selected"),
])
def test_a_setting_the_server_takes_but_sqlfix_cannot_work_with_is_named(
        tmp_path: Path, command: str, setting: str, words: str) -> None:
    # The server starts; preparing the test database then fails. Not "internal error":
    # the error says which server_settings the server ran with, and from where.
    shutil.copytree(EXAMPLE_FIXTURES, tmp_path / "fixtures_sql")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n'
        f"[tool.sqlfix.server_settings]\n{setting}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_") or k == "SQLFIX_PG_BINDIR"}
    result = subprocess.run(
        [sys.executable, "-m", "sqlfix", command], cwd=tmp_path, capture_output=True, text=True,
        timeout=180, env={**env, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert words in result.stderr
    assert f"(from {tmp_path / 'pyproject.toml'}): if one of them is why" in result.stderr


@pytest.mark.parametrize(("variable", "value", "words"), [
    # libpq reads PGDATESTYLE unseen; psycopg then cannot read a timestamp
    ("PGDATESTYLE", "SQL, DMY", "PGDATESTYLE='SQL, DMY' in the environment sets it; unset it, "
                                "or make it ISO"),
    ("PGCONNECT_TIMEOUT", "abc", "bad value for connect_timeout: 'abc' (PGCONNECT_TIMEOUT='abc' "
                                 "in the environment: a whole number of seconds; fix or unset it)"),
])
@pytest.mark.parametrize("cold", [False, True], ids=["cached", "cold-cache"])
def test_a_pg_variable_psycopg_cannot_work_with_is_named(
        tmp_path: Path, variable: str, value: str, words: str, cold: bool) -> None:
    # cold: the server's cluster is built first (initdb, then sqlfix's own connection)
    cache = {"SQLFIX_CACHE_DIR": str(tmp_path / "cache")} if cold else {}
    shutil.copytree(EXAMPLE_FIXTURES, tmp_path / "fixtures_sql")
    (tmp_path / "pyproject.toml").write_text('[tool.sqlfix]\nschema = ["fixtures_sql/schema.sql"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_") or k == "SQLFIX_PG_BINDIR"}
    result = subprocess.run(
        [sys.executable, "-m", "sqlfix", "check"], cwd=tmp_path, capture_output=True, text=True,
        timeout=180, env={**env, "PYTHONPATH": str(REPO), variable: value, **cache},
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert words in result.stderr, result.stderr


def test_a_server_port_another_program_listens_on_is_named(tmp_path: Path) -> None:
    (tmp_path / "fixtures_sql").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "pyproject.toml").write_text(f"[tool.sqlfix]\nserver_port = {port}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SQLFIX_") or k == "SQLFIX_PG_BINDIR"}
        result = subprocess.run(
            [sys.executable, "-m", "sqlfix", "server"], cwd=tmp_path, capture_output=True,
            text=True, timeout=180, env={**env, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert (f"server_port = {port} (from {tmp_path / 'pyproject.toml'}): another program "
            "listens on that port") in result.stderr


def test_a_stop_signal_while_serving_raises_nothing_into_the_wait_loop() -> None:
    # An exception raised at an arbitrary point of the loop (inside Popen.poll()) can leave
    # Popen's lock taken, and the clean-up then hung (tests/database/test_server_reap.py).
    from sqlfix.cli.serve import _ignore, _Stop

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        starting = _Stop()
        with pytest.raises(KeyboardInterrupt):  # initdb or a setup_command is cut short
            starting(signal.SIGINT, None)
        serving = _Stop()
        serving.serving = True
        serving(signal.SIGTERM, None)  # no exception: the loop reads `requested`
        assert serving.requested
        assert signal.getsignal(signal.SIGINT) is _ignore is signal.getsignal(signal.SIGTERM)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _migration_that_waits(project: Path) -> Path:
    """A setup_command run by a shell whose child (the "migration") writes its pid, then
    sleeps a minute: stopping only the shell would leave the child running."""
    pid_file = project / "migration.pid"
    (project / "pyproject.toml").write_text(
        "[tool.sqlfix]\nsetup_command = \"python -c 'import os, pathlib, time; "
        f"pathlib.Path(r\\\"{pid_file}\\\").write_text(str(os.getpid())); time.sleep(60)'; "
        "echo migrated\"\n")
    return pid_file


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _pid_written(pid_file: Path, proc: subprocess.Popen[str]) -> int:
    """The pid the setup_command writes to `pid_file` (written, not only created)."""
    wait_for(pid_file, proc)
    for _ in range(100):
        if pid_file.read_text().strip():
            break
        time.sleep(0.05)
    return int(pid_file.read_text())


def _assert_stopped(pid: int) -> None:
    """The setup_command's process `pid` ends within 15 s (killed here if not)."""
    try:
        assert _gone_within(pid, 15), "the setup_command's child was left running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_stop_during_the_setup_command_stops_all_of_it(tmp_path: Path, how: int) -> None:
    # SIGTERM: sqlfix stops the command's whole process group itself. SIGKILL: sqlfix
    # cannot, and the server's watchdog does it.
    (tmp_path / "fixtures_sql").mkdir()
    pid_file = _migration_that_waits(tmp_path)
    with sqlfix_command(tmp_path, "server") as proc:
        migration = _pid_written(pid_file, proc)
        os.kill(proc.pid, how)
        out, err = proc.communicate(timeout=60)
    _assert_stopped(migration)
    if how == signal.SIGTERM:
        assert proc.returncode == 143, (out, err)
        assert "interrupted (SIGTERM) before the server was ready" in err
        assert "Traceback" not in err


def test_a_setup_command_that_leaves_a_process_in_the_background_does_not_hold_the_start(
        tmp_path: Path) -> None:
    # `some-daemon &`: the child keeps the command's output open after it exited; sqlfix
    # waited for that output to end, without a word. It waits for the command now.
    (tmp_path / "fixtures_sql").mkdir()
    pid_file = tmp_path / "daemon.pid"
    (tmp_path / "pyproject.toml").write_text(
        f"[tool.sqlfix]\nsetup_command = \"sleep 60 & echo $! > '{pid_file}'; echo migrated\"\n")
    try:
        proc, shown = _start(tmp_path)  # returns once "Press Ctrl-C" is printed
        try:
            assert "dsn" in shown
            os.kill(proc.pid, signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    finally:
        if pid_file.exists() and pid_file.read_text().strip():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_setup_command_reads_no_terminal(tmp_path: Path) -> None:
    # Its output goes to sqlfix, so a prompt would never be seen: stdin is /dev/null.
    (tmp_path / "fixtures_sql").mkdir()
    got = tmp_path / "got"
    (tmp_path / "pyproject.toml").write_text(
        f"[tool.sqlfix]\nsetup_command = \"read -r x; echo \\\"[$x]\\\" > '{got}'\"\n")
    with sqlfix_command(tmp_path, "server", stdin=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # stdin stays open, and is never read
            if line.startswith("Press Ctrl-C"):
                break
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert got.read_text() == "[]\n", (out, err)


def test_a_second_ctrl_c_while_the_setup_command_is_stopped_still_stops_all_of_it(
        tmp_path: Path) -> None:
    # The command ignores SIGTERM: sqlfix waits 5 s before SIGKILL, and a second Ctrl-C
    # during that wait skipped the SIGKILL, leaving the command behind.
    (tmp_path / "fixtures_sql").mkdir()
    pid_file = tmp_path / "child.pid"
    (tmp_path / "schema.sql").write_text("CREATE TABLE t (i int);\n")
    (tmp_path / "fixtures_sql" / "t.sql").write_text("INSERT INTO t VALUES (1);\n")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.sqlfix]\nschema = ['schema.sql']\nsetup_command = \"trap '' TERM; sleep 60 & "
        f"echo $! > '{pid_file}'; wait\"\n")
    with sqlfix_command(tmp_path, "check") as proc:
        child = _pid_written(pid_file, proc)
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(1.0)  # inside the 5 s SIGTERM grace
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    _assert_stopped(child)
    assert "Traceback" not in err, err


@pytest.mark.parametrize("folder", ["/dev/shm/sqlfix-ab12", "/tmp/sp ace/sqlfix-ab12",
                                    "/tmp/it's/sqlfix-ab12"])
def test_the_psql_line_is_one_shell_word_whatever_the_socket_folder(folder):
    # pasted into a shell, `psql 'host='/tmp/sp ace/...' ...'` connected to /tmp/sp
    import io
    import shlex

    from psycopg.conninfo import make_conninfo

    from sqlfix.cli.serve import _describe
    from sqlfix.config import load_settings

    dsn = make_conninfo(host=folder, port=5432, user="postgres", dbname="sqlfix_test")
    out = io.StringIO()
    _describe(load_settings(Path("/nonexistent")), "15.18", dsn, None, out)
    line = next(x for x in out.getvalue().splitlines() if x.startswith("psql: "))
    assert shlex.split(line[len("psql: "):]) == ["psql", dsn]
