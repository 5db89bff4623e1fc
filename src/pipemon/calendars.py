"""Public-holiday calendars (`calendar: US` in the config), from the `holidays` package, built at the edge.

The engine gets each calendar as data: a frozenset of days since 1970-01-01 (engine.detect.calendar).
Names are the package's country codes (ISO 3166: US, DE, FR, ...) and its aliases (UK for GB).
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable
from functools import cache

import holidays

from pipemon.engine.detect.calendar import day_number


@cache
def _codes() -> frozenset[str]:
    return frozenset(holidays.list_supported_countries(include_aliases=True))


def check(name: str) -> str:
    """The calendar's name if the holidays package knows it, else a ValueError that says what would do."""
    if name not in _codes():
        hint = " (codes are upper case)" if name.upper() in _codes() else ""
        raise ValueError(f"unknown calendar {name!r}{hint}: use a country code of the holidays package, "
                         f"such as US, UK, DE or FR")
    return name


@cache
def holiday_days(name: str, years: tuple[int, ...]) -> frozenset[int]:
    """The calendar's public holidays over `years`, as days since 1970-01-01."""
    return frozenset(day_number(d) for d in holidays.country_holidays(check(name), years=years))


def lookup(now: float) -> Callable[[str], frozenset[int]]:
    """A calendar name -> its holidays from five years before `now` to five after (history replayed,
    a service running for years); what the live engine is given."""
    years = years_around(now, before=5, after=5)
    return lambda name: holiday_days(name, years)


def years_around(t: float, before: int = 1, after: int = 2) -> tuple[int, ...]:
    """The years a live service needs: last year's (history being replayed) to the year after next."""
    y = _dt.datetime.fromtimestamp(t, _dt.UTC).year
    return tuple(range(y - before, y + after + 1))


def years_spanning(times: Iterable[float]) -> tuple[int, ...]:
    """Every year from the first to the last of `times` (a backtest's records)."""
    ys = [_dt.datetime.fromtimestamp(t, _dt.UTC).year for t in times]
    return tuple(range(min(ys), max(ys) + 1)) if ys else ()
