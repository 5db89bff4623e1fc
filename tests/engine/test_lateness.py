"""Lateness from history (issue 10, item 6) in pure code, the clock passed in: a declared schedule's slots are
judged against the newest run known, whenever it becomes known; texts hold the first unserved slot, and the
lateness figure is computed when read."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipemon.config import loads
from pipemon.engine.detect import DetectorSuite, DetectSpec, FindingKind, RunObservation
from pipemon.engine.detect.cadence import overdue_since
from pipemon.engine.judge import Judge
from pipemon.engine.health import Condition, ConditionKind, HealthState, PipelineHealth, reason_now
from pipemon.model import Run, RunStatus

MON = datetime(2026, 11, 2, tzinfo=UTC).timestamp()
H, DAY = 3600.0, 86400.0


def daily_suite(now: float) -> DetectorSuite:
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * *", grace_s=H), now=now)
    return s


def start(s: DetectorSuite, run_id: str, t: float, now: float) -> None:
    """A whole run (10 minutes, succeeded) that started at t, learned at `now`."""
    s.observe_run("p", RunObservation(run_id=run_id, start=t, end=t + 600, status=RunStatus.SUCCEEDED,
                                      duration_s=600.0), now)


@pytest.mark.parametrize("last_run_day, now, kind, first_unserved, missed", [
    # (day of the last known run at 02:05, the clock when that history arrives, ...)
    (0, MON + 2 * DAY + 10 * H, FindingKind.MISSING, MON + 1 * DAY + 2 * H, 2),   # two days ago: 2 slots owed
    (1, MON + 2 * DAY + 10 * H, FindingKind.LATE, MON + 2 * DAY + 2 * H, 1),      # yesterday: today's slot owed
    (1, MON + 2 * DAY + 2 * H + 1800, None, None, 0),                             # today's slot not due yet
    (2, MON + 2 * DAY + 10 * H, None, None, 0),                                    # today's run known: fine
])
def test_history_learned_late_is_judged_at_the_next_tick(last_run_day, now, kind, first_unserved, missed):
    s = daily_suite(now)                      # declared, watched from `now`: nothing is owed before the history
    assert s.tick(now) == []
    for d in range(last_run_day - 3, last_run_day + 1):   # the history arrives now, oldest first
        start(s, f"r{d}", MON + d * DAY + 2 * H + 300, now)
    found = s.tick(now + 60)
    if kind is None:
        assert found == []
        return
    # each slot is judged as of its own deadline (the suite stamps findings with the moment they became due);
    # the last finding is where the pipeline stands now
    assert [f.kind for f in found] == [FindingKind.LATE, FindingKind.MISSING][:missed]
    f = found[-1]
    assert f.kind is kind and f.time <= now + 60
    assert all(overdue_since(x) == first_unserved for x in found)
    day = datetime.fromtimestamp(first_unserved, UTC).strftime("%a %Y-%m-%d %H:%M UTC")
    assert f"the {day} slot" in f.explanation
    assert (f"{missed} expected runs missed" in f.explanation) is (missed > 1)


def test_history_in_several_batches_with_ticks_between_still_ends_late_from_the_last_run():
    now = MON + 9 * DAY + 10 * H
    s = daily_suite(now)
    start(s, "old", MON + 2 * H + 300, now)               # the first batch: a run nine days ago
    assert [f.kind for f in s.tick(now + 60)][-1] is FindingKind.MISSING
    start(s, "newer", MON + 7 * DAY + 2 * H + 300, now + 120)   # the next batch: two days ago
    found = s.tick(now + 180)
    assert [f.kind for f in found] == [FindingKind.LATE, FindingKind.MISSING]
    assert overdue_since(found[-1]) == MON + 8 * DAY + 2 * H   # judged from the newest run: Tuesday's slot


def test_a_live_late_run_still_raises_once_and_is_not_judged_again():
    s = daily_suite(MON)
    assert [f.kind for f in s.tick(MON + 3 * H + 60)] == [FindingKind.LATE]   # Monday 02:00 unserved at 03:00
    start(s, "late", MON + 3 * H + 600, MON + 3 * H + 600)                     # then it runs, late
    assert s.tick(MON + 20 * H) == []


def test_a_fresh_schedule_omits_what_it_does_not_know():
    s = daily_suite(MON)
    f = s.tick(MON + 3 * H + 60)[0]
    assert "n/a" not in f.explanation and "usually starts" not in f.explanation
    assert f.explanation == "no run yet for the Mon 2026-11-02 02:00 UTC slot (daily at 02:00 UTC)"
    for d in range(1, 8):  # a week of on-time runs teaches the usual start lag: then it is said
        start(s, f"r{d}", MON + d * DAY + 2 * H + 300, MON + d * DAY + 2 * H + 300)
    f = s.tick(MON + 8 * DAY + 3 * H + 60)[0]
    assert "usually starts 5.0 min after the slot" in f.explanation


@pytest.mark.parametrize("state, due, now, expected", [
    (HealthState.LATE, MON, MON + 90 * 60, "1h30m late: r"),
    (HealthState.LATE, MON, MON + 2 * DAY, "2.0d late: r"),
    (HealthState.LATE, MON, MON - 5, "0s late: r"),           # a read racing the slot: never negative
    (HealthState.FAILING, MON, MON + H, "r"),                  # a late condition behind a failure: no figure
    (HealthState.LATE, None, MON + H, "r"),                    # a late state without a known slot: as stored
])
def test_reason_now(state, due, now, expected):
    h = PipelineHealth(first_seen=MON, state=state)
    if due is not None:
        h.conditions["late:schedule"] = Condition(ConditionKind.LATE, "schedule", MON, "t", due=due)
    assert reason_now("r", h.overdue_since(), now) == expected


def test_the_late_condition_keeps_its_slot_through_json():
    c = Condition(ConditionKind.LATE, "schedule", MON, "t", 1.0, None, MON - H)
    assert Condition.from_json(c.to_json()) == c
    old = ["late", "schedule", MON, "t", 1.0, None]                  # stored before the slot was kept
    assert Condition.from_json(old).due is None


def test_the_evaluator_view_carries_the_slot_while_late():
    ev = Judge(loads('pipelines: [{match: "a/p", schedule: "0 2 * * *", grace: 1h}]'))
    now = MON + 2 * DAY + 10 * H
    ev.ensure("a/p", MON, now)
    r = Run("a/p", "r0", RunStatus.RUNNING, MON + 2 * H + 300, start_seen=True)
    ev.on_run("a/p", MON, None, r, now)
    done = Run("a/p", "r0", RunStatus.SUCCEEDED, MON + 2 * H + 300, MON + 2 * H + 900, start_seen=True)
    ev.on_run("a/p", MON, r, done, now)
    out = ev.on_tick(now + 60)
    v = ev.view("a/p", now + 60)
    assert v["state"] == "late" and v["overdue_since"] == MON + DAY + 2 * H
    assert [s.due for s in out.signals] == [MON + DAY + 2 * H]
    assert reason_now(v["reason"], v["overdue_since"], now + 60).startswith("32h01m late: 2 expected runs")
