"""The seasonal metric baseline: each kind of deviation, the normal variation it must not flag, level
shifts absorbed within about a day of runs, month-end peaks, episodes and operator feedback."""
from __future__ import annotations

import math
import random

import pytest

from pipemon.engine.detect.metric import MetricBaseline
from tests.detect._data import DAY, HOUR, T0, daily_profile, weekly_profile

LINE = 4.0


def feed(b: MetricBaseline, points: list[tuple[float, float]]) -> list[tuple[int, float]]:
    """(index, z) of every reported observation."""
    out = []
    for k, (t, x) in enumerate(points):
        res, _, report = b.update(t, x, LINE)
        if report:
            assert res is not None
            out.append((k, res[0]))
    return out


def hourly_points(days: int, level: float = 1e5, noise: float = 0.05, seed: int = 3,
                  shape=lambda t: weekly_profile(t) * daily_profile(t)) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(t, level * shape(t) * math.exp(rng.gauss(0, noise)))
            for t in (T0 + h * HOUR + 60 for h in range(days * 24))]


def daily_points(days: int, level: float = 1e6, noise: float = 0.05, seed: int = 4, weekdays_only: bool = False,
                 shape=lambda t: weekly_profile(t, weekend=0.5, monday=1.0)) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    out = []
    for d in range(days):
        t = T0 + d * DAY + 2 * HOUR
        if weekdays_only and (t // DAY + 3) % 7 >= 5:
            continue
        out.append((t, level * shape(t) * math.exp(rng.gauss(0, noise))))
    return out


def with_anomaly(points: list[tuple[float, float]], at: int, factor: float, runs: int = 1) -> list[tuple[float, float]]:
    return [(t, x * factor if at <= k < at + runs else x) for k, (t, x) in enumerate(points)]


@pytest.mark.parametrize("factor, runs, direction", [
    (0.0, 1, -1),  # zero rows on a successful run: a silent failure
    (0.3, 1, -1),  # a partial load
    (0.5, 2, -1),  # a partial load over two runs
    (5.0, 1, 1),  # a duplicate load / a duration spike
    (0.1, 1, -1),  # "succeeded in 2 s when it takes 20 min"
])
@pytest.mark.parametrize("cadence", ["hourly", "daily"])
def test_each_deviation_is_reported_once(factor: float, runs: int, direction: int, cadence: str) -> None:
    points = hourly_points(21) if cadence == "hourly" else daily_points(90)
    at = len(points) - 30
    found = feed(MetricBaseline(), with_anomaly(points, at, factor, runs))
    assert [(k, z > 0) for k, z in found] == [(at, direction > 0)]


@pytest.mark.parametrize("make", [
    lambda: hourly_points(60),  # hour of day x weekends
    lambda: daily_points(210),  # weekends at half
    lambda: daily_points(210, weekdays_only=True, shape=lambda t: weekly_profile(t, monday=1.8)),  # Monday catch-up
    lambda: daily_points(210, shape=lambda t: weekly_profile(t) * (1 + (t - T0) / (200 * DAY))),  # a slow trend
    lambda: hourly_points(60, noise=0.15),  # a noisier pipeline
])
def test_normal_variation_is_not_flagged(make) -> None:
    assert feed(MetricBaseline(), make()) == []


def test_heavy_tailed_noise_rarely_alarms() -> None:
    """Student-t noise with 4 degrees of freedom: under one false alarm per 1,000 runs."""
    rng = random.Random(5)

    def t4() -> float:
        return rng.gauss(0, 1) / math.sqrt(sum(rng.gauss(0, 1) ** 2 for _ in range(4)) / 4) / math.sqrt(2)

    points = [(T0 + h * HOUR, 1e5 * daily_profile(T0 + h * HOUR) * math.exp(0.08 * t4())) for h in range(24 * 120)]
    assert len(feed(MetricBaseline(), points)) <= len(points) / 1000


@pytest.mark.parametrize("factor", [2.5, 0.4, 1.7])
@pytest.mark.parametrize("cadence, within", [("hourly", 24), ("daily", 5)])
def test_a_level_shift_is_absorbed_within_a_day_of_runs(factor: float, cadence: str, within: int) -> None:
    points = hourly_points(40) if cadence == "hourly" else daily_points(120)
    at = len(points) // 2
    found = feed(MetricBaseline(), with_anomaly(points, at, factor, runs=len(points)))
    assert all(k < at + within for k, _ in found), found  # flagged at most while adapting
    assert feed(MetricBaseline(), points[:at]) == []


def test_an_outage_that_was_absorbed_and_recovers_is_not_flagged_again() -> None:
    points = daily_points(150)
    at = 100
    found = feed(MetricBaseline(), with_anomaly(points, at, 0.3, runs=6))  # six runs: absorbed as a shift
    assert [k for k, _ in found] == [at]  # one finding, not a second one when the runs come back


def test_a_sustained_subtle_deviation_is_flagged() -> None:
    """Three runs at 0.65x: none is past the line alone, together they are."""
    points = daily_points(120, noise=0.05)
    b = MetricBaseline()
    feed(b, points[:100])
    singles = [b.score(t, x * 0.65) for t, x in points[100:103]]
    assert all(r is not None and abs(r[0]) < LINE for r in singles)
    found = feed(b, with_anomaly(points[100:], 0, 0.65, runs=3))
    assert found and found[0][0] <= 2


def test_month_end_peaks_are_flagged_at_the_first_month_end_only() -> None:
    def shape(t: float) -> float:
        d = __import__("datetime").datetime.fromtimestamp(t + DAY, __import__("datetime").timezone.utc)
        return weekly_profile(t) * (2.5 if d.day == 1 else 1.0)  # tomorrow is the 1st: the month's last day

    points = daily_points(240, shape=shape)
    found = feed(MetricBaseline(), points)
    assert len(found) <= 1, found


def test_common_zeros_are_a_normal_regime() -> None:
    rng = random.Random(6)
    points = [(T0 + h * HOUR, 0.0 if rng.random() < 0.3 else 1e4 * math.exp(rng.gauss(0, 0.05)))
              for h in range(24 * 30)]
    assert feed(MetricBaseline(), points) == []


def test_a_deviation_that_gets_much_worse_is_reported_again() -> None:
    points = daily_points(100)
    found = feed(MetricBaseline(), [(t, x * (0.3 if k == 80 else 0.0 if k == 81 else 1.0))
                                    for k, (t, x) in enumerate(points)])
    assert [k for k, _ in found] == [80, 81]  # partial load, then nothing at all


def test_generic_values_are_linear() -> None:
    rng = random.Random(7)
    points = [(T0 + k * 300, 20 + 5 * math.sin(k / 30) + rng.gauss(0, 0.5)) for k in range(3000)]
    points[2500] = (points[2500][0], -40.0)
    found = feed(MetricBaseline(log=False), points)
    assert [k for k, _ in found] == [2500]


def test_expected_feedback_adopts_the_new_level_from_the_next_run() -> None:
    points = daily_points(120)
    b = MetricBaseline()
    feed(b, points[:100])
    moved = with_anomaly(points[100:], 0, 3.0, runs=20)
    assert feed(b, moved[:1])  # flagged
    b.accept_current()  # "new normal"
    assert feed(b, moved[1:]) == []


def test_incident_feedback_keeps_a_long_deviation_out_of_the_baseline() -> None:
    points = daily_points(120)
    b = MetricBaseline()
    feed(b, points[:100])
    broken = with_anomaly(points[100:], 0, 0.3, runs=10)
    feed(b, broken[:1])
    b.hold_incident()  # a real incident: do not learn it as a level shift
    for t, x in broken[1:10]:
        res = b.score(t, x)
        assert res is not None and res[0] <= -LINE
        b.learn(t, x, flagged=True)


def test_band_and_upper_describe_the_alarm_line() -> None:
    b = MetricBaseline()
    feed(b, daily_points(60, shape=lambda t: 1.0))
    t = T0 + 61 * DAY + 2 * HOUR
    band = b.band(t, LINE)
    assert band is not None
    lo, exp, hi = band
    assert lo < exp < hi and 0.8e6 < exp < 1.2e6
    assert b.upper(t, LINE) == pytest.approx(hi)
    res = b.score(t, hi * 1.01)
    assert res is not None and res[0] > LINE
