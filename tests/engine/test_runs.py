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


def _task(job, status, start, end=None, rows=None, err=None, etype=None, log=None):
    r = runs.apply(None, Event(key="k", source=Source.OPENLINEAGE, namespace="n", name=f"dag.{job}",
                               run_id=job + str(start), type=EventType.START, time=start),
                   "n/dag", job + str(start), "R", f"n/dag.{job}")
    if end is not None:
        t = {"ok": "COMPLETE", "fail": "FAIL"}[status]
        r = runs.apply(r, Event(key="k2", source=Source.OPENLINEAGE, namespace="n", name=f"dag.{job}",
                                run_id=r.run_id, type=EventType[t], time=end, rows=rows, error_message=err,
                                error_type=etype, log=log), "n/dag", r.run_id)
    return r


def test_a_pending_parent_takes_its_start_and_cause_from_its_tasks_never_its_outcome_or_rows():
    parent = runs.placeholder("n/dag", "R", 150)
    done = runs.rollup(parent, [_task("extract", "ok", 100, 200, rows=10),
                                _task("load", "ok", 210, 300, rows=5)])
    assert (done.status, done.started_at, done.ended_at, done.rows, done.cause) == (
        RunStatus.RUNNING, 100, None, None, None)  # rows stay on the tasks
    failed = runs.rollup(parent, [_task("extract", "ok", 100, 200),
                                  _task("load", "fail", 210, 250, err="disk full", etype="OSError")])
    assert (failed.status, failed.cause) == (RunStatus.RUNNING, "load failed: OSError: disk full")
    retried = runs.rollup(parent, [_task("extract", "ok", 100, 200), _task("load", "fail", 210, 250, err="x"),
                                   _task("load", "ok", 260, 300)])
    assert retried.cause is None  # the retry of the failed task succeeded


def test_a_parent_with_its_own_start_keeps_it_and_its_own_rows():
    parent = runs.apply(runs.placeholder("n/dag", "R", 100), ev("START", 90, rows=7.0), "n/dag", "R")
    rolled = runs.rollup(parent, [_task("extract", "ok", 80, 200, rows=10)])
    assert parent.own_events and (rolled.started_at, rolled.rows, rolled.last_event_time) == (90, 7.0, 200)
    assert runs.rollup(parent, []) is parent


def test_what_broke_names_the_first_failing_task_its_error_trace_and_how_many_more():
    tasks = [_task("extract", "ok", 100, 200),
             _task("transform", "fail", 210, 250, err="bad row in orders: id=42", etype="ValueError",
                   log='  File "dag.py", line 18\nValueError: bad row in orders: id=42'),
             _task("audit", "fail", 220, 260, err="boom", etype="python")]
    assert runs.what_broke("n/dag", tasks) == (
        'transform failed: ValueError: bad row in orders: id=42 (and 1 more)'
        '\n  File "dag.py", line 18\nValueError: bad row in orders: id=42')
    assert runs.what_broke("n/dag", tasks[2:]) == "audit failed: boom"  # a language is no error type
    assert runs.what_broke("n/dag", tasks[:1]) is None


def test_tasks_that_never_ran_are_those_the_scheduler_listed_without_events():
    parent = runs.apply(None, ev("FAIL", 300, task_states={"extract": "success", "transform": "failed",
                                                          "load": "upstream_failed", "report": "skipped"}),
                        "n/dag", "R")
    tasks = [_task("extract", "ok", 100, 200), _task("transform", "fail", 210, 250)]
    assert runs.not_run("n/dag", parent, tasks) == {"load": "upstream_failed", "report": "skipped"}
