from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from pipemon import sim
from pipemon.clock import FakeClock

START = sim.DEFAULT_START
HOUR_S = 3600.0


def times(events: list[dict], key: str = "eventTime") -> list[float]:
    return [datetime.fromisoformat(e[key]).timestamp() for e in events]


def test_events_are_in_time_order(events: list[dict]) -> None:
    t = times(events)
    assert t == sorted(t)
    assert t[0] >= START and t[-1] < START + 2 * 86400


def test_live_feed_equals_the_backfill(fleet: sim.Fleet, events: list[dict]) -> None:
    """An accelerated clock polled at uneven steps hands out the same stream, nothing twice."""
    clock = FakeClock(START)
    feeder = sim.Feeder(fleet, START)
    live: list[dict] = []
    step = 0
    while clock.now() < START + 6 * HOUR_S:
        live += feeder.due(clock.now())
        step += 1
        clock.advance(37.0 * (step % 50 + 1))
    expected = [e for e, t in zip(events, times(events), strict=True) if t <= feeder.position - 0.001]
    assert live == expected
    assert all(t <= feeder.position for t in times(live))


def test_history_then_due_continues_without_gaps(fleet: sim.Fleet, events: list[dict]) -> None:
    feeder = sim.Feeder(fleet, START)
    backfill = list(feeder.history(START, START + 3 * HOUR_S))
    assert feeder.position == START + 3 * HOUR_S
    live = feeder.due(START + 5 * HOUR_S)
    expected = [e for e, t in zip(events, times(events), strict=True) if t <= START + 5 * HOUR_S]
    assert backfill + live == expected
    assert feeder.due(START + 4 * HOUR_S) == []  # the clock going back hands out nothing
    with pytest.raises(ValueError, match="already handed out"):
        feeder.history(START, START + 6 * HOUR_S)


def test_history_can_skip_ahead(fleet: sim.Fleet, events: list[dict]) -> None:
    feeder = sim.Feeder(fleet, START)
    later = list(feeder.history(START + 20 * HOUR_S, START + 21 * HOUR_S))
    expected = [e for e, t in zip(events, times(events), strict=True)
                if START + 20 * HOUR_S <= t < START + 21 * HOUR_S]
    assert later == expected


def test_events_agree_with_the_fast_path(events: list[dict], records: list[sim.RunRecord]) -> None:
    ended = {e["run"]["runId"]: e for e in events
             if e["eventType"] != "START" and "parent" not in e["run"]["facets"]}
    fast = {r.run_id: r for r in records}
    assert ended.keys() <= fast.keys()
    for run_id, e in list(ended.items())[:3000]:
        r = fast[run_id]
        assert abs(datetime.fromisoformat(e["eventTime"]).timestamp() - r.end) < 0.001
        assert e["eventType"] == {sim.RunStatus.SUCCESS: "COMPLETE", sim.RunStatus.FAILED: "FAIL",
                                  sim.RunStatus.ABORTED: "ABORT"}[r.status]
        if r.rows is not None:
            assert sum(o["outputFacets"]["outputStatistics"]["rowCount"] for o in e["outputs"]) == r.rows


NATIVE_KEYS = {"namespace", "name", "run_id", "type", "event_time", "event_id", "team", "nominal_time"}


def test_native_format(fleet: sim.Fleet) -> None:
    feeder = sim.Feeder(fleet, START, fmt="native")
    native = list(feeder.history(START, START + 8 * HOUR_S))
    assert native
    for e in native:
        assert e.keys() >= NATIVE_KEYS
        assert e["type"] in ("start", "complete", "fail", "abort")
        assert ("parent" in e) != ("inputs" in e)
        assert ("metrics" in e) == (e["type"] == "complete" and "parent" not in e)
        assert ("error" in e) == (e["type"] in ("fail", "abort"))
    assert len({e["event_id"] for e in native}) == len(native)
    assert times(native, "event_time") == sorted(times(native, "event_time"))
    complete = next(e for e in native if "metrics" in e)
    assert complete["metrics"]["rows"] >= 0 and complete["metrics"]["bytes"] >= 0


def test_native_feed_is_what_the_native_door_accepts(fleet: sim.Fleet) -> None:
    """The demo's native stream goes through `POST /api/v1/events` as it is, lineage included."""
    from pipemon.ingest import native as door
    feeder = sim.Feeder(fleet, START, fmt="native")
    batch = list(feeder.history(START, START + 8 * HOUR_S))[:2000]
    events = door.parse(json.dumps(batch).encode(), START)
    assert len(events) == len(batch)
    with_lineage = [(e, ev) for e, ev in zip(batch, events, strict=True) if e.get("outputs")]
    assert with_lineage
    for e, ev in with_lineage:
        assert ev.outputs == tuple(e["outputs"]) and all("/" in d for d in ev.outputs)


def test_export_writes_sorted_json_lines_and_ground_truth(tmp_path: Path) -> None:
    summary = sim.export(tmp_path / "events.jsonl", days=1, seed=2, pipelines=200)
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert summary.events == len(lines) > 1000
    parsed = [json.loads(line) for line in lines]
    assert times(parsed) == sorted(times(parsed))
    truth = [json.loads(line) for line in (tmp_path / "events.incidents.jsonl").read_text().splitlines()]
    assert summary.incidents == len(truth)
    assert {i["kind"] for i in truth} == {k.value for k in sim.IncidentKind}
    again = sim.export_incidents(tmp_path / "truth.jsonl", days=1, seed=2, pipelines=200)
    assert [i.to_dict() for i in again] == truth
