"""Drift the detectors must absorb without paging (issue 15), and the anomalies they must still catch there:
public holidays with a calendar, month-end peaks on the last business day, steady trends, level shifts,
and schedules moved earlier or later."""
from __future__ import annotations

import datetime as dt
import math
import random

import pytest

from pipemon import calendars, config
from pipemon.engine.detect import DetectorSuite, DetectSpec, FindingKind, RunObservation, RunStatus
from pipemon.engine.detect.calendar import (
    HOLIDAY,
    LAST_BUSINESS,
    LAST_DAY,
    MONTH_END,
    MONTH_START,
    Calendar,
    day_number,
)
from pipemon.engine.detect.metric import MetricBaseline
from pipemon.engine.judge import Judge
from pipemon.errors import ConfigError
from tests.detect._data import DAY, HOUR, daily, hourly, replay, series
from tests.detect.test_cadence import cadence

THANKSGIVING = dt.date(2026, 11, 26)
NEXT_THURSDAY = dt.date(2026, 12, 3)
US_2026 = calendars.holiday_days("US", (2026,))


def at(d: dt.date, hour: float = 2.0) -> float:
    return day_number(d) * DAY + hour * HOUR


def daily_rows(first: dt.date, last: dt.date, dip: dict[dt.date, float],
               holidays: frozenset[int] = frozenset(), holiday_factor: float = 1.0,
               seed: int = 1) -> list[tuple[float, float]]:
    """(time, rows) of a daily job at 02:00 with weekends at 0.6x, 8 % noise, `dip` days scaled."""
    rng = random.Random(seed)
    out = []
    d = first
    while d <= last:
        x = 1e6 * (0.6 if d.weekday() >= 5 else 1.0) * math.exp(rng.gauss(0, 0.08)) * dip.get(d, 1.0)
        if day_number(d) in holidays and d not in dip:
            x *= holiday_factor
        out.append((at(d), x))
        d += dt.timedelta(days=1)
    return out


def volume_findings(spec: DetectSpec, points: list[tuple[float, float]]) -> list[dt.date]:
    s = DetectorSuite()
    s.configure("p", spec)
    out = []
    for k, (t, x) in enumerate(points):
        run = RunObservation(f"r{k}", t, t + 600, RunStatus.SUCCEEDED, 600.0, x)
        out += [dt.datetime.fromtimestamp(f.time, dt.UTC).date() for f in s.observe_run("p", run, t + 600)
                if f.kind is FindingKind.VOLUME]
    return out


US = DetectSpec(cron="0 2 * * *", calendar="US", holidays=US_2026)


def test_a_thanksgiving_dip_is_normal_with_a_us_calendar_and_the_next_thursday_it_is_not() -> None:
    """The conformance case: 70 % down on Thanksgiving is the holiday; the same dip a week later is not."""
    points = daily_rows(dt.date(2026, 6, 1), dt.date(2026, 12, 20), {THANKSGIVING: 0.3, NEXT_THURSDAY: 0.3})
    found = volume_findings(US, points)
    assert THANKSGIVING not in found
    assert NEXT_THURSDAY in found


def test_without_a_calendar_a_holiday_dip_is_flagged_as_before() -> None:
    points = daily_rows(dt.date(2026, 6, 1), dt.date(2026, 12, 20), {THANKSGIVING: 0.3})
    assert THANKSGIVING in volume_findings(DetectSpec(cron="0 2 * * *"), points)


def test_holidays_that_are_always_low_stay_quiet_and_a_partial_load_on_one_is_still_caught() -> None:
    """Every US holiday at 0.3x is learned as the holiday's level; 0.03x on Thanksgiving is a real anomaly."""
    quiet = daily_rows(dt.date(2026, 1, 5), dt.date(2026, 12, 31), {}, US_2026, holiday_factor=0.3)
    assert volume_findings(US, quiet) == []
    partial = daily_rows(dt.date(2026, 1, 5), dt.date(2026, 12, 31), {THANKSGIVING: 0.03}, US_2026, 0.3)
    assert volume_findings(US, partial) == [THANKSGIVING]


