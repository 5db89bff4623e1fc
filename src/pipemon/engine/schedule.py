"""Declared and learned cadences: when a pipeline's next run is expected, and when it is late.

    Calendar          the "when": slot times, compiled from a cron (croniter parses it, we evaluate it:
                      croniter's get_next costs ~35 us, this ~2 us) or learned from run starts
    Schedule          a calendar + a learned phase offset + the learned start jitter
                      -> next_expected(after), prev_expected(at), deadline(expected), describe()
    ScheduleLearner   run start times -> a Calendar (every N min, hourly, daily at ~HH:MM, weekdays,
                      k times a day, weekly, monthly), once it has seen enough of them

Grace (how late a start may be before it is late): declared, or before any jitter is learned
`DEFAULT_GRACE_FRACTION` (1/4) of the interval, then `loc + GRACE_K * dev` of the learned start lag
(mean and mean absolute deviation), clamped to [max(60 s, 10 %), 50 %] of the interval. Start lag is
queueing delay: exponential-like with a heavier tail (the benchmark's runs reach 14x their median
lag), so GRACE_K = 25 deviations (~18 mean lags): 15 left one false alarm per ~1,000 hourly runs.

Pure: no I/O, no clock; every time is a unix-seconds float argument.
"""
from __future__ import annotations

import bisect
import datetime as _dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from itertools import pairwise
from typing import Any, Final
from zoneinfo import ZoneInfo

from croniter import croniter

DAY: Final = 86400.0
ALL_DAYS: Final = 0x7F  # weekday bitmask, Monday = bit 0
_EPOCH_ORD: Final = _dt.date(1970, 1, 1).toordinal()
_MAX_SEARCH_DAYS: Final = 4 * 366  # a cron that never fires ("30 Feb") gives up after this
_DOW_NAMES: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

DEFAULT_GRACE_FRACTION: Final = 0.25
GRACE_K: Final = 25.0
GRACE_MIN_S: Final = 60.0
GRACE_MIN_FRACTION: Final = 0.1
GRACE_MAX_FRACTION: Final = 0.5
EARLY_FRACTION: Final = 0.1  # a run up to 10 % of an interval before a slot is that slot's run, started early
LAG_WARM: Final = 5  # lags needed before the learned grace replaces the default


@cache
def _zone(name: str) -> ZoneInfo | None:
    return None if name in ("UTC", "Etc/UTC", "Z") else ZoneInfo(name)


def _dow(day: int) -> int:
    return (day + 3) % 7  # day 0 (1970-01-01) was a Thursday


