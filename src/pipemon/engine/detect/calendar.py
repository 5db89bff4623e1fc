"""Which days are special for the metric model: a region's public holidays and the month's edges.

Pure data: the holidays come in as days since 1970-01-01 (built at the edge from the `holidays`
package, see pipemon.calendars), never looked up here. Without a calendar only weekends are days off.

Day kinds (`day_kind`), one per day, the first that applies:
    HOLIDAY        a public holiday of the calendar: its own seasonal case (low volume is normal)
    MONTH_START    the month's first day
    MONTH_END      the month's last day, a business day (most months)
    LAST_BUSINESS  the month's last business day (a weekday, not a holiday) when the month ends later
    LAST_DAY       the month's last day when it is not a business day (a weekend's month-end)
    -1             any other day
Month-end peaks land on the last business day at some shops and on the last calendar day at others:
each of the three month-end kinds learns its own offset, so either pattern is learned.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Final

MONTH_END: Final = 0
MONTH_START: Final = 1
LAST_BUSINESS: Final = 2
HOLIDAY: Final = 3
LAST_DAY: Final = 4
KINDS: Final = 5  # the number of special-day buckets

_EPOCH_ORD: Final = _dt.date(1970, 1, 1).toordinal()


def day_number(d: _dt.date) -> int:
    """Days since 1970-01-01, the engine's day key (t // 86400 of a local time)."""
    return d.toordinal() - _EPOCH_ORD


class Calendar:
    """A set of holidays and a memo of day kinds; shared by every pipeline that names the same calendar."""

    __slots__ = ("_kinds", "holidays")

    def __init__(self, holidays: Iterable[int] = ()) -> None:
        self.holidays = frozenset(holidays)
        self._kinds: dict[int, int] = {}  # a few hundred days a year: a dict is the cheapest memo

    def business(self, day: int) -> bool:
        return (day + 3) % 7 < 5 and day not in self.holidays  # (day 0, 1970-01-01, was a Thursday)

    def day_kind(self, day: int) -> int:
        kind = self._kinds.get(day)
        if kind is None:
            kind = self._kinds[day] = self._kind(day)
        return kind

    def _kind(self, day: int) -> int:
        if day in self.holidays:
            return HOLIDAY
        d = _dt.date.fromordinal(day + _EPOCH_ORD)
        if d.day == 1:
            return MONTH_START
        month = d.month
        nxt = day + 1
        while _dt.date.fromordinal(nxt + _EPOCH_ORD).month == month:
            if self.business(nxt):
                return -1  # a business day follows in this month
            nxt += 1
        last = nxt == day + 1
        if self.business(day):
            return MONTH_END if last else LAST_BUSINESS
        return LAST_DAY if last else -1


NO_CALENDAR: Final = Calendar()
_SHARED: Final[dict[frozenset[int], Calendar]] = {frozenset(): NO_CALENDAR}


def calendar_of(holidays: Iterable[int]) -> Calendar:
    """One Calendar object per set of holidays, so pipelines of one region share the memo."""
    key = frozenset(holidays)
    cal = _SHARED.get(key)
    if cal is None:
        cal = _SHARED[key] = Calendar(key)
    return cal
