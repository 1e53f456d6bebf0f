"""The configuration's key names and their pytest option and ini names; the mark's names.

Apart from `sqlfix.config` because the pytest plugin declares its options from
them in every pytest run of a project, and a run with no sqlfix test must not pay
for the rest of the configuration code (its dataclasses, tomllib, the compiler).
The mark's names and help line are here, not in `sqlfix.marker`, for the same
reason: the plugin declares the mark and looks for it in every run.
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

# The mark (`@uses(...)`, `@pytest.mark.sqlfix(...)`; see sqlfix/marker.py)
MARKER = "sqlfix"
LEGACY_MARKER = "uses"
MARKER_HELP = (
    "sqlfix(*fixture_files, commit=False): load these .sql fixtures (relative to the fixtures "
    "directory) into the test's rollback boundary; written `@uses('users.sql')` with "
    "`from sqlfix import uses`; commit=True commits them for code on its own connections "
    "and restores the baseline after"
)
