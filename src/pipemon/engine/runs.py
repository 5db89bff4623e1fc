"""The run state machine: fold events into a run, in any arrival order.

Producers retry, networks reorder, and OpenLineage integrations emit task events before or after the
DAG's. So a run is a commutative fold over its events, keyed by event time, not by arrival:
  - the start is the START event's time; until one arrives, the earliest event seen stands in for it
    (and duration stays unknown);
  - the outcome is the terminal event (COMPLETE, FAIL, ABORT) with the latest event time; a RUNNING,
    HEARTBEAT or START arriving after it changes nothing but the start;
  - metrics come from the latest event that carries any; the error from the latest that carries one;
  - a task's events land in its parent's run tree; a parent seen only through its tasks is pending
    (rollup: its start and what broke come from its tasks, never its outcome or rows).
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
    if ((ev.rows is not None or ev.bytes is not None or ev.metrics)
            and (run.metrics_time is None or t >= run.metrics_time)):
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
    if ev.task_states and (run.task_states is None or "status" in changes):  # the outcome's event says last
        changes["task_states"] = ev.task_states
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
    """A pending parent run: known only through its tasks' events until its own arrive. It is a run of
    the parent (never of the pipeline's own tasks) and stays `running` and out of every figure until then."""
    return Run(pipeline=pipeline, run_id=run_id, status=RunStatus.RUNNING, started_at=at, last_event_time=at,
               own_events=False, parent_run_id=parent_run_id, job=job)


def latest_attempts(tasks: Iterable[Run]) -> list[Run]:
    """One run per task, its latest attempt: a retry of a task supersedes the earlier try."""
    latest: dict[str, Run] = {}
    for t in tasks:
        key = t.job or t.run_id
        cur = latest.get(key)
        if cur is None or (t.started_at, t.run_id) >= (cur.started_at, cur.run_id):
            latest[key] = t
    return sorted(latest.values(), key=lambda r: (r.started_at, r.job or r.run_id))


def rollup(parent: Run, tasks: Iterable[Run]) -> Run:
    """What a parent run learns from its tasks, the same whatever order their events came in:
      - its start, while it has not sent its own START: the earliest of its own and its tasks' events;
      - `cause`: what broke (what_broke), when a task's latest attempt failed.
    Its status is never taken from the tasks: a pending parent stays `running` until its own end arrives
    (a task that succeeded says nothing of the tasks still to come). Nor are its rows: a run's rows are
    its own (each task's are on the task), so a task's output arriving after its parent's end changes no
    figure already counted."""
    tasks = list(tasks)
    if not tasks:
        return parent
    runs = latest_attempts(tasks)
    changes: dict = {}
    if not parent.start_seen:
        start = min(min(r.started_at for r in tasks), parent.started_at)
        if start != parent.started_at:
            changes["started_at"] = start
    last = max(parent.last_event_time, max(r.last_event_time for r in tasks))
    if last != parent.last_event_time:
        changes["last_event_time"] = last
    changes["cause"] = what_broke(parent.pipeline, runs)
    return msgspec.structs.replace(parent, **changes)


# --- what broke: one rule for every producer (Airflow DAGs, dbt runs, any parent with tasks) ----------------
LANGUAGES = frozenset({"python", "java", "scala", "sql", "r", "javascript", "go", "rust"})


def task_name(pipeline: str, job: str | None) -> str:
    """A task's short name: `transform` for job `prod_airflow/orders_daily.transform` of the DAG
    `prod_airflow/orders_daily`."""
    if not job:
        return "?"
    if job.startswith(pipeline + "."):
        return job[len(pipeline) + 1:]
    return job.rpartition("/")[2] or job


def error_line(message: str | None, error_type: str | None) -> str | None:
    """`ValueError: bad row in orders: id=42`; a language (OpenLineage programmingLanguage) is no type."""
    if not message:
        return error_type if error_type and error_type.lower() not in LANGUAGES else None
    if not error_type or error_type.lower() in LANGUAGES or message.startswith(error_type):
        return message
    return f"{error_type}: {message}"


def what_broke(pipeline: str, tasks: Iterable[Run]) -> str | None:
    """What broke a run, from its tasks' latest attempts: `transform failed: ValueError: bad row in orders:
    id=42`, ` (and 2 more)` when several failed, then the last lines of the first one's stack trace (its log
    excerpt) on the lines after. None when no task failed. The first line is the headline
    (Run.failure_text)."""
    failed = [t for t in latest_attempts(tasks) if t.status in (RunStatus.FAILED, RunStatus.ABORTED)]
    if not failed:
        return None
    failed.sort(key=lambda t: (t.ended_at if t.ended_at is not None else t.started_at, t.job or t.run_id))
    first = failed[0]
    verb = "failed" if first.status is RunStatus.FAILED else "was aborted"
    err = error_line(first.error_message, first.error_type)
    line = f"{task_name(pipeline, first.job)} {verb}" + (f": {err}" if err else "")
    if len(failed) > 1:
        line += f" (and {len(failed) - 1} more)"
    return line + (f"\n{first.log_excerpt}" if first.log_excerpt else "")


def not_run(pipeline: str, run: Run, tasks: Iterable[Run]) -> dict[str, str]:
    """Tasks the scheduler listed for the run (Run.task_states) that sent no event of their own — skipped,
    upstream_failed … — with their state. Counted neither failed nor succeeded."""
    if not run.task_states:
        return {}
    seen = {task_name(pipeline, t.job) for t in tasks}
    return {k: v for k, v in sorted(run.task_states.items()) if k not in seen}
