"""Faker's date providers read the real clock; during a fixture's Faker calls they read `now`.

`fake.date_this_year()` or `fake.date_time()` pick a value relative to "now", so a
seeded Faker still gives other values on another day. For the length of each call
sqlfix swaps the date provider module's `datetime` and `date` for versions whose
`now()`/`today()` return the template's fixed `now`. The swap is per call and
restored afterwards, so Faker used outside templates is untouched.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_PROVIDER = "faker.providers.date_time"


class _PassesForReal(type):
    """isinstance/issubclass checks against the stand-in behave as against the real class."""

    real: type

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, cls.real)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls.real)


def _stand_ins(now: dt.datetime) -> tuple[type, type]:
    class FrozenDateTime(dt.datetime, metaclass=_PassesForReal):
        real = dt.datetime

        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Any:
            return now.astimezone(tz) if tz is not None else now.replace(tzinfo=None)

        @classmethod
        def today(cls) -> Any:
            return now.replace(tzinfo=None)

        @classmethod
        def utcnow(cls) -> Any:
            return now.astimezone(dt.timezone.utc).replace(tzinfo=None)

    class FrozenDate(dt.date, metaclass=_PassesForReal):
        real = dt.date

        @classmethod
        def today(cls) -> Any:
            return now.date()

    return FrozenDateTime, FrozenDate


@contextmanager
def frozen_clock(now: dt.datetime) -> Iterator[None]:
    module = sys.modules.get(_PROVIDER)
    if module is None or not hasattr(module, "datetime") or not hasattr(module, "dtdate"):
        yield  # another Faker layout: nothing known to patch
        return
    saved = module.datetime, module.dtdate
    frozen_datetime, frozen_date = _stand_ins(now)
    setattr(module, "datetime", frozen_datetime)  # noqa: B010 - mypy cannot see module attrs
    setattr(module, "dtdate", frozen_date)  # noqa: B010
    try:
        yield
    finally:
        setattr(module, "datetime", saved[0])  # noqa: B010
        setattr(module, "dtdate", saved[1])  # noqa: B010
