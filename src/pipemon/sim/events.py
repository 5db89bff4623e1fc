"""From runs to lifecycle events: task runs inside a pipeline run, and the events each one emits.

An Airflow DAG run runs its tasks one after another, a dbt run its models; Spark and cron runs
have no children. Every run emits START and then COMPLETE, FAIL or ABORT. Events are format-neutral
`SimEvent`s here; `openlineage.py` and `native.py` turn them into wire dicts.

Ordering: events are keyed `(time_ms, pipeline index, nominal_ms, seq)`. That key is unique, total
and independent of how the stream was windowed, so every path produces the same order.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from pipemon.sim import noise
from pipemon.sim.catalog import ErrorSpec
from pipemon.sim.fleet import Field, Pipeline
from pipemon.sim.incidents import IncidentKind, Planner
from pipemon.sim.runs import RunBatch, RunStatus
from pipemon.sim.schedule import SECOND


class EventType(enum.Enum):
    """OpenLineage's run transitions (RUNNING is part of the spec but never simulated)."""

    START = "START"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAIL = "FAIL"
    ABORT = "ABORT"


_END_TYPE = {RunStatus.SUCCESS: EventType.COMPLETE, RunStatus.FAILED: EventType.FAIL,
             RunStatus.ABORTED: EventType.ABORT}


@dataclass(frozen=True, slots=True, eq=False)
class TaskRun:
    name: str
    run_id: str
    start_ms: int
    end_ms: int
    status: RunStatus


@dataclass(frozen=True, slots=True, eq=False)
class SimRun:
    """One pipeline run with everything its events need."""

    pipeline: Pipeline
    run_id: str
    run_hi: int  # the UUID's halves, to derive task run ids and event ids from
    run_lo: int
    nominal_ms: int
    start_ms: int
    end_ms: int
    status: RunStatus
    rows: int | None
    bytes: int | None
    fields: tuple[Field, ...]  # the primary output's columns for this run
    error: ErrorSpec | None
    failed_task: str | None
    tasks: tuple[TaskRun, ...]


@dataclass(frozen=True, slots=True, eq=False)
class SimEvent:
    time_ms: int
    type: EventType
    run: SimRun
    task: TaskRun | None  # None: the pipeline-level (root) run
    seq: int  # position within the run's events

    @property
    def event_id(self) -> str:
        return noise.derived_uuid(self.run.run_hi, self.run.run_lo, 1000 + self.seq)


Entry = tuple[int, int, int, int, SimEvent]  # sort key (time, pipeline, nominal, seq), then the event


def expand(batch: RunBatch, planner: Planner) -> list[Entry]:
    """The events of every run in `batch` that happened, as sortable entries."""
    p = batch.pipeline
    ids = batch.run_ids()
    entries: list[Entry] = []
    rows, sizes = batch.rows.tolist(), batch.bytes.tolist()
    for k, code in enumerate(batch.status.tolist()):
        status = RunStatus(code)
        if not status.happened:
            continue
        nominal, start, end = int(batch.nominal[k]), int(batch.start[k]), int(batch.end[k])
        hi, lo = int(batch.run_hi[k]), int(batch.run_lo[k])
        effect = batch.effects.get(k) if status is not RunStatus.SUCCESS else None  # what made it fail
        failed = effect.task if effect is not None else None
        share_done = None if effect is None or effect.kind is IncidentKind.HUNG_RUN else effect.magnitude
        tasks = _tasks(p, hi, lo, start, end, failed, share_done)
        run = SimRun(
            pipeline=p, run_id=ids[k], run_hi=hi, run_lo=lo, nominal_ms=nominal, start_ms=start, end_ms=end,
            status=status, rows=rows[k] if rows[k] >= 0 else None, bytes=sizes[k] if sizes[k] >= 0 else None,
            fields=planner.fields_at(p.index, nominal),
            error=effect.error if effect is not None else None,
            failed_task=p.tasks[failed] if failed is not None else None, tasks=tasks,
        )
        entries.append((start, p.index, nominal, 0, SimEvent(start, EventType.START, run, None, 0)))
        seq = 1
        for t in tasks:
            entries.append((t.start_ms, p.index, nominal, seq,
                            SimEvent(t.start_ms, EventType.START, run, t, seq)))
            entries.append((t.end_ms, p.index, nominal, seq + 1,
                            SimEvent(t.end_ms, _END_TYPE[t.status], run, t, seq + 1)))
            seq += 2
        entries.append((end, p.index, nominal, seq, SimEvent(end, _END_TYPE[status], run, None, seq)))
    return entries


def _tasks(p: Pipeline, hi: int, lo: int, start: int, end: int, failed: int | None,
           share_done: float | None) -> tuple[TaskRun, ...]:
    """Lay the tasks out back to back inside [start, end] with short scheduling gaps.

    A run that failed in task `failed` only ran up to it. The failing task's weight is the share
    of it done before failing; a hung task takes whatever time is left until the kill.
    """
    if not p.tasks:
        return ()
    shares = list(p.behaviour.task_shares)
    span = end - start
    count = len(shares) if failed is None else failed + 1
    gap = min(2 * SECOND, span // (20 * (count + 1)))
    work = span - gap * (count + 1)
    if failed is None:
        lengths = [work * s for s in shares]
    elif share_done is not None:  # failed part-way through
        weights = [*shares[:failed], shares[failed] * share_done]
        lengths = [work * w / sum(weights) for w in weights]
    else:  # hung: earlier tasks took their usual time, the hung one the rest
        usual = p.behaviour.duration_s * SECOND
        before = [min(usual * s, work / (2 * count)) for s in shares[:failed]]
        lengths = [*before, work - sum(before)]
    out = []
    cursor = start
    for k, length in enumerate(lengths):
        t0 = cursor + gap
        t1 = t0 + max(1, int(length))
        ok = failed is None or k < failed
        out.append(TaskRun(p.tasks[k], noise.derived_uuid(hi, lo, k + 1), t0, min(t1, end - 1),
                           RunStatus.SUCCESS if ok else RunStatus.FAILED))
        cursor = t1
    return tuple(out)
