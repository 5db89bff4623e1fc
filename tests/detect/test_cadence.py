"""Late, missing and extra runs, raised by the clock between runs; schedules declared or learned."""
from __future__ import annotations

import pytest

from pipemon.engine.detect import DetectorSuite, DetectSpec, FindingKind, RunStatus, Verdict
from pipemon.engine.detect.cadence import CadenceDetector
from pipemon.engine.schedule import Schedule
from tests.detect._data import DAY, HOUR, T0, Run, daily, hourly, replay, series


def cadence(findings) -> list[tuple[FindingKind, float]]:
    return [(f.kind, f.time) for f in findings if f.metric == "schedule"]


def hourly_suite(**spec) -> DetectorSuite:
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 * * * *", **spec))
    return s


def test_a_late_run_is_raised_by_the_clock_once_and_not_again_when_it_arrives() -> None:
    runs = series(hourly(3))
    late = runs[40]
    late.start += 40 * 60  # 40 minutes late
    s = hourly_suite()
    found = cadence(replay(s, "p", runs))
    assert len(found) == 1
    kind, t = found[0]
    slot = T0 + 40 * HOUR
    assert kind is FindingKind.LATE and slot < t < late.start  # between runs, before the run arrives


def test_ticking_often_raises_a_missed_slot_once() -> None:
    s = hourly_suite()
    replay(s, "p", series(hourly(1)))
    found = []
    for minute in range(0, 3 * 60, 5):  # a busy clock
        found += s.tick(T0 + 24 * HOUR + minute * 60)
    assert [f.kind for f in found] == [FindingKind.LATE, FindingKind.MISSING]  # the 00:00 slot, then 01:00
    assert all(f.time <= T0 + 27 * HOUR for f in found)


def test_a_missing_run_then_on_time_runs() -> None:
    runs = series(hourly(3))
    del runs[30]
    found = cadence(replay(hourly_suite(), "p", runs))
    assert [k for k, _ in found] == [FindingKind.LATE]  # only the missed slot, reported at its deadline


def test_a_silent_pipeline_is_reported_at_doubling_counts_not_every_slot() -> None:
    s = hourly_suite()
    replay(s, "p", series(hourly(2)))
    found = s.tick(T0 + 30 * DAY)
    found += s.tick(T0 + 60 * DAY)
    assert 2 <= len(found) <= 12  # about log2(1,400 missed runs), not 1,400 findings


def test_an_extra_run_is_flagged_once_per_slot() -> None:
    runs = series(hourly(2))
    extra = [Run(runs[30].start + 600 + 120 * k, 60.0, 1e5, run_id=f"x{k}") for k in range(2)]  # triggered twice
    found = cadence(replay(hourly_suite(), "p", sorted(runs + extra, key=lambda r: r.start)))
    assert [k for k, _ in found] == [FindingKind.EXTRA_RUN]


def test_a_run_so_late_it_starts_just_before_the_next_slot_makes_no_extra_run() -> None:
    """Started 5 min before the next slot, the late run is taken as that slot's, early; the next slot's own
    run is then no EXTRA_RUN: the slot before had no run, so the early start was that one, late."""
    runs = series(hourly(2), jitter_s=0.0)
    runs[30].start += 55 * 60
    found = cadence(replay(hourly_suite(), "p", runs))
    assert [k for k, _ in found] == [FindingKind.LATE]


def test_a_retry_after_a_failure_is_not_an_extra_run() -> None:
    runs = series(hourly(2))
    runs[30].status = RunStatus.FAILED
    retry = Run(runs[30].start + 900, 60.0, 1e5, run_id="retry")
    assert cadence(replay(hourly_suite(), "p", sorted(runs + [retry], key=lambda r: r.start))) == []


def test_weekday_pipelines_are_not_late_on_weekends() -> None:
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * 1-5"))
    assert cadence(replay(s, "p", series(daily(60, weekdays_only=True)))) == []


def test_a_run_in_flight_excuses_the_slots_it_blocks() -> None:
    runs = series(hourly(2), duration=lambda t: 300.0)
    hung = runs[30]
    hung.duration_s, hung.status = 4.5 * HOUR, RunStatus.FAILED  # blocks the next four slots
    runs = [r for r in runs if not hung.start < r.start < hung.start + hung.duration_s]
    found = replay(hourly_suite(max_duration_s=HOUR), "p", runs)
    assert [f.kind for f in found] == [FindingKind.RUNNING_LONG]


