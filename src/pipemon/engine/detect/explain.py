"""Numbers and times as a person reads them in a one-line explanation."""
from __future__ import annotations

import datetime as _dt
import math
from typing import Final

DOW: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def amount(x: float | None) -> str:
    """1234567 -> '1.2M', 61234 -> '61k', 0.5 -> '0.5'."""
    if x is None or math.isnan(x):
        return "?"
    a = abs(x)
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            v = x / div
            return f"{v:.1f}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"
    return f"{x:.0f}" if a >= 10 or x == int(x) else f"{x:.2g}"


def duration(s: float | None) -> str:
    """95 -> '1.6 min', 7200 -> '2.0 h'."""
    if s is None or math.isnan(s):
        return "?"
    a = abs(s)
    if a < 90:
        return f"{s:.0f} s"
    if a < 90 * 60:
        return f"{s / 60:.1f} min" if a < 600 else f"{s / 60:.0f} min"
    if a < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def value(metric: str, x: float | None) -> str:
    return duration(x) if metric == "duration_s" else amount(x)


def clock(t: float, with_day: bool = False) -> str:
    d = _dt.datetime.fromtimestamp(t, _dt.UTC)
    return d.strftime("%a %H:%M UTC" if with_day else "%H:%M UTC")


def season(hour: int, dow: int, month: int = -1) -> str:
    """' for a Monday 03:00 run', ' for a month-end Monday run', ... or '' (unused buckets are -1; month is
    a calendar.py day kind)."""
    words = [("month-end", "month-start", "month-end", "holiday", "month-end")[month]] if month >= 0 else []
    if dow >= 0:
        words.append(DOW[dow])
    if hour >= 0:
        words.append(f"{hour:02d}:00")
    return f" for a {' '.join(words)} run" if words else ""
