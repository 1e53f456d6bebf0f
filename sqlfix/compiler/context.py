"""What a fixture template can use: seed, rng, fake, id(), row(), now.

Every value is a pure function of the run's seed and the file's name (or a row's
label), so a fixture renders to the same bytes in every test, run and order.
Faker is imported on first use only (`import faker` costs ~100 ms), and is an
optional extra (`sqlfix[faker]`): a template that uses `fake` without it says so.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlfix.compiler.frozen_clock import frozen_clock
from sqlfix.compiler.seeds import derive_seed, fixture_id

DEFAULT_NOW = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


@cache
def _shared_faker(locale: str) -> Any:
    try:
        from faker import Faker  # lazy: only templates that use `fake` pay for it
    except ImportError:
        # An extra since 0.2: Faker's own pytest plugin costs every pytest run ~0.7 s.
        raise LookupError(
            "`fake` needs Faker, an optional extra of sqlfix: pip install 'sqlfix[faker]' "
            "(or pip install faker)") from None

    try:
        return Faker(locale)
    except AttributeError as exc:  # Faker's way of saying "no such locale"
        raise LookupError(
            f"faker_locale {locale!r} is not a Faker locale ({exc}); set faker_locale "
            "([tool.sqlfix] faker_locale, or sqlfix_faker_locale in pytest's configuration) "
            "to one such as 'en_US', 'de_DE' or 'fr_FR'") from None


class SeededFaker:
    """A Faker whose values come from its own `random.Random`.

    One Faker instance per locale is shared (building one costs ~20 ms); each
    SeededFaker swaps its own random state in before every call, so two files or
    two labels never disturb each other's sequences.
    """

    def __init__(
        self, seed: int, locale: str, labels: Callable[[str], RowValues], now: dt.datetime
    ) -> None:
        self._random = random.Random(seed)
        self._locale = locale
        self._labels = labels
        self._now = now

    def for_label(self, label: str) -> SeededFaker:
        """A Faker keyed to a row label: its values do not depend on other rows."""
        return self._labels(label).fake

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        faker = _shared_faker(self._locale)
        target = getattr(faker, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            faker.random = self._random
            with frozen_clock(self._now):  # date providers count from `now`, not today
                return target(*args, **kwargs)

        return call


@dataclass
class RowValues:
    """Values keyed to one row label: `row('alice').fake.email()`."""

    label: str
    rng: random.Random
    fake: SeededFaker

    def id(self, table: str) -> int:
        return fixture_id(table, self.label)


@dataclass
class TemplateContext:
    """Builds the names a template sees and records the ids it asked for."""

    file_seed: int
    run_seed: int
    now: dt.datetime = DEFAULT_NOW
    locale: str = "en_US"
    ids: dict[tuple[str, str], int] = field(default_factory=dict)
    _rows: dict[str, RowValues] = field(default_factory=dict)

    def id(self, table: str, label: str) -> int:
        if not isinstance(table, str) or not isinstance(label, str):
            raise TypeError("id(table, label) takes two strings, e.g. id('users', 'alice')")
        value = fixture_id(table, label)
        self.ids[(table, label)] = value
        return value

    def row(self, label: str) -> RowValues:
        if label not in self._rows:
            # Keyed to the run seed and label only, so `row('alice')` gives alice
            # the same values in every file that mentions her.
            seed = derive_seed(self.run_seed, "row", label)
            fake = SeededFaker(derive_seed(seed, "fake"), self.locale, self.row, self.now)
            self._rows[label] = RowValues(label, random.Random(seed), fake)
        return self._rows[label]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.file_seed,
            "rng": random.Random(self.file_seed),
            "fake": SeededFaker(
                derive_seed(self.file_seed, "fake"), self.locale, self.row, self.now
            ),
            "id": self.id,
            "row": self.row,
            "now": self.now,
            "today": self.now.date(),
            "timedelta": dt.timedelta,
        }
