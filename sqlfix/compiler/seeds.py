"""Seeds and label ids: pure functions of their inputs, stable across runs and machines.

Python's `hash()` is salted per process, so everything here goes through blake2b.
"""

from __future__ import annotations

import hashlib
import secrets

# Ids stay inside a PostgreSQL `integer` and clear of small hand-written ids.
ID_MIN = 1_000
ID_SPAN = 2**31 - 1 - ID_MIN


def _digest(*parts: object) -> int:
    text = "\x1f".join(str(p) for p in parts)
    # surrogateescape: a file name that is not valid UTF-8 still hashes (to its bytes)
    data = text.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def derive_seed(seed: int, *parts: object) -> int:
    """A 32-bit seed for one use (a file, a label) derived from the run's seed."""
    return _digest("seed", seed, *parts) % 2**32


def fixture_id(table: str, label: str) -> int:
    """The id of the row `label` in `table`: depends on nothing else.

    Like Rails fixture labels: `orders.sql` can name `id('users', 'alice')` without
    knowing in which order or file the user was inserted.
    """
    return ID_MIN + _digest("id", table, label) % ID_SPAN


def random_seed() -> int:
    """A fresh seed for `--sqlfix-seed=random`; printed so the run can be replayed."""
    return secrets.randbelow(2**32)
