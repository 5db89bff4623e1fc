import itertools

import pytest

from pipemon.engine import runs
from pipemon.model import Event, EventType, RunStatus, Source


def ev(type_, t, **kw):
    return Event(key=f"{type_}{t}", source=Source.NATIVE, namespace="n", name="p", run_id="r",
                 type=EventType[type_], time=t, **kw)


def fold(events):
    run = None
    for e in events:
        run = runs.apply(run, e, "n/p", "r")
    return run


LIFECYCLES = {
    "success": ([ev("START", 100), ev("RUNNING", 150, rows=5), ev("COMPLETE", 400, rows=10)],
                RunStatus.SUCCEEDED, 100, 400, 300, 10),
    "failure": ([ev("START", 100), ev("FAIL", 200, error_message="boom")], RunStatus.FAILED, 100, 200, 100, None),
    "abort": ([ev("START", 100), ev("HEARTBEAT", 120), ev("ABORT", 130)], RunStatus.ABORTED, 100, 130, 30, None),
    "retry_then_success": ([ev("START", 100), ev("FAIL", 200), ev("COMPLETE", 300)], RunStatus.SUCCEEDED, 100, 300,
                           200, None),
}


@pytest.mark.parametrize("name", LIFECYCLES)
def test_every_arrival_order_gives_the_same_run(name):
    events, status, start, end, duration, rows = LIFECYCLES[name]
    results = {fold(p) for p in itertools.permutations(events)}
    assert len(results) == 1, results
    run = results.pop()
    assert (run.status, run.started_at, run.ended_at, run.duration, run.rows) == (status, start, end, duration, rows)


def test_duplicates_change_nothing():
    events = LIFECYCLES["success"][0]
    assert fold(events + events) == fold(events)


def test_a_late_running_event_does_not_reopen_a_finished_run():
    run = fold([ev("START", 100), ev("COMPLETE", 400), ev("RUNNING", 200)])
    assert run.status is RunStatus.SUCCEEDED and run.ended_at == 400


def test_complete_without_start_has_no_duration_until_the_start_arrives():
    run = fold([ev("COMPLETE", 400)])
    assert run.status is RunStatus.SUCCEEDED and run.duration is None
    run = runs.apply(run, ev("START", 100), "n/p", "r")
    assert run.duration == 300


def test_error_and_log_and_nominal_time_are_kept():
    run = fold([ev("START", 1, nominal_time=0.0), ev("FAIL", 5, error_message="x", error_type="E", log="tail")])
    assert (run.error_message, run.error_type, run.log_excerpt, run.nominal_time) == ("x", "E", "tail", 0.0)


def test_rollup_of_a_parent_known_only_by_its_tasks():
    parent = runs.placeholder("n/dag", "R", 100)
    def task(job, status, start, end=None, rows=None, err=None):
        r = runs.apply(None, Event(key="k", source=Source.OPENLINEAGE, namespace="n", name=job, run_id=job + str(start),
                                   type=EventType.START, time=start), "n/dag", job + str(start), "R", f"n/{job}")
        if end is not None:
            t = {"ok": "COMPLETE", "fail": "FAIL"}[status]
            r = runs.apply(r, Event(key="k2", source=Source.OPENLINEAGE, namespace="n", name=job, run_id=r.run_id,
                                    type=EventType[t], time=end, rows=rows, error_message=err), "n/dag", r.run_id)
        return r
    running = runs.rollup(parent, [task("extract", "ok", 100, 200, rows=10), task("load", "ok", 210)])
    assert running.status is RunStatus.RUNNING and running.ended_at is None
    done = runs.rollup(parent, [task("extract", "ok", 100, 200, rows=10), task("load", "ok", 210, 300, rows=5)])
    assert (done.status, done.started_at, done.ended_at, done.rows) == (RunStatus.SUCCEEDED, 100, 300, 15)
    failed = runs.rollup(parent, [task("extract", "ok", 100, 200), task("load", "fail", 210, 250, err="disk full")])
    assert (failed.status, failed.error_message) == (RunStatus.FAILED, "disk full")
    retried = runs.rollup(parent, [task("extract", "ok", 100, 200), task("load", "fail", 210, 250),
                                   task("load", "ok", 260, 300)])
    assert retried.status is RunStatus.SUCCEEDED  # the retry of the failed task succeeded


def test_a_parent_with_events_of_its_own_is_not_rolled_up():
    parent = runs.apply(runs.placeholder("n/dag", "R", 100), ev("START", 90), "n/dag", "R")
    assert parent.own_events and runs.rollup(parent, []) is parent