# ----------------------------------------------------------------------------------------- Calendar
@dataclass(frozen=True, slots=True)
class Calendar:
    """Slot times. Either days x times of day (cron-like, in `tz`) or a fixed interval from an anchor."""

    times: tuple[float, ...] = ()  # seconds of the local day, ascending
    dows: int = ALL_DAYS
    doms: int = 0  # bit d = day of month d, bit 0 = the month's last day; 0 = any day
    months: int = 0  # bit m = month m; 0 = any month
    day_or: bool = False  # cron: with both day fields restricted a day matches either
    tz: str = "UTC"
    every_s: float = 0.0  # > 0: slots at anchor + k * every_s
    anchor: float = 0.0
    cron: str | None = None  # the declared expression, when there is one
    exotic: bool = False  # cron features we do not evaluate ourselves ("1#2"): croniter does
    min_gap: float = field(init=False, compare=False)  # no two slots are closer (DST aside)
    plain: bool = field(init=False, compare=False, repr=False)  # days x times of day in UTC, no date rule

    def __post_init__(self) -> None:
        t = self.times
        gaps = [b - a for a, b in pairwise(t)] + ([t[0] + DAY - t[-1]] if t else [])
        gap = self.every_s or (min(gaps) if gaps else DAY)
        object.__setattr__(self, "min_gap", 0.0 if self.exotic else gap - 3600.0 if self.tz != "UTC" else gap)
        object.__setattr__(self, "plain", not (self.every_s or self.exotic or self.doms or self.months)
                           and self.tz == "UTC")

    @staticmethod
    @cache  # immutable: pipelines with the same cron share one (and the times they look up per run)
    def from_cron(expr: str, tz: str = "UTC") -> Calendar:
        fields = expr.split()
        if len(fields) != 5:
            raise ValueError(f"cron {expr!r}: expected 5 fields (minute hour day month weekday)")
        it = croniter(expr)  # raises on a malformed expression
        _zone(tz)  # raises on an unknown zone
        mins, hours, doms, months, dows = it.expanded
        exotic = bool(it.nth_weekday_of_month)
        mins = range(60) if mins == ["*"] else mins
        hours = range(24) if hours == ["*"] else hours
        times = tuple(sorted(float(h * 3600 + m * 60) for h in hours for m in mins))
        dmask = ALL_DAYS if dows == ["*"] else sum(1 << ((int(d) + 6) % 7) for d in set(dows))
        dommask = 0 if doms == ["*"] else sum(1 << (0 if d == "l" else int(d)) for d in set(doms))
        mmask = 0 if months == ["*"] else sum(1 << int(m) for m in set(months))
        return Calendar(times, dmask, dommask, mmask, doms != ["*"] and dows != ["*"], tz, cron=expr,
                        exotic=exotic)

    @staticmethod
    def every(seconds: float, anchor: float) -> Calendar:
        return Calendar(every_s=float(seconds), anchor=float(anchor))

    # -- evaluation
    def _day_ok(self, day: int) -> bool:
        dow_ok = (self.dows >> _dow(day)) & 1
        if not (self.doms or self.months):
            return bool(dow_ok)
        d = _dt.date.fromordinal(day + _EPOCH_ORD)
        if self.months and not (self.months >> d.month) & 1:
            return False
        if not self.doms:
            return bool(dow_ok)
        dom_ok = (self.doms >> d.day) & 1 or (
            self.doms & 1 and _dt.date.fromordinal(day + 1 + _EPOCH_ORD).day == 1)
        return bool(dom_ok or dow_ok) if self.day_or else bool(dom_ok and dow_ok)

    def _local(self, t: float) -> tuple[int, float]:
        zone = _zone(self.tz)
        if zone is None:
            day = int(t // DAY)
            return day, t - day * DAY
        dt = _dt.datetime.fromtimestamp(t, zone)
        return dt.toordinal() - _EPOCH_ORD, dt.hour * 3600 + dt.minute * 60 + dt.second + dt.microsecond / 1e6

    def _utc(self, day: int, sod: float) -> float:
        zone = _zone(self.tz)
        if zone is None:
            return day * DAY + sod
        midnight = _dt.datetime.combine(_dt.date.fromordinal(day + _EPOCH_ORD), _dt.time(), zone)
        return (midnight + _dt.timedelta(seconds=sod)).timestamp()  # wall-clock add, then zone offset

    def next_after(self, t: float) -> float | None:
        """The first slot strictly after t."""
        times = self.times
        if self.plain:  # the common case, in plain arithmetic
            day = int(t // DAY)
            i = bisect.bisect_right(times, t - day * DAY)
            dows = self.dows
            for d in range(day, day + 8):
                if (dows >> ((d + 3) % 7)) & 1 and i < len(times):
                    return d * DAY + times[i]
                i = 0
            return None
        if self.every_s:
            return self.anchor + (math.floor((t - self.anchor) / self.every_s) + 1) * self.every_s
        if self.exotic:
            return float(croniter(self.cron, _dt.datetime.fromtimestamp(t, _zone(self.tz) or _dt.UTC))
                         .get_next(float))
        day, sod = self._local(t)
        i = bisect.bisect_right(times, sod)
        for d in range(day, day + _MAX_SEARCH_DAYS):
            if self._day_ok(d):
                for k in range(i, len(times)):
                    u = self._utc(d, times[k])
                    if u > t:  # only a DST jump can make it not so
                        return u
            i = 0
        return None

    def prev_at_or_before(self, t: float) -> float | None:
        """The last slot at or before t."""
        times = self.times
        if self.plain and times:  # the common case, in plain arithmetic
            day = int(t // DAY)
            i = bisect.bisect_right(times, t - day * DAY)
            dows = self.dows
            for d in range(day, day - 8, -1):
                if (dows >> ((d + 3) % 7)) & 1 and i > 0:
                    return d * DAY + times[i - 1]
                i = len(times)
            return None
        if self.every_s:
            return self.anchor + math.floor((t - self.anchor) / self.every_s) * self.every_s
        if self.exotic:
            zone = _zone(self.tz) or _dt.UTC
            return float(croniter(self.cron, _dt.datetime.fromtimestamp(t + 1e-3, zone)).get_prev(float))
        day, sod = self._local(t)
        i = bisect.bisect_right(times, sod)
        for d in range(day, day - _MAX_SEARCH_DAYS, -1):
            if self._day_ok(d):
                for k in range(i - 1, -1, -1):
                    u = self._utc(d, times[k])
                    if u <= t:
                        return u
            i = len(times)
        return None

    def typical_interval(self, around: float) -> float:
        """The median spacing of slots near `around` (an hour for hourly, a day for weekdays)."""
        if self.every_s:
            return self.every_s
        slots: list[float] = []
        t = around
        for _ in range(15):
            nxt = self.next_after(t)
            if nxt is None:
                break
            slots.append(nxt)
            t = nxt
        gaps = sorted(b - a for a, b in pairwise(slots))
        return gaps[len(gaps) // 2] if gaps else DAY

    # -- words
    def describe(self, approx: bool = False) -> str:
        about = "about " if approx else ""
        if self.every_s:
            return f"every {_span(self.every_s)}"
        if self.exotic or self.day_or or self.months:
            return f"cron '{self.cron}' {self.tz}"
        times = self.times
        steps = {round(b - a) for a, b in pairwise(times)}
        if len(times) >= 3 and len(steps) == 1:
            step = steps.pop()
            when = f"hourly at :{int(times[0] // 60 % 60):02d}" if step == 3600 else f"every {_span(step)}"
            if len(times) * step < DAY:
                when += f" from {_hhmm(times[0])} to {_hhmm(times[-1])} {self.tz}"
            elif step >= 3600 and step != 3600 and times[0] % 3600:
                when += f" at :{int(times[0] // 60 % 60):02d}"
        else:
            when = "at " + " and ".join(f"{about}{_hhmm(s)}" for s in times) + f" {self.tz}"
        if self.doms:
            doms = ["the last day" if d == 0 else f"day {d}" for d in range(32) if (self.doms >> d) & 1]
            return f"monthly on {', '.join(doms)} {when}"
        if self.dows == ALL_DAYS:
            return when if when.startswith(("hourly", "every")) else f"daily {when}"
        names = [_DOW_NAMES[d] for d in range(7) if (self.dows >> d) & 1]
        days = {0x1F: "weekdays", 0x60: "weekends"}.get(self.dows) or (
            f"weekly on {names[0]}" if len(names) == 1 else "on " + ", ".join(n[:3] for n in names))
        return f"{days} {when}"

    def to_json(self) -> dict[str, Any]:
        if self.cron is not None:
            return {"cron": self.cron, "tz": self.tz}
        if self.every_s:
            return {"every": self.every_s, "anchor": self.anchor}
        out: dict[str, Any] = {"times": list(self.times), "dows": self.dows}
        if self.doms:
            out["doms"] = self.doms
        if self.tz != "UTC":
            out["tz"] = self.tz
        return out

    @staticmethod
    def from_json(d: dict[str, Any]) -> Calendar:
        if "cron" in d:
            return Calendar.from_cron(d["cron"], d.get("tz", "UTC"))
        if "every" in d:
            return Calendar.every(d["every"], d["anchor"])
        return Calendar(tuple(d["times"]), d["dows"], d.get("doms", 0), tz=d.get("tz", "UTC"))


def _hhmm(sod: float) -> str:
    m = round(sod / 60.0) % 1440
    return f"{m // 60:02d}:{m % 60:02d}"


def _span(s: float) -> str:
    if s % 3600 == 0:
        return f"{int(s // 3600)} h"
    if s % 60 == 0:
        return f"{int(s // 60)} min"
    return f"{s:.0f} s"


# ----------------------------------------------------------------------------------------- Schedule
class ScheduleSource(str, Enum):
    DECLARED = "declared"  # the config's cron
    NOMINAL = "nominal"    # learned from the scheduler's own nominal times (OpenLineage nominalTime): exact
    LEARNED = "learned"    # learned from the start times: approximate


class Schedule:
    """A calendar, shifted by a learned phase offset, with the learned start lag (jitter)."""

    __slots__ = ("_grace", "_grace_for", "calendar", "early_s", "grace_s", "interval_s", "lag_dev", "lag_loc",
                 "lag_n", "offset_s", "source")

    def __init__(self, calendar: Calendar, source: ScheduleSource, interval_s: float,
                 grace_s: float | None = None, offset_s: float = 0.0) -> None:
        self.calendar = calendar
        self.source = source
        self.interval_s = interval_s  # typical spacing: bounds grace and the early tolerance
        self.early_s = EARLY_FRACTION * interval_s
        self.grace_s = grace_s  # declared; None = learned from lag
        self.offset_s = offset_s  # the schedule moved by this much since declared / learned
        self.lag_loc = 0.0  # start lag after the slot: EW mean and mean absolute deviation
        self.lag_dev = 0.0
        self.lag_n = 0
        self._grace_for: float | None = None  # cache: the grace at this sensitivity (None: stale) ...
        self._grace = 0.0  # ... is this

    @staticmethod
    def declared(cron: str | None = None, timezone: str = "UTC", interval_s: float | None = None,
                 grace_s: float | None = None, anchor: float = 0.0) -> Schedule:
        if cron:
            cal = Calendar.from_cron(cron, timezone)
            return Schedule(cal, ScheduleSource.DECLARED, cal.typical_interval(anchor), grace_s)
        if interval_s:
            return Schedule(Calendar.every(interval_s, anchor), ScheduleSource.DECLARED, interval_s, grace_s)
        raise ValueError("a declared schedule needs a cron or an interval")

    @staticmethod
    def learned(starts: Iterable[float]) -> Schedule | None:
        """The schedule a history of run start times follows (and its jitter), or None when the history
        is too short or irregular (see ScheduleLearner for what "enough" is)."""
        lr = ScheduleLearner()
        for t in sorted(starts):
            lr.observe(t)
        cal = lr.learn()
        if cal is None:
            return None
        sch = Schedule(cal, ScheduleSource.LEARNED, cal.typical_interval(lr.starts[-1]))
        for t in lr.starts:
            slot = sch.prev_expected(t + sch.early_s)
            if slot is not None and t - slot <= sch.grace():
                sch.observe_lag(t - slot)
        return sch

    def next_expected(self, after_ts: float) -> float | None:
        nxt = self.calendar.next_after(after_ts - self.offset_s)
        return None if nxt is None else nxt + self.offset_s

    def prev_expected(self, at_ts: float) -> float | None:
        prv = self.calendar.prev_at_or_before(at_ts - self.offset_s)
        return None if prv is None else prv + self.offset_s

    def grace(self, sensitivity: float = 1.0) -> float:
        if self.grace_s is not None:
            return self.grace_s
        if self._grace_for == sensitivity:
            return self._grace
        iv = self.interval_s
        if self.lag_n < LAG_WARM:
            g = DEFAULT_GRACE_FRACTION * iv
        else:
            g = self.lag_loc + GRACE_K / sensitivity * self.lag_dev
            # min(max(g, GRACE_MIN_S, GRACE_MIN_FRACTION * iv), GRACE_MAX_FRACTION * iv), as compares
            if GRACE_MIN_S > g:
                g = GRACE_MIN_S
            if GRACE_MIN_FRACTION * iv > g:
                g = GRACE_MIN_FRACTION * iv
            if GRACE_MAX_FRACTION * iv < g:
                g = GRACE_MAX_FRACTION * iv
        self._grace_for, self._grace = sensitivity, g
        return g

    def deadline(self, expected_ts: float, sensitivity: float = 1.0) -> float:
        return expected_ts + self.grace(sensitivity)

    def lateness_score(self, late_by: float) -> float:
        """A start `late_by` seconds after its slot, in mean-absolute-deviation units past the usual lag
        (GRACE_K of them is the alarm line)."""
        if self.lag_n < LAG_WARM or self.lag_dev <= 0:
            return late_by / max(self.grace(), 1e-9) * GRACE_K
        return (late_by - self.lag_loc) / self.lag_dev

    def early_tolerance(self) -> float:
        return self.early_s

    def observe_lag(self, lag: float) -> None:
        """Learn one on-time start's lag. The caller passes only starts within grace, which bounds
        an odd one's pull; a tighter clip would cut the heavy tail and make the grace too tight."""
        self._grace_for = None
        n = self.lag_n = self.lag_n + 1
        if n == 1:
            self.lag_loc = lag
            return
        g = 1.0 / n if n < 20 else 0.05  # max(1 / n, 0.05)
        r = lag - self.lag_loc
        self.lag_loc += g * r
        self.lag_dev += g * (abs(r) - self.lag_dev)

    def shift(self, delta_s: float) -> None:
        """The schedule moved (a deploy changed its time): slots move, the jitter stays."""
        self.offset_s += delta_s

    def describe(self) -> str:
        text = self.calendar.describe(approx=self.source is ScheduleSource.LEARNED)
        if self.offset_s:
            text += (f" (moved {'+' if self.offset_s > 0 else '-'}"
                     f"{_span(round(abs(self.offset_s) / 60) * 60)})")
        return text

    def to_json(self) -> dict[str, Any]:
        return {"cal": self.calendar.to_json(), "src": self.source.value, "iv": self.interval_s,
                "grace": self.grace_s, "off": self.offset_s,
                "lag": [self.lag_loc, self.lag_dev, self.lag_n]}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Schedule:
        s = Schedule(Calendar.from_json(d["cal"]), ScheduleSource(d["src"]), d["iv"], d["grace"], d["off"])
        s.lag_loc, s.lag_dev, s.lag_n = d["lag"]
        return s


# ---------------------------------------------------------------------------------------- learning
_RING: Final = 32  # recent starts kept
MIN_STARTS: Final = 8
MIN_SPAN_S: Final = 8 * DAY  # every weekday seen once before a learned calendar raises anything
_ACTIVE: Final = 0.4  # a weekday with runs on fewer than ~half its recent occurrences is a day off
_NICE_PERIODS: Final = (60, 120, 180, 240, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 21600)


class ScheduleLearner:
    """Learns a calendar from run start times (UTC).

    It keeps the last 32 starts; the period, the times of day and (for daily-ish calendars) the
    weekdays off come from them. A calendar is offered once it has `MIN_STARTS` (8) starts spanning
    `MIN_SPAN_S` (8 days) and it explains >= 80 % of them; monthly needs 3 starts. A weekday is off
    when it had two chances and ran on fewer than half of them: one missed run does not make a day
    off. Runs with a period under 6 h are one phase modulo a nice period (every 15 min, hourly),
    with weekdays off from a per-UTC-day tally (32 hourly starts span too little); 6 h to 8 days
    are clusters of times of day x weekdays (twice daily, daily, weekdays, weekly); about a month
    is a day of the month (or its last day).
    """

    __slots__ = ("active", "first", "last_day", "seen", "starts")

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.active = [1.0] * 7
        self.seen = [0] * 7
        self.last_day: int | None = None
        self.first: float | None = None

    def observe(self, start: float) -> bool:
        """Record a start; True when it is the first of a new (UTC) day."""
        if self.first is None:
            self.first = start
        starts = self.starts
        if starts and start < starts[-1]:
            bisect.insort(starts, start)
        else:
            starts.append(start)
        if len(starts) > _RING:
            del starts[0]
        day = int(start // DAY)
        last = self.last_day
        if last is None or day > last:
            if last is not None:
                for d in range(max(last + 1, day - 14), day):  # the days in between had no run
                    self._day(d, 0.0)
            self._day(day, 1.0)
            self.last_day = day
            return True
        return False

    def _day(self, day: int, ran: float) -> None:
        w = _dow(day)
        self.active[w] += 0.5 * (ran - self.active[w])
        self.seen[w] = min(self.seen[w] + 1, 99)

    def active_dows(self) -> int:
        return sum(1 << w for w in range(7) if self.active[w] > _ACTIVE)

    def learn(self) -> Calendar | None:
        """The calendar the recent starts follow, if they follow one."""
        cal = self.infer()
        return cal if cal is not None and self.explains(cal) else None

    def explains(self, cal: Calendar) -> bool:
        return _explains(cal, self.starts)

    def infer(self) -> Calendar | None:
        """The calendar the recent starts suggest, before checking that it explains them."""
        starts = self.starts
        if len(starts) < 3 or self.first is None:
            return None
        gaps = sorted(b - a for a, b in pairwise(starts) if b > a)
        if not gaps:
            return None
        p0 = gaps[len(gaps) // 2]
        monthly = 25 * DAY <= p0 <= 35 * DAY
        if not monthly and (len(starts) < MIN_STARTS or starts[-1] - self.first < MIN_SPAN_S):
            return None
        if monthly:
            cal = _monthly(starts)
        elif p0 < 6 * 3600:
            if min(self.active) < 1.0 and min(self.seen) < 2:
                return None  # a day without runs: see every weekday twice before calling it a day off
            cal = _sub_daily(starts, p0, self.active_dows())
        elif p0 <= 8 * DAY:
            cal = _times_of_day(starts, p0)
        else:
            cal = Calendar.every(p0, starts[-1])
        return cal

    def to_json(self) -> dict[str, Any]:
        return {"starts": self.starts, "active": self.active, "seen": self.seen,
                "last_day": self.last_day, "first": self.first}

    @staticmethod
    def from_json(d: dict[str, Any]) -> ScheduleLearner:
        s = ScheduleLearner()
        s.starts, s.active, s.seen = list(d["starts"]), list(d["active"]), list(d["seen"])
        s.last_day, s.first = d["last_day"], d["first"]
        return s


def _circular_median(xs: list[float], period: float) -> float:
    """A robust centre of values on a circle: the circular mean, then the median offset from it.
    Whole seconds: slot arithmetic stays exact (day * 86400 + time of day)."""
    ang = [2 * math.pi * x / period for x in xs]
    mean = math.atan2(sum(map(math.sin, ang)), sum(map(math.cos, ang))) * period / (2 * math.pi)
    offs = sorted((x - mean + period / 2) % period - period / 2 for x in xs)
    return float(round(mean + offs[len(offs) // 2]) % round(period))


def _sub_daily(starts: list[float], p0: float, dows: int) -> Calendar | None:
    nice = min(_NICE_PERIODS, key=lambda p: abs(p - p0))
    if abs(nice - p0) > 0.1 * nice:
        return Calendar.every(p0,
                              float(round(starts[-1] - ((starts[-1] - _circular_median(starts, p0)) % p0))))
    phase = _circular_median([s % nice for s in starts], nice)
    return Calendar(tuple(phase + k * nice for k in range(int(DAY // nice))), dows or ALL_DAYS)


def _times_of_day(starts: list[float], p0: float) -> Calendar | None:
    """Cluster the times of day on the 24 h circle (gaps wider than a quarter period separate), then
    find the weekdays off among the days the slots fall on."""
    sods = sorted(s % DAY for s in starts)
    sep = max(0.25 * min(p0, DAY), 1800.0)
    clusters: list[list[float]] = [[sods[0]]]
    for x in sods[1:]:
        if x - clusters[-1][-1] > sep:
            clusters.append([x])
        else:
            clusters[-1].append(x)
    if len(clusters) > 1 and sods[0] + DAY - sods[-1] <= sep:  # wrap around midnight
        clusters[0] = clusters.pop() + clusters[0]
    # a cluster of one or two odd starts (a manual re-run, a late run) is not a slot
    keep = [c for c in clusters if len(c) >= max(2, len(sods) // (4 * len(clusters)))]
    if not keep or len(keep) > 12:
        return None
    times = tuple(sorted(_circular_median(c, DAY) for c in keep))
    dows = _slot_weekdays(starts, times)
    return None if dows is None else Calendar(times, dows)


def _slot_weekdays(starts: list[float], times: tuple[float, ...]) -> int | None:
    """The weekdays with slots, judged on the day of the slot each start serves (a Friday 23:50 job
    that starts at 00:10 is still a Friday run). A weekday is off when it had at least two chances
    and ran on fewer than half; with one chance and no run it is undecided (None: learn later)."""
    ran: set[int] = set()
    for s in starts:
        c = min(times, key=lambda x: abs((s - x + DAY / 2) % DAY - DAY / 2))
        ran.add(round((s - c) / DAY))
    chances, hits = [0] * 7, [0] * 7
    for day in range(min(ran), max(ran) + 1):
        chances[_dow(day)] += 1
        hits[_dow(day)] += day in ran
    mask = 0
    for w in range(7):
        if chances[w] < 2 and not hits[w]:
            return None
        if 2 * hits[w] >= chances[w]:
            mask |= 1 << w
    return mask or None


def _monthly(starts: list[float]) -> Calendar | None:
    dates = [_dt.date.fromordinal(int(s // DAY) + _EPOCH_ORD) for s in starts]
    if all((d + _dt.timedelta(days=1)).day == 1 for d in dates[-3:]):
        doms = 1
    else:
        days = [d.day for d in dates[-6:]]
        doms = 1 << max(set(days), key=days.count)
    return Calendar((_circular_median([s % DAY for s in starts], DAY),), ALL_DAYS, doms)


def _explains(cal: Calendar, starts: list[float]) -> bool:
    """At least 80 % of the recent starts sit near a slot, and there are not many more slots than runs."""
    iv = cal.typical_interval(starts[0])
    tol = max(0.25 * iv, 60.0) if iv < DAY else 0.25 * DAY
    near = 0
    for s in starts:
        a, b = cal.prev_at_or_before(s), cal.next_after(s)
        if (a is not None and s - a <= tol) or (b is not None and b - s <= tol):
            near += 1
    n_slots, t = 0, starts[0] - 1.0
    while n_slots <= 2 * len(starts):
        nxt = cal.next_after(t)
        if nxt is None or nxt > starts[-1]:
            break
        n_slots, t = n_slots + 1, nxt
    return near >= 0.8 * len(starts) and n_slots <= 1.25 * len(starts) + 1