def overlapping(days: float) -> list[Run]:
    """An hourly job whose runs take about 1.5 h: its scheduler starts each run beside the last one."""
    return series(hourly(days), duration=lambda t: 1.5 * HOUR, noise=0.25)


def test_a_hung_run_of_a_job_whose_runs_overlap_is_late_once_it_is_a_suspect() -> None:
    """Its scheduler does not wait for runs, so the starts it stopped are the news: the running-long line
    (about 14 h here) lies beyond the hung run's 10 h. A run in flight excuses the slots only while it is
    not a suspect itself (past half that line)."""
    runs = overlapping(20)
    hung = runs[400]
    hung.duration_s, hung.status = 10 * HOUR, RunStatus.FAILED
    runs = [r for r in runs if not hung.start < r.start < hung.start + hung.duration_s]
    found = [f for f in replay(hourly_suite(), "p", runs) if f.time > hung.start]
    assert found and found[0].kind is FindingKind.LATE and found[0].metric == "schedule"
    assert hung.start + 2 * HOUR < found[0].time < hung.start + hung.duration_s  # while it hangs


def test_a_young_run_in_flight_still_excuses_a_slot_where_runs_overlap() -> None:
    runs = overlapping(20)
    s = hourly_suite()
    assert replay(s, "p", runs[:-1]) == []
    last = runs[-1]
    assert s.observe_start("p", "last", last.start, last.start) == []
    assert s.tick(last.start + 1.5 * HOUR) == []  # the recording stops; its run is not yet overdue


def test_an_extra_run_beside_a_running_one_does_not_make_the_runs_overlapping() -> None:
    c = CadenceDetector(Schedule.declared("0 * * * *"))
    c.on_start("p", "r0", T0 + 60)
    assert c.on_start("p", "x", T0 + 600, in_flight=True) is not None  # EXTRA_RUN, not a slot's run
    assert not c.overlaps(T0 + HOUR)
    c.on_start("p", "r1", T0 + HOUR + 60, in_flight=True)
    assert c.overlaps(T0 + 2 * HOUR) and not c.overlaps(T0 + 9 * DAY)
    assert CadenceDetector.from_json(c.to_json()).overlaps(T0 + 2 * HOUR)


def test_a_move_smaller_than_the_least_grace_is_a_move_not_start_lag() -> None:
    """A daily job moved 50 min later (within the 2.4 h least grace). Learned as start lag, the step
    inflated the lag's deviation and the grace (25 of them) reached its cap of half a day: a run 6 h late
    a month later passed unseen. Re-phased, the grace stays that of the jitter."""
    slots = daily(120)
    runs = series([s + (50 * 60 if k >= 60 else 0) for k, s in enumerate(slots)])
    late = runs[90]
    late.start += 6 * HOUR
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * *"))
    found = cadence(replay(s, "p", runs))
    assert found == [(FindingKind.LATE, pytest.approx(found[0][1]))]
    assert slots[90] < found[0][1] < late.start
    assert "(moved +5" in s.schedule("p").describe()  # the median offset, jitter included


@pytest.mark.parametrize("move_s, alarms", [(3 * HOUR, True), (-5 * HOUR, False)])
def test_a_moved_schedule_is_relearned_within_a_few_runs(move_s: float, alarms: bool) -> None:
    """Later: late until re-phased (nothing tells a move from a late run at the deadline). Earlier: a start
    nearer the next slot is that slot's run, early, so the move is absorbed without an alarm."""
    slots = daily(80)
    runs = series([s + (move_s if k >= 40 else 0) for k, s in enumerate(slots)])
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * *"))
    found = cadence(replay(s, "p", runs))
    assert bool(found) == alarms and all(t < slots[45] for _, t in found)  # alarms only while adapting
    assert "moved" in s.schedule("p").describe()


@pytest.mark.parametrize("slots, describe", [
    (hourly(20, minute=51), "hourly at :51"),
    ([T0 + k * 900 + 420 for k in range(96 * 12)], "every 15 min"),
    (daily(40, at_s=2 * HOUR + 600), "daily at about 02:10 UTC"),
    (daily(60, at_s=6 * HOUR, weekdays_only=True), "weekdays at about 06:00 UTC"),
    (sorted(daily(30, at_s=6 * HOUR) + daily(30, at_s=18 * HOUR + 1800)), "daily at about 06:00 and about 18:30 UTC"),
    ([T0 + 7 * DAY * k + 3 * DAY + 5 * HOUR for k in range(12)], "weekly on Thursday at about 05:00 UTC"),
])
def test_schedules_are_learned_from_the_runs(slots: list[float], describe: str) -> None:
    s = DetectorSuite()
    found = cadence(replay(s, "p", series(slots, jitter_s=20.0)))
    sch = s.schedule("p")
    assert sch is not None and sch.describe() == describe
    assert found == []


