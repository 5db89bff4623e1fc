from __future__ import annotations

import statistics
from collections import defaultdict

import pytest

from pipemon import sim
from pipemon.sim.incidents import Planner
from pipemon.sim.schedule import DAY, to_ms

START = sim.DEFAULT_START
DAY_S = DAY / 1000


def runs_by_pipeline(records: list[sim.RunRecord]) -> dict[str, dict[float, sim.RunRecord]]:
    out: dict[str, dict[float, sim.RunRecord]] = defaultdict(dict)
    for r in records:
        out[r.pipeline][r.nominal_time] = r
    return out


def only(truth: list[sim.Incident], kind: sim.IncidentKind) -> sim.Incident:
    return next(i for i in truth if i.kind is kind)


def test_every_kind_happens_in_the_first_day_of_the_default_demo(truth: list[sim.Incident]) -> None:
    first_day = [i for i in truth if i.start < START + DAY_S]
    assert {i.kind for i in first_day} == set(sim.IncidentKind)


def test_plan_is_deterministic_and_rate_is_configurable(fleet: sim.Fleet) -> None:
    a, b = (Planner(fleet, to_ms(START)).incidents(to_ms(START), to_ms(START + 10 * DAY_S)) for _ in range(2))
    assert a == b
    quiet = Planner(fleet, to_ms(START), sim.NO_INCIDENTS)
    assert quiet.incidents(to_ms(START), to_ms(START + 10 * DAY_S)) == []
    busy = sim.IncidentSettings(rate=0.1, showcase=False)
    many = Planner(fleet, to_ms(START), busy).incidents(to_ms(START), to_ms(START + 10 * DAY_S))
    assert len(many) > 2 * len(a) - 9
    assert all(i.id.startswith("inc-0") for i in many)


def test_showcase_can_start_later(fleet: sim.Fleet) -> None:
    later = sim.IncidentSettings(rate=0.0, showcase_after=3 * DAY_S)
    truth = Planner(fleet, to_ms(START), later).incidents(to_ms(START), to_ms(START + 5 * DAY_S))
    assert {i.kind for i in truth} == set(sim.IncidentKind)
    assert min(i.start for i in truth) >= START + 3 * DAY_S


def test_ground_truth_is_serialisable(truth: list[sim.Incident]) -> None:
    d = truth[0].to_dict()
    assert {"id", "kind", "pipelines", "start", "end", "detail", "task", "downstream"} <= d.keys()
    failure = only(truth, sim.IncidentKind.FAILURE).to_dict()
    assert failure["error"]["type"] and failure["error"]["message"]


def test_incidents_show_in_the_runs(fleet: sim.Fleet, truth: list[sim.Incident],
                                    records: list[sim.RunRecord]) -> None:
    runs = runs_by_pipeline(records)

    def run(i: sim.Incident, t: float | None = None) -> sim.RunRecord:
        return runs[i.pipelines[0]][i.start if t is None else t]

    def same_time_next_day(i: sim.Incident) -> sim.RunRecord:
        return runs[i.pipelines[0]][i.start + DAY_S]

    failure = only(truth, sim.IncidentKind.FAILURE)
    assert run(failure).status is sim.RunStatus.FAILED and run(failure).rows is None

    burst = only(truth, sim.IncidentKind.FAILURE_BURST)
    assert len(burst.pipelines) >= 2
    for pid in burst.pipelines:
        hit = [r for t, r in runs[pid].items() if burst.start <= t <= burst.end]
        assert hit and all(r.status is sim.RunStatus.FAILED for r in hit)

    hung = only(truth, sim.IncidentKind.HUNG_RUN)
    normal = statistics.median(r.end - r.start for r in runs[hung.pipelines[0]].values())
    assert run(hung).status is not sim.RunStatus.SUCCESS and run(hung).end - run(hung).start > 5 * normal

    late = only(truth, sim.IncidentKind.LATE_UPSTREAM)
    assert run(late).start - late.start > 25 * 60
    assert late.downstream

    missing = only(truth, sim.IncidentKind.MISSING_RUN)
    assert missing.start not in runs[missing.pipelines[0]]

    drop = only(truth, sim.IncidentKind.VOLUME_DROP)
    assert run(drop).rows <= 0.45 * same_time_next_day(drop).rows
    spike = only(truth, sim.IncidentKind.VOLUME_SPIKE)
    assert run(spike).rows >= 2 * same_time_next_day(spike).rows
    slow = only(truth, sim.IncidentKind.DURATION_SPIKE)
    usual = same_time_next_day(slow)
    assert run(slow).end - run(slow).start >= 2 * (usual.end - usual.start)


def test_late_upstream_makes_its_downstream_late(fleet: sim.Fleet, truth: list[sim.Incident],
                                                  records: list[sim.RunRecord]) -> None:
    runs = runs_by_pipeline(records)
    late = only(truth, sim.IncidentKind.LATE_UPSTREAM)
    upstream_run = runs[late.pipelines[0]][late.start]
    up = fleet.by_id[late.pipelines[0]]
    waited = [r for c in fleet.downstream[up.index] for r in runs[fleet.pipelines[c].id].values()
              if r.start >= upstream_run.end and r.start - r.nominal_time > 20 * 60]
    assert waited, "some downstream run should have waited for the late upstream run"


def test_failure_skips_downstream_runs(fleet: sim.Fleet, truth: list[sim.Incident]) -> None:
    missing = only(truth, sim.IncidentKind.MISSING_RUN)
    assert missing.downstream
    full = list(sim.run_records(fleet, START, START + 2 * DAY_S, incidents=sim.NO_INCIDENTS))
    actual = list(sim.run_records(fleet, START, START + 2 * DAY_S))
    skipped = {(r.pipeline, r.nominal_time) for r in full} - {(r.pipeline, r.nominal_time) for r in actual}
    assert any(pid in missing.downstream for pid, _ in skipped)


@pytest.mark.parametrize("kind", list(sim.IncidentKind))
def test_each_kind_can_be_drawn_at_random(fleet: sim.Fleet, kind: sim.IncidentKind) -> None:
    settings = sim.IncidentSettings(rate=0.05, showcase=False, weights=((kind, 1.0),))
    truth = Planner(fleet, to_ms(START), settings).incidents(to_ms(START), to_ms(START + 3 * DAY_S))
    assert truth and {i.kind for i in truth} == {kind}
