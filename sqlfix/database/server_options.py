"""What a user may choose about the embedded server: major version, locale, settings, TCP port.

Pure: the values come from `[tool.sqlfix]` (checked by `sqlfix.config`); `server.py` turns
them into initdb and postgres arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlfix.config import DEFAULT_SERVER_LOCALE, Settings

# What the embedded server always runs with: fast, not durable, unix socket only.
BASE_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "huge_pages": "off",
    "max_connections": "50",
    "jit": "off",
    # Dynamic shared memory as files in the data directory, not /dev/shm/PostgreSQL.*: a
    # killed postmaster (kill -9, the OOM killer) leaves them, and only the runtime
    # directory is sure to be removed then.
    "dynamic_shared_memory_type": "mmap",
}


@dataclass(frozen=True)
class ServerOptions:
    """Options of one embedded server.

    `version`: a major such as "16" (None: the first installation found), set as
    `version_option` in `version_source` (named in its errors); `locale`: passed
    to `initdb --locale`; `settings`: postgresql.conf names to values, applied after sqlfix's
    own; `port`: a TCP port on 127.0.0.1 to listen on as well as the unix socket.
    """

    version: str | None = None
    version_option: str = "server_version"  # how the version's source spells the key
    version_source: str = ""  # the file (or option) it came from, for error messages
    locale: str = DEFAULT_SERVER_LOCALE
    locale_option: str = "server_locale"  # as for the version: named in its errors
    locale_source: str = ""
    settings: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None

    def postgres_settings(self, socket_port: int) -> dict[str, str]:
        """Every `-c name=value` for postgres, sqlfix's defaults overridden by the user's."""
        listen = "127.0.0.1" if self.port is not None else ""
        port = self.port if self.port is not None else socket_port
        return {"listen_addresses": listen, "port": str(port), **BASE_SETTINGS, **self.settings}


def from_settings(settings: Settings) -> ServerOptions:
    """The embedded server's options from the `server_*` keys of `[tool.sqlfix]`."""
    return ServerOptions(
        version=settings.server_version,
        version_option=settings.option("server_version"),
        version_source=settings.source("server_version"),
        locale=settings.server_locale,
        locale_option=settings.option("server_locale"),
        locale_source=settings.source("server_locale"),
        settings=dict(settings.server_settings),
        port=settings.server_port,
    )
