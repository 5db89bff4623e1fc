from __future__ import annotations

import bisect
import statistics
from collections import defaultdict

from pipemon import sim
from pipemon.sim.schedule import DAY, to_ms

START = sim.DEFAULT_START
DAY_S = DAY / 1000


def quiet(fleet: sim.Fleet, days: float, window_days: float = 14) -> list[sim.RunRecord]:
    return list(sim.run_records(fleet, START, START + days * DAY_S, incidents=sim.NO_INCIDENTS,
                                window_days=window_days))


def test_fast_path_is_deterministic_and_independent_of_windowing(fleet: sim.Fleet,
                                                                 records: list[sim.RunRecord]) -> None:
    again = list(sim.run_records(fleet, START, START + 3 * DAY_S, window_days=0.25))
    assert sorted(again) == sorted(records)
    other_seed = list(sim.run_records(sim.build_fleet(seed=1), START, START + 3 * DAY_S))
    assert {r.run_id for r in other_seed}.isdisjoint({r.run_id for r in records})


def test_without_incidents_every_slot_runs_and_succeeds(fleet: sim.Fleet) -> None:
    runs = quiet(fleet, 2)
    slots = sum(len(p.schedule.slots(to_ms(START), to_ms(START + 2 * DAY_S))) for p in fleet.pipelines)
    assert len(runs) == slots
    assert len({r.run_id for r in runs}) == slots
    assert all(r.status is sim.RunStatus.SUCCESS and r.rows and r.bytes for r in runs)
    assert all(r.nominal_time <= r.start < r.end for r in runs)


def test_record_shape(records: list[sim.RunRecord]) -> None:
    r = records[0]
    assert isinstance(r, tuple) and len(r) == 8
    assert isinstance(r.pipeline, str) and isinstance(r.run_id, str) and isinstance(r.start, float)
    assert {x.status for x in records} <= {sim.RunStatus.SUCCESS, sim.RunStatus.FAILED, sim.RunStatus.ABORTED}
    assert all((x.rows is None) == (x.status is not sim.RunStatus.SUCCESS) for x in records)


def test_downstream_runs_start_after_the_upstream_run_they_wait_for(fleet: sim.Fleet) -> None:
    runs = quiet(fleet, 3)
    by_pipeline: dict[str, list[sim.RunRecord]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: r.nominal_time):
        by_pipeline[r.pipeline].append(r)
    checked = 0
    for p in fleet.pipelines:
        for u in p.upstream:
            ups = by_pipeline[fleet.pipelines[u].id]
            nominals = [r.nominal_time for r in ups]
            for r in by_pipeline[p.id]:
                i = bisect.bisect_right(nominals, r.nominal_time) - 1
                if i >= 0:
                    assert r.start >= ups[i].end + p.behaviour.poll_s - 0.001
                    checked += 1
    assert checked > 1000


def test_volume_has_weekly_seasonality(fleet: sim.Fleet) -> None:
    """Weekends are quieter; Monday's daily batches catch up."""
    runs = quiet(fleet, 14)
    rows: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in runs:
        rows[(r.pipeline, int((r.nominal_time // DAY_S + 3) % 7))].append(r.rows or 0)
    weekend_lower = monday_higher = weekends = daily = 0
    for p in fleet.pipelines:
        mean = {d: statistics.fmean(rows[(p.id, d)]) for d in range(7) if rows[(p.id, d)]}
        if 5 in mean:  # weekday-only pipelines have no weekend
            weekends += 1
            weekend_lower += mean[5] < mean[2]
        if p.schedule.cadence is sim.Cadence.DAILY:
            daily += 1
            monday_higher += mean[0] > mean[2]
    assert weekends > 0.8 * len(fleet) and weekend_lower >= 0.9 * weekends
    assert monday_higher >= 0.9 * daily


def test_durations_and_rows_vary_realistically(fleet: sim.Fleet) -> None:
    runs = quiet(fleet, 7)
    durations = [r.end - r.start for r in runs]
    assert min(durations) < 60 and max(durations) > 3600  # seconds to hours
    by_pipeline: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        by_pipeline[r.pipeline].append(r.end - r.start)
    spread = [statistics.pstdev(d) / statistics.fmean(d) for d in by_pipeline.values() if len(d) > 3]
    assert 0.03 < statistics.median(spread) < 0.6  # noisy but learnable


def test_fast_path_count_matches_the_schedule_for_a_large_fleet() -> None:
    big = sim.build_fleet(seed=5, size=3000)
    n = sum(1 for _ in sim.run_records(big, START, START + DAY_S, incidents=sim.NO_INCIDENTS))
    assert n == sum(len(p.schedule.slots(to_ms(START), to_ms(START + DAY_S))) for p in big.pipelines)
    assert abs(n - big.runs_per_day()) < 0.05 * n
