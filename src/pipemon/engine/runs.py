"""The run state machine: fold events into a run, in any arrival order.

Producers retry, networks reorder, and OpenLineage integrations emit task events before or after the
DAG's. So a run is a commutative fold over its events, keyed by event time, not by arrival:
  - the start is the START event's time; until one arrives, the earliest event seen stands in for it
    (and duration stays unknown);
  - the outcome is the terminal event (COMPLETE, FAIL, ABORT) with the latest event time; a RUNNING,
    HEARTBEAT or START arriving after it changes nothing but the start;
  - metrics come from the latest event that carries any; the error from the latest that carries one.
Applying the same event twice gives the same run, so a duplicate that slips past deduplication is harmless.
"""
from __future__ import annotations

from collections.abc import Iterable

import msgspec

from pipemon.model import STATUS_OF_TERMINAL, Event, EventType, Run, RunStatus


def apply(run: Run | None, ev: Event, pipeline: str, run_id: str, parent_run_id: str | None = None,
          job: str | None = None) -> Run:
    """The run after `ev`. `pipeline`/`run_id` name the run `ev` lands on (a task's events land on the
    root pipeline, with `job` the task's own id)."""
    t = ev.time
    if run is None:
        run = Run(pipeline=pipeline, run_id=run_id, status=RunStatus.RUNNING, started_at=t, last_event_time=t,
                  parent_run_id=parent_run_id, job=job)
    changes: dict = {}
    if ev.type is EventType.START:
        if not run.start_seen or t < run.started_at:
            changes["started_at"] = t
            changes["start_seen"] = True
    elif not run.start_seen and t < run.started_at:
        changes["started_at"] = t
    if ev.type.is_terminal and (run.end_event_time is None or t >= run.end_event_time):
        changes["status"] = STATUS_OF_TERMINAL[ev.type]
        changes["ended_at"] = t
        changes["end_event_time"] = t
    if (ev.rows is not None or ev.bytes is not None or ev.metrics) and (run.metrics_time is None or t >= run.metrics_time):
        changes["rows"] = ev.rows if ev.rows is not None else run.rows
        changes["bytes"] = ev.bytes if ev.bytes is not None else run.bytes
        changes["metrics"] = {**(run.metrics or {}), **ev.metrics} if ev.metrics else run.metrics
        changes["metrics_time"] = t
    if ev.error_message is not None:
        changes["error_message"] = ev.error_message
        changes["error_type"] = ev.error_type
    if ev.log is not None:
        changes["log_excerpt"] = ev.log
    if ev.nominal_time is not None:
        changes["nominal_time"] = ev.nominal_time
    if t > run.last_event_time:
        changes["last_event_time"] = t
    if not run.own_events:  # a placeholder parent now speaks for itself
        changes["own_events"] = True
    if parent_run_id is not None and run.parent_run_id is None:
        changes["parent_run_id"] = parent_run_id
        changes["job"] = job
    return msgspec.structs.replace(run, **changes) if changes else run


def placeholder(pipeline: str, run_id: str, at: float, parent_run_id: str | None = None,
                job: str | None = None) -> Run:
    """A parent run known only through its tasks' events (until, perhaps, its own arrive)."""
    return Run(pipeline=pipeline, run_id=run_id, status=RunStatus.RUNNING, started_at=at, last_event_time=at,
               own_events=False, parent_run_id=parent_run_id, job=job)


def rollup(parent: Run, tasks: Iterable[Run]) -> Run:
    """A parent without events of its own takes its outcome from its tasks: failed when a task's latest
    attempt failed, succeeded when every task finished well, else running. Its rows are the tasks' sum."""
    if parent.own_events:
        return parent
    latest: dict[str, Run] = {}
    for t in tasks:
        key = t.job or t.run_id
        cur = latest.get(key)
        if cur is None or t.started_at >= cur.started_at:  # a retry of a task supersedes the earlier try
            latest[key] = t
    if not latest:
        return parent
    runs = list(latest.values())
    start = min(r.started_at for r in runs)
    failed = [r for r in runs if r.status in (RunStatus.FAILED, RunStatus.ABORTED)]
    if any(r.status is RunStatus.RUNNING for r in runs):
        status, ended = RunStatus.RUNNING, None
    elif failed:
        status, ended = failed[0].status, max(r.ended_at or r.started_at for r in runs)
    else:
        status, ended = RunStatus.SUCCEEDED, max(r.ended_at or r.started_at for r in runs)
    rows = [r.rows for r in runs if r.rows is not None]
    first_failure = min(failed, key=lambda r: r.ended_at or r.started_at) if failed else None
    return msgspec.structs.replace(
        parent, status=status, started_at=min(start, parent.started_at), ended_at=ended, end_event_time=ended,
        start_seen=True, rows=sum(rows) if rows else None,
        error_message=first_failure.error_message if first_failure else None,
        error_type=first_failure.error_type if first_failure else None,
        last_event_time=max(parent.last_event_time, max(r.last_event_time for r in runs)),
    )

