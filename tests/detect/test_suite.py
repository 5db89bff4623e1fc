"""DetectorSuite: the clock, running-long, findings' evidence, feedback and restarts."""
from __future__ import annotations

import json

import pytest

from pipemon.engine.detect import (
    DetectorSuite,
    DetectSpec,
    Direction,
    FindingKind,
    RunObservation,
    RunStatus,
    Verdict,
)
from tests.detect._data import DAY, HOUR, T0, daily, hourly, replay, series


def test_a_tick_with_nothing_due_touches_nothing() -> None:
    s = DetectorSuite()
    for k in range(2000):
        s.configure(f"p{k}", DetectSpec(cron="0 * * * *"))
        s.observe_start(f"p{k}", "r0", T0 + 10, T0 + 10)
    heap_before = list(s._heap)
    assert s.tick(T0 + 20) == []
    assert s._heap == heap_before  # nothing was due, nothing was popped
    assert s.next_due() is not None and s.next_due() > T0 + 20


def test_a_run_running_long_is_flagged_while_it_runs_and_not_again_when_it_ends() -> None:
    runs = series(daily(40), duration=lambda t: 1200.0)
    runs[35].duration_s = 20 * HOUR
    s = DetectorSuite()
    found = replay(s, "p", runs)
    longs = [f for f in found if f.kind is FindingKind.RUNNING_LONG]
    assert len(longs) == 1 and found == longs
    f = longs[0]
    assert runs[35].start < f.time < runs[35].start + 3 * HOUR  # during the run, not at its end
    assert f.metric == "duration_s" and f.observed is not None and f.upper is not None
    assert f.observed == pytest.approx(f.upper)  # raised as it crossed the line


def test_declared_max_duration_works_from_the_first_run() -> None:
    s = DetectorSuite()
    s.configure("p", DetectSpec(max_duration_s=HOUR))
    s.observe_start("p", "r1", T0, T0)
    assert s.tick(T0 + 0.5 * HOUR) == []
    found = s.tick(T0 + 2 * HOUR)
    assert [f.kind for f in found] == [FindingKind.RUNNING_LONG]
    assert found[0].time == T0 + HOUR  # stamped when it became due
    assert "declared max" in found[0].explanation


def test_findings_carry_their_evidence() -> None:
    runs = series(daily(60), rows=lambda t: 1.1e6, noise=0.03)
    runs[55].rows = 0.0
    found = replay(DetectorSuite(), "p", runs)
    assert len(found) == 1
    f = found[0]
    assert (f.kind, f.metric, f.direction, f.observed) == (FindingKind.VOLUME, "rows", Direction.LOW, 0.0)
    assert f.lower is not None and f.upper is not None and f.expected is not None
    assert f.lower < f.expected < f.upper and 1e6 < f.expected < 1.2e6
    assert f.score >= 4.0 and f.run_id == runs[55].run_id
    assert f.explanation.startswith("rows 0 on a successful run, expected 1.1M (")
    assert f.explanation.endswith(" run")  # "... for a Tuesday run"
    d = f.to_dict()
    assert json.loads(json.dumps(d)) == d and d["kind"] == "volume" and d["ts"].endswith("Z")


def test_failed_runs_do_not_teach_duration_or_rows() -> None:
    runs = series(daily(60), rows=lambda t: 1e6)
    for r in runs[40:43]:
        r.status, r.duration_s = RunStatus.FAILED, 5.0
    found = replay(DetectorSuite(), "p", runs)
    assert [f.kind for f in found] == [FindingKind.FAILURE_RATE]


def test_a_completion_without_a_start_still_counts_for_the_schedule() -> None:
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 * * * *"))
    for k, r in enumerate(series(hourly(2), duration=lambda t: 60.0)):  # (a completion after the deadline is late)
        end = r.start + r.duration_s
        assert s.tick(end) == []
        s.observe_run("p", RunObservation(f"r{k}", r.start, end, RunStatus.SUCCEEDED, r.duration_s, r.rows), end)


def test_sensitivity_trades_recall_for_precision() -> None:
    runs = series(daily(120), rows=lambda t: 1e6, noise=0.1, seed=11)
    runs[100].rows *= 0.5  # a modest drop

    def n_found(sens: float) -> int:
        s = DetectorSuite(sensitivity=sens)
        return sum(f.metric == "rows" for f in replay(s, "p", runs))

    assert n_found(0.5) <= n_found(1.0) <= n_found(2.0)
    assert n_found(0.5) == 0 and n_found(2.0) >= 1


def test_state_survives_a_restart_mid_run() -> None:
    runs = series(daily(40), duration=lambda t: 1200.0)
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * *", max_duration_s=2 * HOUR))
    replay(s, "p", runs[:39])
    s.observe_start("p", "long", runs[39].start, runs[39].start)
    restored = DetectorSuite()
    for pid in s.pipelines():
        restored.load_json(pid, json.loads(json.dumps(s.to_json(pid))))
    later = runs[39].start + 6 * HOUR
    assert [f.kind for f in restored.tick(later)] == [f.kind for f in s.tick(later)] == [FindingKind.RUNNING_LONG]
    assert restored.to_json("p") == s.to_json("p")


def test_feedback_routes_to_the_metric_and_refuses_unknown_ones() -> None:
    s = DetectorSuite()
    replay(s, "p", series(daily(30)))
    for metric in ("duration_s", "rows", "schedule", "status", "schema:t"):
        s.feedback("p", metric, Verdict.INCIDENT)
        s.feedback("p", metric, Verdict.EXPECTED)
    with pytest.raises(KeyError):
        s.feedback("p", "nonsense", Verdict.EXPECTED)


def test_timezone_buckets_follow_the_local_day() -> None:
    """A Berlin pipeline whose weekend starts at local midnight (23:00 UTC in winter)."""
    def rows(t: float) -> float:
        local = t + HOUR
        return 5e5 if (local // DAY + 3) % 7 >= 5 else 1e6

    # 23:30 UTC = 00:30 Berlin until summer time (29 March): after it these starts would be an hour late, a move
    runs = series([T0 + d * DAY - 0.5 * HOUR for d in range(1, 82)], rows=rows)
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="30 0 * * *", timezone="Europe/Berlin"))
    assert replay(s, "p", runs) == []
    assert s.schedule("p").describe() == "daily at 00:30 Europe/Berlin"


def test_series_values() -> None:
    s = DetectorSuite()
    found = []
    for k in range(3000):
        t = T0 + k * 300
        found += s.observe_value("cpu", t, 50.0 + (k % 7) * 0.3 + (60.0 if k == 2500 else 0.0), t)
    assert [(f.kind, f.metric, f.direction) for f in found] == [(FindingKind.VALUE, "value", Direction.HIGH)]