def test_zero_rows_on_a_holiday_is_still_flagged() -> None:
    points = daily_rows(dt.date(2026, 6, 1), dt.date(2026, 12, 20), {THANKSGIVING: 0.0})
    assert THANKSGIVING in volume_findings(US, points)


@pytest.mark.parametrize("day, kind", [
    (dt.date(2026, 11, 26), HOLIDAY),  # Thanksgiving
    (dt.date(2026, 1, 30), LAST_BUSINESS),  # a Friday; the month ends on a Saturday
    (dt.date(2026, 1, 31), LAST_DAY),
    (dt.date(2026, 3, 31), MONTH_END),  # a Tuesday
    (dt.date(2026, 4, 1), MONTH_START),
    (dt.date(2026, 4, 2), -1),
    (dt.date(2026, 12, 31), MONTH_END),
    (dt.date(2026, 7, 2), -1),  # July 3rd, a Friday, is the observed Independence Day ...
    (dt.date(2026, 7, 31), MONTH_END),
])
def test_day_kinds(day: dt.date, kind: int) -> None:
    assert Calendar(US_2026).day_kind(day_number(day)) == kind


def test_a_holiday_on_the_last_weekday_moves_the_last_business_day_earlier() -> None:
    cal = Calendar({day_number(dt.date(2026, 12, 31))})  # (a made-up holiday on New Year's Eve)
    assert cal.day_kind(day_number(dt.date(2026, 12, 30))) == LAST_BUSINESS
    assert cal.day_kind(day_number(dt.date(2026, 12, 31))) == HOLIDAY


