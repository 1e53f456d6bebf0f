"""sqlfix's connections to a DSN wait a bounded time for the server (schema.with_connect_timeout):
libpq's own default waits for the OS's TCP timeout, ~2 minutes a connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import blackhole
from psycopg.conninfo import conninfo_to_dict

from sqlfix.cli.main import main
from sqlfix.database import run_lock, schema, workers
from sqlfix.database.schema import CONNECT_TIMEOUT, no_answer, with_connect_timeout

# A hang is what these tests are about: a call still running after this fails the test.
ENDED_WITHIN = 60.0


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGCONNECT_TIMEOUT", "SQLFIX_DSN", "PGHOST", "PGPORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("dsn", [
    "host=db.example port=6543 dbname=app_test user=me password=pw",
    "postgresql://me:pw@db.example:6543/app_test",
    "postgresql://me@db.example/app_test?sslmode=prefer",
    "",
])
def test_a_connect_timeout_is_added_when_the_dsn_has_none(dsn):
    params = conninfo_to_dict(with_connect_timeout(dsn))
    assert params.pop("connect_timeout") == str(CONNECT_TIMEOUT) == "10"
    assert params == conninfo_to_dict(dsn)  # nothing else changed
    assert conninfo_to_dict(with_connect_timeout(dsn, 5))["connect_timeout"] == "5"


@pytest.mark.parametrize("dsn", [
    "host=db.example dbname=app_test connect_timeout=30",
    "postgresql://me:pw@db.example/app_test?connect_timeout=30",
    "postgresql://me@db.example/app_test?sslmode=prefer&connect_timeout=0",  # 0: theirs too
])
def test_the_users_connect_timeout_in_the_dsn_wins(dsn):
    assert with_connect_timeout(dsn) == dsn
    assert with_connect_timeout(dsn, 5) == dsn


def test_pgconnect_timeout_wins(monkeypatch):
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "45")
    dsn = "postgresql://me@db.example/app_test"
    assert with_connect_timeout(dsn) == dsn
    assert with_connect_timeout(dsn, 5) == dsn
    assert "within 45 s" in no_answer(dsn)
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "")  # set but empty: not a choice
    assert conninfo_to_dict(with_connect_timeout(dsn))["connect_timeout"] == "10"


def test_the_message_names_host_port_and_timeout_never_the_password():
    text = no_answer("postgresql://me:s3cret@db.example:6543/app_test?connect_timeout=7")
    assert text.startswith("no answer from the server at host db.example, port 6543 within 7 s")
    assert "s3cret" not in text
    assert "PGCONNECT_TIMEOUT" in text
    assert "host localhost, port 5432 within 10 s" in no_answer("dbname=app_test")


def _ended(call: Callable[[], Any]) -> Any:
    """`call()`'s result or exception; fails the test if it is still waiting after
    ENDED_WITHIN (in a thread, so that a hang fails this test, not the whole run)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(ENDED_WITHIN)
    assert outcome, f"still waiting for the server after {ENDED_WITHIN} s"
    return outcome[0]


@pytest.mark.parametrize("call", [
    run_lock.take, run_lock.refuse_if_running, workers.dbname_of,
    lambda dsn: workers.drop_worker_database(dsn.replace("/app_test", "/app_test_gw0")),
], ids=["run_lock.take", "run_lock.refuse_if_running", "dbname_of", "drop_worker_database"])
def test_sqlfix_connections_to_a_server_that_never_answers_time_out(monkeypatch, call):
    monkeypatch.setattr(schema, "CONNECT_TIMEOUT", 2)  # sqlfix's default, shorter
    with blackhole() as port:
        got = _ended(lambda: call(f"postgresql://me:pw@127.0.0.1:{port}/app_test"))
    assert isinstance(got, psycopg.errors.ConnectionTimeout), got


def test_the_controllers_clean_up_gives_up_silently(monkeypatch):
    monkeypatch.setattr(schema, "CONNECT_TIMEOUT", 60)  # not this: the clean-up's own
    monkeypatch.setattr(workers, "_CLEAN_UP_TIMEOUT", 2)
    with blackhole() as port:
        dropped = _ended(lambda: workers.drop_clones_left(
            f"postgresql://me:pw@127.0.0.1:{port}/app_test", ["gw0", "gw1"]))
    assert dropped == []


def test_check_says_where_and_what_to_do_with_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "pyproject.toml").write_text("[tool.sqlfix]\n", encoding="utf-8")
    (tmp_path / "fixtures_sql").mkdir()
    (tmp_path / "fixtures_sql" / "a.sql").write_text("SELECT 1;\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    with blackhole() as port:
        code = _ended(lambda: main(["check", "--dsn",
                                    f"postgresql://me:s3cret@127.0.0.1:{port}/app_test"]))
    _, err = capsys.readouterr()
    assert code == 2, err
    assert (f"sqlfix check: cannot connect to the test database: no answer from the server at "
            f"host 127.0.0.1, port {port} within 2 s (connect_timeout)") in err
    assert "s3cret" not in err
