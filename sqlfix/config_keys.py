"""The configuration's key names and their pytest option and ini names.

Apart from `sqlfix.config` because the pytest plugin declares its options from
them in every pytest run of a project, and a run with no sqlfix test must not pay
for the rest of the configuration code (its dataclasses, tomllib, the compiler).
"""

from __future__ import annotations

KNOWN_KEYS = frozenset(
    {
        "dsn",
        "seed",
        "fixtures_dir",
        "schema",
        "allow_any_database",
        "now",
        "faker_locale",
        "lint",
        "setup_command",
        "reset_sequences",
        "reset_session",
        *(TIMEOUT_KEYS := ("lock_timeout", "statement_timeout", "load_lock_timeout",
                           "load_statement_timeout")),
        "verify",
        "layers",
        "layers_max_tests",
        "vacuum_threshold",
        # the embedded server (docs/server.md)
        "server_version",
        "server_locale",
        "server_settings",
        "server_port",
    }
)
# Settable on the pytest command line too: key -> the option that sets it
OPTION_KEYS = {key: "--sqlfix-" + key.replace("_", "-")
               for key in (*TIMEOUT_KEYS, "verify", "layers")}
# Every key but `lint` (a table of the CLI's lint) is also a pytest ini option
# `sqlfix_<key>`; `schema` and `server_settings` are one entry per line there.
INI_PREFIX = "sqlfix_"
INI_KEYS = KNOWN_KEYS - {"lint"}
INI_LINE_KEYS = frozenset({"schema", "server_settings"})
