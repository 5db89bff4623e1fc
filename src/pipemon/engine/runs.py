"""The run state machine: fold events into a run, in any arrival order.

Producers retry, networks reorder, and OpenLineage integrations emit task events before or after the
DAG's. So a run is a commutative fold over its events, keyed by event time, not by arrival:
  - the start is the START event's time; until one arrives, the earliest event seen stands in for it
    (and duration stays unknown);
  - the outcome is the terminal event (COMPLETE, FAIL, ABORT) with the latest event time; a RUNNING,
    HEARTBEAT or START arriving after it changes nothing but the start;
  - metrics come from the latest event that carries any; the error from the latest that carries one;
  - a task's events land in its parent's run tree; a parent seen only through its tasks is pending
    (rollup: its start and what broke come from its tasks, never its outcome or rows);
  - a task that never ran (a dbt node skipped after an upstream failure) is `skipped`: not a failure.
Applying the same event twice gives the same run, so a duplicate that slips past deduplication is harmless.
"""
from __future__ import annotations

import re
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
        changes["status"] = RunStatus.SKIPPED if ev.skipped else STATUS_OF_TERMINAL[ev.type]
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
TRACE_LINES = 12  # of a stack trace or a command's output, shown under the headline
# dbt's unique ids: `model.shop.orders`, `test.shop.unique_orders_id.a6a76acf47` (a test's hash suffix), as
# dbt-ol names its jobs (older versions prefixed the project: `shop.model.shop.orders`).
_DBT_NODE = re.compile(r"^(?:[\w-]+\.)?(model|test|seed|snapshot|source|unit_test)\.[\w-]+\."
                       r"(\w+?)(?:\.[0-9a-f]{10})?$")
# dbt's wrapper line: "Runtime Error in model orders (models/orders.sql)"; the database's error follows it.
_WRAPPER = re.compile(r"^\w+ Error in \w+ \S+ \(.*\)$")


def task_name(pipeline: str, job: str | None) -> str:
    """A task's short name: `transform` for job `prod_airflow/orders_daily.transform` of the DAG
    `prod_airflow/orders_daily`; `model orders` for the dbt node `dbt/model.shop.orders`."""
    if not job:
        return "?"
    if job.startswith(pipeline + "."):
        return job[len(pipeline) + 1:]
    name = job.rpartition("/")[2] or job
    m = _DBT_NODE.match(name)
    return f"{m.group(1)} {m.group(2)}" if m else name


def is_check(job: str | None) -> bool:
    """A data test (dbt `test.…`): when a step failed too, the step's error is what broke."""
    m = _DBT_NODE.match((job or "").rpartition("/")[2])
    return m is not None and m.group(1) in ("test", "unit_test")


def error_line(message: str | None, error_type: str | None) -> str | None:
    """`ValueError: bad row in orders: id=42`; a language (OpenLineage programmingLanguage) is no type. One
    line: the message's first, or the database's error under dbt's "Runtime Error in model …" wrapper."""
    if message:
        lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
        message = lines[1] if len(lines) > 1 and _WRAPPER.match(lines[0]) else (lines[0] if lines else "")
    if not message:
        return error_type if error_type and error_type.lower() not in LANGUAGES else None
    if not error_type or error_type.lower() in LANGUAGES or message.startswith(error_type):
        return message
    return f"{error_type}: {message}"


def last_lines(text: str | None, n: int = TRACE_LINES) -> str | None:
    """The last `n` non-blank lines: what a stack trace or a command's output ends with."""
    lines = [ln.rstrip() for ln in (text or "").splitlines() if ln.strip()]
    return "\n".join(lines[-n:]) if lines else None


def failed_first(tasks: Iterable[Run]) -> list[Run]:
    """The failed (or aborted) tasks' latest attempts, what broke first: steps before data tests, then the
    earliest to fail."""
    failed = [t for t in latest_attempts(tasks) if t.status in (RunStatus.FAILED, RunStatus.ABORTED)]
    return sorted(failed, key=lambda t: (is_check(t.job), t.ended_at if t.ended_at is not None
                                         else t.started_at, t.job or t.run_id))


def what_broke(pipeline: str, tasks: Iterable[Run]) -> str | None:
    """What broke a run, from its tasks' latest attempts: `transform failed: ValueError: bad row in orders:
    id=42`, ` (and 2 more)` when several failed, then on the lines after, the first one's full error when it
    spans lines (dbt's, with the failing SQL) and the last lines of its stack trace or output. None when no
    task failed; a skipped task is no failure. The first line is the headline (Run.failure_text)."""
    failed = failed_first(tasks)
    if not failed:
        return None
    first = failed[0]
    verb = "failed" if first.status is RunStatus.FAILED else "was aborted"
    err = error_line(first.error_message, first.error_type)
    line = f"{task_name(pipeline, first.job)} {verb}" + (f": {err}" if err else "")
    if len(failed) > 1:
        line += f" (and {len(failed) - 1} more)"
    out = failure_output(first)
    return f"{line}\n{out}" if out else line


def failure_output(run: Run) -> str | None:
    """What a failed run printed that says why, shown under its headline: its error when that spans lines
    (dbt's, with the failing SQL; first lines), then the last lines of its stack trace or output."""
    msg = (run.error_message or "").strip("\n")
    parts = ["\n".join(msg.splitlines()[:TRACE_LINES]) if "\n" in msg else None, last_lines(run.log_excerpt)]
    return "\n".join(p for p in parts if p) or None


def not_run(pipeline: str, run: Run, tasks: Iterable[Run]) -> dict[str, str]:
    """Tasks the scheduler listed for the run (Run.task_states) that sent no event of their own — skipped,
    upstream_failed … — with their state. Counted neither failed nor succeeded."""
    if not run.task_states:
        return {}
    seen = {task_name(pipeline, t.job) for t in tasks}
    return {k: v for k, v in sorted(run.task_states.items()) if k not in seen}
