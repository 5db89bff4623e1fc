"""Time inside the simulator, and the cadences pipelines run on.

Simulated time is integer milliseconds since the Unix epoch, UTC: exact to sort, hash and compare,
and cheap in numpy. It becomes float seconds (the `Clock` unit) or ISO 8601 text only at the edges.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
_THURSDAY = 3  # 1970-01-01 was a Thursday; weekday numbers below are Monday = 0


def to_ms(seconds: float) -> int:
    return round(seconds * SECOND)


def to_seconds(ms: int) -> float:
    return ms / SECOND


def iso(ms: int) -> str:
    """`2025-01-06T02:30:00.123+00:00`: ISO 8601 with an explicit offset, as OpenLineage wants."""
    return datetime.fromtimestamp(ms / SECOND, UTC).isoformat(timespec="milliseconds")


def weekday(ms: np.ndarray) -> np.ndarray:
    return (ms // DAY + _THURSDAY) % 7


class Cadence(enum.Enum):
    EVERY_15_MIN = "every_15_min"
    HOURLY = "hourly"
    TWICE_DAILY = "twice_daily"
    DAILY = "daily"
    WEEKDAYS = "weekdays"


_PERIOD = {
    Cadence.EVERY_15_MIN: 15 * MINUTE,
    Cadence.HOURLY: HOUR,
    Cadence.TWICE_DAILY: 12 * HOUR,
    Cadence.DAILY: DAY,
    Cadence.WEEKDAYS: DAY,
}


@dataclass(frozen=True)
class Schedule:
    """A UTC cron cadence: `minute` past the hour, at `hours` for the daily kinds."""

    cadence: Cadence
    minute: int
    hours: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        sub_daily = self.cadence in (Cadence.EVERY_15_MIN, Cadence.HOURLY)
        limit = 15 if self.cadence is Cadence.EVERY_15_MIN else 60
        if not 0 <= self.minute < limit or sub_daily == bool(self.hours):
            raise ValueError(f"inconsistent schedule {self}")

    @property
    def period_ms(self) -> int:
        """The data interval: the spacing of slots (a weekday schedule still covers one day)."""
        return _PERIOD[self.cadence]

    @property
    def is_daily(self) -> bool:
        return self.period_ms >= 12 * HOUR

    @property
    def first_of_day_ms(self) -> int:
        """Offset of the day's first slot from midnight."""
        return (self.hours[0] if self.hours else 0) * HOUR + self.minute * MINUTE

    @property
    def cron(self) -> str:
        m = self.minute
        hours = ",".join(str(h) for h in self.hours)
        match self.cadence:
            case Cadence.EVERY_15_MIN:
                return f"{m},{m + 15},{m + 30},{m + 45} * * * *"
            case Cadence.HOURLY:
                return f"{m} * * * *"
            case Cadence.WEEKDAYS:
                return f"{m} {hours} * * 1-5"
            case _:
                return f"{m} {hours} * * *"

    @property
    def runs_per_day(self) -> float:
        if self.cadence is Cadence.WEEKDAYS:
            return 5 / 7
        return DAY / self.period_ms if not self.hours else float(len(self.hours))

    def slots(self, start_ms: int, end_ms: int) -> np.ndarray:
        """Nominal start times in [start_ms, end_ms), ascending int64."""
        if end_ms <= start_ms:
            return np.empty(0, np.int64)
        if not self.hours:
            step, offset = self.period_ms, self.minute * MINUTE
            first = -((offset - start_ms) // step) * step + offset  # ceil to the grid
            return np.arange(first, end_ms, step, dtype=np.int64)
        days = np.arange(start_ms // DAY, -(-end_ms // DAY), dtype=np.int64)
        if self.cadence is Cadence.WEEKDAYS:
            days = days[weekday(days * DAY) < 5]
        offsets = np.array([h * HOUR + self.minute * MINUTE for h in self.hours], np.int64)
        times = (days[:, None] * DAY + offsets[None, :]).ravel()
        return times[(times >= start_ms) & (times < end_ms)]

    def next_slot(self, ms: int) -> int:
        """The first slot at or after `ms` (a weekend gap is the longest: three days)."""
        return int(self.slots(ms, ms + 4 * DAY)[0])