def test_a_learned_schedule_raises_late_runs() -> None:
    runs = series(daily(60, at_s=2 * HOUR))
    runs[50].start += 6 * HOUR
    found = cadence(replay(DetectorSuite(), "p", runs))
    assert [k for k, _ in found] == [FindingKind.LATE]


def test_learned_monthly_schedule() -> None:
    import datetime as dt

    starts = [dt.datetime(2026, m, 1, 3, 0, tzinfo=dt.UTC).timestamp() for m in range(1, 13)]
    c = CadenceDetector()
    for k, t in enumerate(starts):
        assert c.on_start("p", f"r{k}", t + 60) is None
    assert c.schedule is not None and c.schedule.describe() == "monthly on day 1 at about 03:01 UTC"
    assert c.schedule.next_expected(starts[-1] + DAY) == dt.datetime(2027, 1, 1, 3, 1, tzinfo=dt.UTC).timestamp()


def test_grace_adapts_to_the_learned_jitter() -> None:
    sch = Schedule.declared("0 * * * *")
    assert sch.grace() == pytest.approx(0.25 * HOUR)  # before any jitter is learned: a quarter interval
    for k in range(200):
        sch.observe_lag(20.0 + (k % 5) * 10)  # punctual: 20-60 s after the slot
    assert sch.grace() == pytest.approx(360)  # floored at 10 % of the hour, well under the default
    assert sch.grace(sensitivity=2.0) <= sch.grace()
    declared = Schedule.declared("0 * * * *", grace_s=900)
    declared.observe_lag(20.0)
    assert declared.grace() == 900 and declared.deadline(T0) == T0 + 900


def test_expected_feedback_moves_a_declared_schedule_to_the_last_run() -> None:
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * *"))
    runs = series(daily(40))
    replay(s, "p", runs[:30])
    moved = series([t + 5 * HOUR for t in daily(40)[30:]], seed=9)
    found = cadence(replay(s, "p", moved[:1]))
    assert [k for k, _ in found] == [FindingKind.LATE]
    s.feedback("p", "schedule", Verdict.EXPECTED)
    assert cadence(replay(s, "p", moved[1:])) == []


def test_a_declared_interval_takes_its_phase_from_the_first_run() -> None:
    s = DetectorSuite()
    s.configure("p", DetectSpec(interval_s=6 * HOUR))
    runs = series([T0 + 1234 + k * 6 * HOUR for k in range(40)])
    runs[30].start += 3 * HOUR  # one late run
    assert [k for k, _ in cadence(replay(s, "p", runs))] == [FindingKind.LATE]


def test_a_learned_schedule_follows_a_change_of_period() -> None:
    hourly_part = hourly(12)
    quarter = [hourly_part[-1] + 900 * k for k in range(1, 4 * 24 * 3)]  # then every 15 min for 3 days
    s = DetectorSuite()
    found = replay(s, "p", series(hourly_part + quarter, jitter_s=10.0))
    assert s.schedule("p").describe() == "every 15 min"
    # extra runs are flagged (once an hour) until the recent starts are mostly the new period, then quiet
    assert all(t < hourly_part[-1] + 8 * HOUR for _, t in cadence(found))


def test_a_declared_pipeline_that_never_runs_is_late_from_when_it_was_configured() -> None:
    s = DetectorSuite()
    s.configure("p", DetectSpec(cron="0 2 * * *", grace_s=HOUR), now=T0)
    assert s.tick(T0 + 2.9 * HOUR) == []
    found = s.tick(T0 + 3.1 * HOUR)
    assert [(f.kind, f.time) for f in found] == [(FindingKind.LATE, T0 + 3 * HOUR)]
    unconfigured = DetectorSuite()
    unconfigured.configure("p", DetectSpec(cron="0 2 * * *", grace_s=HOUR))  # no `now`: from its first run
    assert unconfigured.tick(T0 + 3.1 * HOUR) == []
