"""A duration judged against the rows its run reported (engine/detect/coupling.py): the volume's noise,
holidays and level shifts are explained by the rows; what the rows do not explain is the duration's own."""
from __future__ import annotations

import datetime as dt
import json
import math
import random

import pytest

from pipemon import calendars
from pipemon.engine.detect import DetectorSuite, DetectSpec, Finding, FindingKind
from pipemon.engine.detect.coupling import Coupling
from tests.detect._data import DAY, HOUR, T0, Run, replay

US_2026 = calendars.holiday_days("US", (2026,))
THANKSGIVING = dt.date(2026, 11, 26)


def runs(n: int, step: float, beta: float = 0.8, rows_sd: float = 0.3, dur_sd: float = 0.04,
         rows_at: dict[int, float] | None = None, dur_at: dict[int, float] | None = None,
         rows_from: tuple[int, float] | None = None, t0: float = T0 + 2 * HOUR, seed: int = 3) -> list[Run]:
    """A job whose duration follows its rows (duration ~ rows ** beta) with little noise of its own, the
    rows noisy; `rows_at` / `dur_at` scale single runs, `rows_from` = (k, f) scales the rows from run k."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        r = 1e6 * math.exp(rng.gauss(0, rows_sd)) * (rows_at or {}).get(k, 1.0)
        if rows_from and k >= rows_from[0]:
            r *= rows_from[1]
        d = 600.0 * (r / 1e6) ** beta * math.exp(rng.gauss(0, dur_sd)) * (dur_at or {}).get(k, 1.0)
        out.append(Run(t0 + k * step + rng.expovariate(1 / 30.0), d, r, run_id=f"r{k:05d}"))
    return out


def findings(spec: DetectSpec, rs: list[Run]) -> list[tuple[int, Finding]]:
    s = DetectorSuite()
    s.configure("p", spec)
    index = {r.run_id: k for k, r in enumerate(rs)}
    return [(index.get(f.run_id or "", -1), f) for f in replay(s, "p", rs)
            if f.kind in (FindingKind.DURATION, FindingKind.RUNNING_LONG)]


DAILY = DetectSpec(cron="0 2 * * *")


def test_a_duration_spike_hidden_in_the_volumes_noise_is_caught_against_the_runs_rows() -> None:
    """x2.5 longer with the usual rows: alone, duration carries the rows' 0.3 noise and 2.5x is within it."""
    rs = runs(200, DAY, dur_at={150: 2.5})
    assert [k for k, _ in findings(DAILY, rs)] == [150]


def test_long_runs_explained_by_their_rows_are_not_flagged() -> None:
    """Volume alone moves the duration, 3 sd up and down: the rows explain it, no duration finding."""
    rs = runs(200, DAY, rows_at={120: math.exp(0.9), 140: math.exp(-0.9), 160: math.exp(0.9)})
    assert findings(DAILY, rs) == []


def test_a_volume_level_shift_carries_the_duration_with_it() -> None:
    """Rows x3 from run 100 on (a re-platformed table): the duration follows; no duration finding after the
    rows' new level is adopted (within their first four runs)."""
    rs = runs(200, HOUR, rows_sd=0.1, rows_from=(120, 3.0))
    assert all(k < 124 for k, _ in findings(DetectSpec(cron="0 * * * *"), rs))


@pytest.mark.parametrize("spike, flagged", [(1.0, False), (4.0, True)])
def test_on_a_holiday_a_short_run_for_low_rows_is_normal_and_a_long_one_is_not(spike: float,
                                                                               flagged: bool) -> None:
    """Thanksgiving at 0.3x rows runs 0.3 ** 0.8 as long: not running long, not flagged at the end; a run
    4x that long for the same rows is."""
    first = dt.date(2026, 6, 1)
    k_hol = (THANKSGIVING - first).days
    rs = runs(200, DAY, rows_sd=0.1, t0=(first - dt.date(1970, 1, 1)).days * DAY + 2 * HOUR,
              rows_at={k_hol: 0.3}, dur_at={k_hol: spike})
    got = [k for k, _ in findings(DetectSpec(cron="0 2 * * *", calendar="US", holidays=US_2026), rs)]
    assert (k_hol in got) is flagged
    assert all(k == k_hol for k in got)


def test_the_slope_needs_evidence_and_stays_in_bounds() -> None:
    c = Coupling()
    assert c.beta() == 0.0 and not c.ready()
    rng = random.Random(1)
    for _ in range(300):
        r = rng.gauss(0, 0.3)
        c.learn(0.7 * r + rng.gauss(0, 0.03), r, True)
    assert c.ready() and 0.6 < c.beta() < 0.8
    assert c.scale(0.02) < 0.2  # the duration's own noise (0.03 sd), not the volume's (0.21)
    flat = Coupling()
    for _ in range(300):  # no volume variation: nothing to learn the slope from
        flat.learn(rng.gauss(0, 0.2), 0.0, True)
    assert flat.beta() == 0.0
    back = Coupling.from_json(json.loads(json.dumps(c.to_json())))
    assert back.to_json() == c.to_json() and back.beta() == c.beta()


@pytest.mark.parametrize("runs_long, flagged", [(1, []), (3, [152])])
def test_runs_a_little_longer_than_their_rows_explain_are_flagged_as_a_streak(runs_long: int,
                                                                               flagged: list[int]) -> None:
    """x1.8 for the same rows is within the duration's own noise once (0.08 sd: no finding), not three times
    in a row: the streak's combined evidence, as the metric's own score does for sustained deviations."""
    rs = runs(200, DAY, dur_sd=0.08, dur_at={150 + k: 1.8 for k in range(runs_long)})
    assert [k for k, _ in findings(DAILY, rs)] == flagged