@pytest.mark.parametrize("cadence_h", [24, 1])
def test_month_end_peaks_on_the_last_business_day_are_learned_not_flagged(cadence_h: int) -> None:
    """x2.5 on the last business day of each month (calendar or weekend month-end alike), daily and hourly;
    a x8 spike on one of them is still an anomaly."""
    cal = Calendar()
    rng = random.Random(3)
    t0, t1 = at(dt.date(2026, 1, 5), 0), at(dt.date(2026, 9, 1), 0)
    spike = at(dt.date(2026, 7, 31), 0)  # a Friday, the last business day
    points = []
    t = t0 + 1800
    while t < t1:
        day = int(t // DAY)
        peak = cal.day_kind(day) in (LAST_BUSINESS, MONTH_END)
        x = 1e6 * math.exp(rng.gauss(0, 0.08)) * (2.5 if peak else 1.0)
        if spike <= t < spike + 3 * HOUR:
            x *= 8
        points.append((t, x))
        t += cadence_h * HOUR
    b = MetricBaseline()
    flagged = [t for t, x in points if b.update(t, x, 4.0)[2]]
    assert len(flagged) == 1 and spike <= flagged[0] < spike + 3 * HOUR


@pytest.mark.parametrize("per_30d", [1.25, 0.85])
def test_a_steady_trend_is_followed_and_a_partial_load_on_top_is_caught(per_30d: float) -> None:
    rng = random.Random(5)
    slope = math.log(per_30d) / (30 * DAY)
    t0 = at(dt.date(2026, 1, 5))
    points = [(t0 + k * DAY, 1e6 * math.exp(slope * k * DAY + rng.gauss(0, 0.08))) for k in range(365)]
    points[300] = (points[300][0], points[300][1] * 0.3)
    b = MetricBaseline()
    flagged = [k for k, (t, x) in enumerate(points) if b.update(t, x, 4.0)[2]]
    assert flagged == [300]


@pytest.mark.parametrize("factor", [0.5, 3.0])
def test_a_level_shift_is_normal_within_about_a_day_of_runs(factor: float) -> None:
    """A table re-platformed to half or three times its rows: only runs of the first day may be flagged."""
    rng = random.Random(7)
    t0 = at(dt.date(2026, 1, 5), 0)
    points = [(t0 + h * HOUR, 1e5 * math.exp(rng.gauss(0, 0.1)) * (factor if h >= 24 * 30 else 1.0))
              for h in range(24 * 45)]
    b = MetricBaseline()
    flagged = [h for h, (t, x) in enumerate(points) if b.update(t, x, 4.0)[2]]
    assert all(24 * 30 <= h < 24 * 31 for h in flagged)


@pytest.mark.parametrize("move_s", [-20 * 60.0, -3 * HOUR])
def test_a_learned_schedule_moved_earlier_is_absorbed_without_alarms(move_s: float) -> None:
    """Hourly by minutes, daily by hours: early starts are the next slot's runs, then the phase moves."""
    step = HOUR if abs(move_s) < HOUR else DAY
    slots = [at(dt.date(2026, 1, 5), 2) + k * step for k in range(24 * 20 if step == HOUR else 80)]
    runs = series([s + (move_s if k >= len(slots) // 2 else 0) for k, s in enumerate(slots)], jitter_s=20.0)
    s = DetectorSuite()
    assert cadence(replay(s, "p", runs)) == []
    sch = s.schedule("p")
    assert sch is not None
    assert abs(sch.prev_expected(runs[-1].start + 600) - runs[-1].start) < 600  # re-phased


# ------------------------------------------------------------------------------------------- config edge
def test_a_pipeline_rule_names_its_calendar_and_the_engine_gets_its_holidays() -> None:
    settings = config.loads('pipelines:\n  - match: "shop/*"\n    calendar: US\n')
    spec = Judge(settings, calendars.lookup(at(dt.date(2026, 6, 1)))).spec_for("shop/orders")
    assert spec.calendar == "US" and day_number(THANKSGIVING) in spec.holidays
    assert Judge(settings).spec_for("other/x").holidays == frozenset()


@pytest.mark.parametrize("name, hint", [("XX", "unknown calendar 'XX'"), ("us", "upper case")])
def test_an_unknown_calendar_is_a_config_error_naming_it(name: str, hint: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.loads(f'pipelines:\n  - match: "shop/*"\n    calendar: {name}\n')
    assert hint in str(e.value) and "calendar" in str(e.value)


def test_a_team_names_the_calendar_of_its_pipelines_and_a_rule_still_wins() -> None:
    settings = config.loads('teams: [{name: shop, calendar: US}, {name: ops}]\n'
                            'pipelines:\n  - match: "shop/*"\n    team: shop\n'
                            '  - match: "uk/*"\n    team: shop\n    calendar: UK\n')
    owners = {"shop/orders": "shop", "uk/orders": "shop", "ops/x": "ops"}
    ev = Judge(settings, calendars.lookup(at(dt.date(2026, 6, 1))), team_of=owners.get)
    spec = ev.spec_for("shop/orders")
    assert spec.calendar == "US" and day_number(THANKSGIVING) in spec.holidays
    assert ev.spec_for("uk/orders").calendar == "UK"        # the pipeline's own rule first
    assert ev.spec_for("ops/x").calendar is None and not ev.spec_for("ops/x").holidays  # a team without one


def test_a_teams_unknown_calendar_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as e:
        config.loads("teams: [{name: shop, calendar: XX}]\n")
    assert "unknown calendar 'XX'" in str(e.value) and "teams" in str(e.value)


# ------------------------------------------------------------------------------------- moves and month-ends
def test_a_schedule_moved_later_than_the_grace_raises_one_late_not_one_per_slot() -> None:
    """Nothing tells a move from a late run at the first deadline; after that late start the next run is owed
    that much later, so the move costs one LATE, not one a slot until the re-phase."""
    slots = daily(80)
    runs = series([s + (4 * HOUR if k >= 40 else 0) for k, s in enumerate(slots)])
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * *"))
    assert [k for k, _ in cadence(replay(s, "p", runs))] == [FindingKind.LATE]
    assert "moved +4 h" in s.schedule("p").describe()


def test_a_late_run_still_leaves_the_next_days_missing_run_caught() -> None:
    runs = series(daily(60))
    runs[40].start += 5 * HOUR
    del runs[41]
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * *"))
    assert [k for k, _ in cadence(replay(s, "p", runs))] == [FindingKind.LATE, FindingKind.LATE]


def test_an_hourly_move_within_the_grace_is_re_phased_not_learned_as_start_lag() -> None:
    """+15 min on a punctual hourly job is within its learned grace: absorbed as start lag it would leave
    little grace above it (the grace is capped at half an interval); it is a move."""
    slots = hourly(20)
    runs = series([s + (15 * 60 if k >= 24 * 10 else 0) for k, s in enumerate(slots)], jitter_s=60.0)
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 * * * *"))
    assert cadence(replay(s, "p", runs)) == []
    sch = s.schedule("p")
    assert 14 * 60 <= sch.offset_s <= 18 * 60 and sch.lag_loc < 5 * 60  # (the move, plus the usual jitter)


@pytest.mark.parametrize("first", [dt.date(2026, 1, 5), dt.date(2025, 12, 1)])
def test_a_first_month_end_peak_is_learned_so_the_next_one_is_normal(first: dt.date) -> None:
    """A weekday job at x2.2 on the month's last business day: the first peak is normal (MONTH_END_SLACK) and
    learned as far as that, so the second, a month later, is not a page either (it was, clipped at the band
    edge of a quiet metric). From December the first is a month's last day (Wed 31st), the next a last
    business day before a weekend (Fri 30th): one peak, two day kinds, the second borrows the first's."""
    cal = Calendar()
    rng = random.Random(1)
    b = MetricBaseline()
    flagged = []
    d = first
    while d < first + dt.timedelta(days=150):
        if d.weekday() < 5:
            peak = cal.day_kind(day_number(d)) in (LAST_BUSINESS, MONTH_END)
            monday = 1.8 if d.weekday() == 0 else 1.0
            x = 1e6 * math.exp(rng.gauss(0, 0.03)) * (2.2 if peak else 1.0) * monday
            if b.update(at(d), x, 4.0)[2]:
                flagged.append(d)
        d += dt.timedelta(days=1)
    assert flagged == []


# ------------------------------------------------------------------------------------ holidays and the clock
def weekday_runs(skip: frozenset[int]) -> list:
    slots = [t for t in daily(360, at_s=2 * HOUR, weekdays_only=True) if int(t // DAY) not in skip]
    return series(slots)


def test_a_weekday_job_that_skips_public_holidays_is_late_on_the_first_only() -> None:
    """It names its calendar: the first holiday without a run is reported (a job may run on holidays), the
    following ones are excused once it has shown that it skips them."""
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * 1-5", calendar="US", holidays=US_2026))
    found = cadence(replay(s, "p", weekday_runs(US_2026)))
    assert [k for k, _ in found] == [FindingKind.LATE]
    assert dt.datetime.fromtimestamp(found[0][1], dt.UTC).date() == dt.date(2026, 1, 19)  # MLK day
    without = DetectorSuite()
    without.configure("p", DetectSpec(cron="0 2 * * 1-5"))  # no calendar: every skipped holiday is late
    assert len(cadence(replay(without, "p", weekday_runs(US_2026)))) >= 8


def test_a_job_that_runs_on_holidays_is_still_late_when_a_holiday_run_is_missing() -> None:
    thanksgiving = day_number(THANKSGIVING)
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * 1-5", calendar="US", holidays=US_2026))
    found = cadence(replay(s, "p", weekday_runs(frozenset({thanksgiving}))))
    assert [(k, int(t // DAY)) for k, t in found] == [(FindingKind.LATE, thanksgiving)]


def test_a_month_end_kind_seen_the_first_time_keeps_the_peak_it_borrowed() -> None:
    """An hourly job with little noise peaks x2.5 on the last business day: January's and February's were the
    Friday before a weekend month-end, March's is the 31st itself (a Tuesday). Its first runs borrow the
    learned peak; the next ones must not expect half of it (the new kind's own offset, learned from 0)."""
    cal = Calendar()
    rng = random.Random(4)
    t0, t1 = at(dt.date(2026, 1, 5), 0), at(dt.date(2026, 4, 10), 0)
    points = []
    t = t0 + 1800
    while t < t1:
        peak = cal.day_kind(int(t // DAY)) in (LAST_BUSINESS, MONTH_END)
        points.append((t, 1e6 * math.exp(rng.gauss(0, 0.03)) * (2.5 if peak else 1.0)))
        t += HOUR
    b = MetricBaseline()
    march_31 = at(dt.date(2026, 3, 31), 0)
    assert [t for t, x in points if b.update(t, x, 4.0)[2] and t >= march_31 - DAY] == []
