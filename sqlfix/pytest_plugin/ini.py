"""The `sqlfix_*` pytest ini options as pytest's configuration file holds them.

Imported when the configuration is read (a run with a sqlfix test), not at plugin load.
"""

from __future__ import annotations

from typing import Any

import pytest

from sqlfix.config_keys import INI_KEYS, INI_PREFIX

_MISSING = object()


def raw_ini(config: pytest.Config) -> dict[str, Any]:
    """Key (without the prefix) -> what pytest read for `sqlfix_<key>`: text or lines.

    pytest 9 reads pytest.toml and `[tool.pytest]` with TOML's own types, and its
    `getini` refuses `sqlfix_seed = 9`, `sqlfix_verify = true` or a date for an option
    declared as text. Such a value is taken from the file as TOML typed it; the caller
    checks it as the same value in `[tool.sqlfix]` would be. (pytest 7.4 and 8 read every
    file as text; only pytest's own refusal of a value gets here, never a `-o` override.)
    """
    values: dict[str, Any] = {}
    native: dict[str, Any] | None = None
    for key in INI_KEYS:
        try:
            values[key] = config.getini(INI_PREFIX + key)
        except (pytest.UsageError, TypeError):  # pytest 9.0 and 9.1 raise a TypeError
            if native is None:
                native = _file_options(config)
            value = native.get(INI_PREFIX + key, _MISSING)
            if value is _MISSING:
                raise
            values[key] = value
    return values


def _file_options(config: pytest.Config) -> dict[str, Any]:
    from sqlfix.config import pytest_file_options

    return pytest_file_options(config.inipath) if config.inipath is not None else {}
