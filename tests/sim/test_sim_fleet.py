from __future__ import annotations

import graphlib
from collections import Counter
from datetime import UTC, datetime

import pytest
from croniter import croniter

from pipemon import sim
from pipemon.sim.fleet import compatible
from pipemon.sim.schedule import DAY, MINUTE, Cadence, Schedule


def test_same_seed_same_fleet_other_seed_other_fleet(fleet: sim.Fleet) -> None:
    assert sim.build_fleet(seed=0).pipelines == fleet.pipelines
    assert sim.build_fleet(seed=1).pipelines != fleet.pipelines


def test_default_fleet_size_teams_and_variety(fleet: sim.Fleet) -> None:
    assert len(fleet) >= 200
    assert len(fleet.teams) >= 6
    assert len(fleet.by_id) == len(fleet)  # ids are unique
    assert set(Counter(p.schedule.cadence for p in fleet.pipelines)) == set(Cadence)
    assert set(Counter(p.integration for p in fleet.pipelines)) == set(sim.Integration)
    assert {p.tier for p in fleet.pipelines} == {1, 2, 3}
    assert all("://" in p.namespace and p.id == f"{p.namespace}/{p.name}" for p in fleet.pipelines)
    assert all(dict(p.tags).keys() >= {"domain", "layer"} for p in fleet.pipelines)


def test_tasks_by_integration(fleet: sim.Fleet) -> None:
    for p in fleet.pipelines:
        if p.integration is sim.Integration.AIRFLOW:
            assert 2 <= len(p.tasks) <= 6 and {"extract", "load"} <= set(p.tasks)
        elif p.integration is sim.Integration.DBT:
            assert 2 <= len(p.tasks) <= 4
        else:
            assert p.tasks == ()
        assert len(p.behaviour.task_shares) == len(p.tasks)


def test_lineage_is_acyclic_deep_and_crosses_teams(fleet: sim.Fleet) -> None:
    graph = {p.index: set(p.upstream) for p in fleet.pipelines}
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    assert all(u < p.index for p in fleet.pipelines for u in p.upstream)

    depth: dict[int, int] = {}
    for p in fleet.pipelines:  # index order is topological
        depth[p.index] = 1 + max((depth[u] for u in p.upstream), default=-1)
    assert max(depth.values()) >= 3

    cross = [(u, p.index) for p in fleet.pipelines for u in p.upstream if fleet.pipelines[u].team != p.team]
    assert len(cross) >= 20
    assert len({(fleet.pipelines[u].team, fleet.pipelines[d].team) for u, d in cross}) >= 6


def test_lineage_is_carried_by_shared_datasets(fleet: sim.Fleet) -> None:
    producers = {(d.namespace, d.name): p.index for p in fleet.pipelines for d in p.outputs}
    assert len(producers) == sum(len(p.outputs) for p in fleet.pipelines)  # one producer per dataset
    for p in fleet.pipelines:
        read = {producers[(d.namespace, d.name)] for d in p.inputs if (d.namespace, d.name) in producers}
        assert read == set(p.upstream)
        for u in p.upstream:
            assert compatible(fleet.pipelines[u].schedule, p.schedule)


def test_every_pipeline_without_upstream_is_raw(fleet: sim.Fleet) -> None:
    assert all(p.upstream for p in fleet.pipelines if p.layer is not sim.Layer.RAW)


@pytest.mark.parametrize("schedule", [
    Schedule(Cadence.EVERY_15_MIN, 7),
    Schedule(Cadence.HOURLY, 25),
    Schedule(Cadence.DAILY, 30, (2,)),
    Schedule(Cadence.TWICE_DAILY, 0, (6, 18)),
    Schedule(Cadence.WEEKDAYS, 15, (7,)),
])
def test_schedule_slots_agree_with_cron(schedule: Schedule) -> None:
    start = int(sim.DEFAULT_START * 1000) + 17 * MINUTE  # not on a slot boundary
    slots = schedule.slots(start, start + 9 * DAY).tolist()
    it = croniter(schedule.cron, datetime.fromtimestamp(start / 1000 - 1, UTC))
    expected = [int(it.get_next(float) * 1000) for _ in range(len(slots))]
    assert slots == expected
    assert schedule.next_slot(slots[3] - 1) == slots[3]
    assert schedule.runs_per_day * 9 == pytest.approx(len(slots), abs=max(2, schedule.runs_per_day))


def test_large_fleet_scales(fleet: sim.Fleet) -> None:
    big = sim.build_fleet(seed=3, size=2000)
    assert len(big) == 2000 and len(big.by_id) == 2000
    assert all(u < p.index for p in big.pipelines for u in p.upstream)
