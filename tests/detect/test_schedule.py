"""engine.schedule: the calendar agrees with croniter, describes itself, and round-trips through JSON."""
from __future__ import annotations

import datetime as dt
import json
import random
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from pipemon.engine.schedule import Calendar, Schedule, ScheduleLearner

CRONS = ["41 3 * * 1-5", "*/15 * * * *", "0 6,18 * * *", "0 3 L * *", "0 0 1,15 * MON", "30 2 * JAN-MAR SUN",
         "5 */2 * * *", "0 9-17 * * 1-5", "0 0 * * 1#2", "0 12 31 * *", "7-59/15 * * * *"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]


def _in_dst_gap(t: float, zone: ZoneInfo) -> bool:
    """croniter and Python disagree on wall times that do not exist (spring forward); skip those."""
    a = dt.datetime.fromtimestamp(t - 7200, zone).utcoffset()
    b = dt.datetime.fromtimestamp(t + 7200, zone).utcoffset()
    return a != b


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("expr", CRONS)
def test_calendar_agrees_with_croniter(expr: str, tz: str) -> None:
    cal = Calendar.from_cron(expr, tz)
    zone = ZoneInfo(tz)
    rng = random.Random(expr + tz)
    for _ in range(60):
        t = rng.uniform(1.7e9, 1.8e9)
        start = dt.datetime.fromtimestamp(t, zone)
        nxt, prv = croniter(expr, start).get_next(float), croniter(expr, start).get_prev(float)
        if not (_in_dst_gap(nxt, zone) or _in_dst_gap(prv, zone)):
            assert cal.next_after(t) == nxt
            assert cal.prev_at_or_before(t) == prv


@pytest.mark.parametrize("expr, tz, text", [
    ("41 3 * * 1-5", "Europe/Berlin", "weekdays at 03:41 Europe/Berlin"),
    ("*/15 * * * *", "UTC", "every 15 min"),
    ("51 * * * *", "UTC", "hourly at :51"),
    ("0 6,18 * * *", "UTC", "daily at 06:00 and 18:00 UTC"),
    ("0 9-17 * * 1-5", "UTC", "weekdays hourly at :00 from 09:00 to 17:00 UTC"),
    ("0 3 L * *", "UTC", "monthly on the last day at 03:00 UTC"),
    ("0 5 * * 6", "UTC", "weekly on Saturday at 05:00 UTC"),
])
def test_describe(expr: str, tz: str, text: str) -> None:
    assert Schedule.declared(expr, tz).describe() == text


def test_a_cron_that_never_fires_has_no_next_slot() -> None:
    assert Calendar.from_cron("0 0 30 2 *").next_after(1.7e9) is None


@pytest.mark.parametrize("bad", ["* * *", "61 * * * *", "a b c d e"])
def test_malformed_crons_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Calendar.from_cron(bad)


def test_schedule_round_trips_through_json() -> None:
    sch = Schedule.declared("41 3 * * 1-5", "Europe/Berlin", grace_s=600)
    for lag in (30, 45, 60, 90, 20, 35):
        sch.observe_lag(lag)
    sch.shift(3600)
    back = Schedule.from_json(json.loads(json.dumps(sch.to_json())))
    assert back.to_json() == sch.to_json()
    assert back.next_expected(1.75e9) == sch.next_expected(1.75e9)
    assert back.deadline(1.75e9) == sch.deadline(1.75e9)


def test_interval_schedule() -> None:
    sch = Schedule.declared(interval_s=6 * 3600, anchor=1000.0)
    assert sch.next_expected(1000.0) == 1000.0 + 6 * 3600
    assert sch.prev_expected(1000.0 + 7 * 3600) == 1000.0 + 6 * 3600
    assert sch.describe() == "every 6 h"


def test_learner_needs_eight_days_before_it_offers_a_calendar() -> None:
    lr = ScheduleLearner()
    for k in range(9 * 24):
        lr.observe(1767571200.0 + k * 3600 + 30)
        if k < 8 * 24:
            assert lr.learn() is None
    assert lr.learn() is not None


def test_irregular_starts_learn_nothing() -> None:
    rng = random.Random(1)
    lr = ScheduleLearner()
    t = 1767571200.0
    for _ in range(40):
        t += rng.uniform(600, 3 * 86400)
        lr.observe(t)
    assert lr.learn() is None


def test_a_schedule_learned_from_a_history_of_starts() -> None:
    rng = random.Random(3)
    t0 = 1767571200.0  # a Monday
    starts = [t0 + d * 86400 + 6 * 3600 + rng.expovariate(1 / 90) for d in range(28) if d % 7 < 5]
    sch = Schedule.learned(starts)
    assert sch is not None and sch.describe() == "weekdays at about 06:01 UTC"
    friday = t0 + 32 * 86400  # the Friday after the history
    assert sch.next_expected(friday + 7 * 3600) == pytest.approx(t0 + 35 * 86400 + 6 * 3600, abs=120)  # Monday
    assert 300 <= sch.deadline(0.0) <= 0.25 * 86400  # grace learned from the jitter, not the default
    assert Schedule.learned(starts[:5]) is None  # too short a history
