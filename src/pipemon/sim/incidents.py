"""Injected incidents: what goes wrong, where and when, and the ground truth to score pipemon against.

Incidents are planned one simulated day at a time (days counted from the simulation's start), each
day from its own seeded generator, and every incident affects only runs scheduled inside its day.
So a day's plan never depends on how the caller slices time, and the live feed, the batch export and
the fast path see the same incidents. Days are planned in order because schema changes accumulate.

A showcase (on by default) adds one incident of every kind in the first day after `showcase_after`,
on frequently scheduled pipelines, so a demo shows each kind within hours.
"""
from __future__ import annotations

import bisect
import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from pipemon.sim.catalog import (
    ADDED_FIELDS,
    FAILURES,
    KEY_FIELDS,
    LANGUAGE,
    OUTAGES,
    RETYPED,
    TIMEOUTS,
    ErrorSpec,
)
from pipemon.sim.fleet import Field, Fleet, Pipeline
from pipemon.sim.schedule import DAY, HOUR, MINUTE, iso, to_ms, to_seconds


class IncidentKind(enum.Enum):
    FAILURE = "failure"  # one run fails in one task
    FAILURE_BURST = "failure_burst"  # a shared resource is down: every run in one namespace fails for a while
    HUNG_RUN = "hung_run"  # a run stalls far past its normal duration and is eventually killed
    LATE_UPSTREAM = "late_upstream"  # a run starts late; its downstream runs wait and are late too
    MISSING_RUN = "missing_run"  # a scheduled run never starts
    VOLUME_DROP = "volume_drop"  # a run writes 0 rows or a small fraction of its usual
    VOLUME_SPIKE = "volume_spike"
    DURATION_SPIKE = "duration_spike"  # a run succeeds but takes several times longer
    SCHEMA_CHANGE = "schema_change"  # the primary output's columns change, from this run on


class SchemaOp(enum.Enum):
    ADD_COLUMN = "add_column"
    DROP_COLUMN = "drop_column"
    CHANGE_TYPE = "change_type"


@dataclass(frozen=True)
class SchemaChange:
    op: SchemaOp
    column: str
    type: str | None = None  # the new type (ADD_COLUMN, CHANGE_TYPE)

    def apply(self, fields: tuple[Field, ...]) -> tuple[Field, ...]:
        match self.op:
            case SchemaOp.ADD_COLUMN:
                return (*fields, Field(self.column, self.type or "VARCHAR"))
            case SchemaOp.DROP_COLUMN:
                return tuple(f for f in fields if f.name != self.column)
            case SchemaOp.CHANGE_TYPE:
                new_type = self.type or "VARCHAR"
                return tuple(Field(f.name, new_type) if f.name == self.column else f for f in fields)


@dataclass(frozen=True)
class Incident:
    """One ground-truth incident, as pipemon should report it."""

    id: str
    kind: IncidentKind
    pipelines: tuple[str, ...]  # directly affected pipeline ids
    start: float  # nominal (scheduled) time of the first affected run, unix seconds
    end: float  # nominal time of the last affected run
    detail: str
    task: str | None = None  # the failing or hanging task, for pipelines that have tasks
    error: ErrorSpec | None = None
    downstream: tuple[str, ...] = ()  # lineage descendants that may be late or skip runs as a result

    def to_dict(self) -> dict:
        d: dict[str, object] = {"id": self.id, "kind": self.kind.value, "pipelines": list(self.pipelines),
             "start": iso(to_ms(self.start)), "end": iso(to_ms(self.end)), "detail": self.detail,
             "task": self.task, "downstream": list(self.downstream)}
        if self.error:
            d["error"] = {"type": self.error.type, "message": self.error.message}
        return d


@dataclass(frozen=True)
class Effect:
    """What an incident does to one scheduled run."""

    incident: str  # Incident.id
    kind: IncidentKind
    pipeline: int
    nominal_ms: int
    # By kind: rows multiplier (VOLUME_*), duration multiplier (DURATION_SPIKE), delay seconds
    # (LATE_UPSTREAM), seconds until killed (HUNG_RUN), share of the failing task done (FAILURE*).
    magnitude: float = 1.0
    task: int | None = None  # index into Pipeline.tasks
    error: ErrorSpec | None = None
    change: SchemaChange | None = None


_DEFAULT_WEIGHTS = (
    (IncidentKind.FAILURE, 0.30),
    (IncidentKind.FAILURE_BURST, 0.05),
    (IncidentKind.HUNG_RUN, 0.06),
    (IncidentKind.LATE_UPSTREAM, 0.10),
    (IncidentKind.MISSING_RUN, 0.08),
    (IncidentKind.VOLUME_DROP, 0.12),
    (IncidentKind.VOLUME_SPIKE, 0.08),
    (IncidentKind.DURATION_SPIKE, 0.13),
    (IncidentKind.SCHEMA_CHANGE, 0.08),
)
SHOWCASE_ORDER = (
    IncidentKind.FAILURE, IncidentKind.VOLUME_DROP, IncidentKind.LATE_UPSTREAM, IncidentKind.DURATION_SPIKE,
    IncidentKind.SCHEMA_CHANGE, IncidentKind.MISSING_RUN, IncidentKind.VOLUME_SPIKE, IncidentKind.HUNG_RUN,
    IncidentKind.FAILURE_BURST,
)
_SHOWCASE_SPACING = int(2.5 * HOUR)
_BURST_MS = 90 * MINUTE
_BURST_MAX_PIPELINES = 12
_PROPAGATING = {IncidentKind.FAILURE, IncidentKind.FAILURE_BURST, IncidentKind.HUNG_RUN,
                IncidentKind.LATE_UPSTREAM, IncidentKind.MISSING_RUN}


@dataclass(frozen=True)
class IncidentSettings:
    rate: float = 0.02  # random incidents per pipeline per simulated day
    showcase: bool = True
    showcase_after: float = 0.0  # seconds after the simulation start when the showcase begins
    weights: tuple[tuple[IncidentKind, float], ...] = _DEFAULT_WEIGHTS


DEFAULT_INCIDENTS = IncidentSettings()
NO_INCIDENTS = IncidentSettings(rate=0.0, showcase=False)

Target = list[tuple[int, list[int]]]  # (pipeline index, affected slots), the first entry leading


@dataclass
class _Showcase:
    number: int
    kind: IncidentKind
    target: Target


@dataclass
class _PipelineEffects:
    nominal: list[int] = field(default_factory=list)  # sorted, parallel to effects
    effects: list[Effect] = field(default_factory=list)

    def add(self, effect: Effect) -> None:
        i = bisect.bisect(self.nominal, effect.nominal_ms)
        self.nominal.insert(i, effect.nominal_ms)
        self.effects.insert(i, effect)


class Planner:
    """Plans incidents for a fleet, day by day from `origin_ms`, on demand and cached."""

    def __init__(self, fleet: Fleet, origin_ms: int, settings: IncidentSettings = DEFAULT_INCIDENTS) -> None:
        self.fleet, self.origin_ms, self.settings = fleet, origin_ms, settings
        kinds, weights = zip(*settings.weights, strict=True) if settings.weights else ((), ())
        self._kinds: tuple[IncidentKind, ...] = kinds
        self._weights = np.asarray(weights, float) / max(sum(weights), 1e-12)
        self._planned_days = 0
        self._incidents: list[Incident] = []  # ordered by start
        self._effects: dict[int, _PipelineEffects] = {}
        self._fields = [p.outputs[0].fields for p in fleet.pipelines]  # current primary schema
        self._schema_timeline: dict[int, tuple[list[int], list[tuple[Field, ...]]]] = {}
        self._showcase = self._plan_showcase() if settings.showcase else []
        self._candidates = {
            IncidentKind.LATE_UPSTREAM: [p.index for p in fleet.pipelines if fleet.downstream[p.index]],
        }
        namespaces: dict[str, list[int]] = {}
        for p in fleet.pipelines:
            namespaces.setdefault(p.namespace, []).append(p.index)
        self._burst_groups = [g for _, g in sorted(namespaces.items()) if len(g) >= 3]

    # -- queries --------------------------------------------------------------------------------

    def incidents(self, start_ms: int, end_ms: int) -> list[Incident]:
        """Ground truth: incidents whose first affected run is scheduled in [start_ms, end_ms)."""
        self._plan_through(end_ms)
        lo, hi = to_seconds(start_ms), to_seconds(end_ms)
        return [i for i in self._incidents if lo <= i.start < hi]

    def effects(self, pipeline: int, start_ms: int, end_ms: int) -> list[Effect]:
        """Effects on `pipeline`'s runs scheduled in [start_ms, end_ms), in slot order."""
        self._plan_through(end_ms)
        found = self._effects.get(pipeline)
        if not found:
            return []
        lo, hi = bisect.bisect_left(found.nominal, start_ms), bisect.bisect_left(found.nominal, end_ms)
        return found.effects[lo:hi]

    def current_fields(self, pipeline: int) -> tuple[Field, ...]:
        """The primary output's columns after every schema change planned so far."""
        return self._fields[pipeline]

    def fields_at(self, pipeline: int, ms: int) -> tuple[Field, ...]:
        """The primary output's columns for a run scheduled at `ms`."""
        self._plan_through(ms + 1)
        timeline = self._schema_timeline.get(pipeline)
        if timeline is None:
            return self.fleet.pipelines[pipeline].outputs[0].fields
        times, versions = timeline
        i = bisect.bisect_right(times, ms) - 1
        return versions[i] if i >= 0 else self.fleet.pipelines[pipeline].outputs[0].fields

    # -- planning -------------------------------------------------------------------------------

    def _day_of(self, ms: int) -> int:
        return (ms - self.origin_ms) // DAY

    def _plan_through(self, end_ms: int) -> None:
        last = self._day_of(end_ms - 1)
        while self._planned_days <= last:
            self._plan_day(self._planned_days)
            self._planned_days += 1

    def _plan_day(self, day: int) -> None:
        seed = self.fleet.seed
        day_start = self.origin_ms + day * DAY
        busy: set[int] = set()  # one incident per pipeline per day keeps effects from colliding
        for show in self._showcase:
            if self._day_of(show.target[0][1][0]) == day:
                self._record(f"inc-showcase-{show.number}", show.kind, show.target,
                             np.random.default_rng([seed, show.number, 0x5C0CA5E]))
        for show in self._showcase:  # showcase runs in this day, even ones filed under the day before
            busy.update(p for p, slots in show.target if any(self._day_of(s) == day for s in slots))
        if self.settings.rate <= 0 or not self._kinds:
            return
        rng = np.random.default_rng([seed, day, 0x1C1DE27])
        for n in range(int(rng.poisson(self.settings.rate * len(self.fleet)))):
            kind = self._kinds[int(rng.choice(len(self._kinds), p=self._weights))]
            target = self._draw_target(kind, rng, day_start)
            if target and not busy.intersection(p for p, _ in target):
                busy.update(p for p, _ in target)
                self._record(f"inc-{day:04d}-{n:02d}", kind, target, rng)

    def _draw_target(self, kind: IncidentKind, rng: np.random.Generator, day_start: int) -> Target | None:
        day_end = day_start + DAY
        if kind is IncidentKind.FAILURE_BURST:
            if not self._burst_groups:
                return None
            group = self._burst_groups[int(rng.integers(len(self._burst_groups)))]
            return self._burst(group, day_start + int(rng.integers(DAY - _BURST_MS)))
        pool = self._candidates.get(kind) or range(len(self.fleet))
        pipeline = pool[int(rng.integers(len(pool)))]
        slots = self.fleet.pipelines[pipeline].schedule.slots(day_start, day_end)
        if not len(slots):  # e.g. a weekday pipeline on a Sunday
            return None
        return [(pipeline, [int(slots[int(rng.integers(len(slots)))])])]

    def _burst(self, group: list[int], start: int) -> Target | None:
        target: Target = []
        for p in group:
            slots = self.fleet.pipelines[p].schedule.slots(start, start + _BURST_MS)
            if len(slots):
                target.append((p, [int(s) for s in slots]))
        return target[:_BURST_MAX_PIPELINES] if len(target) >= 2 else None

    def _plan_showcase(self) -> list[_Showcase]:
        fleet = self.fleet
        rng = np.random.default_rng([fleet.seed, 0x5C0CA5E])
        frequent = [p.index for p in fleet.pipelines if not p.schedule.is_daily]
        feeds_frequent = [i for i in frequent
                          if any(not fleet.pipelines[c].schedule.is_daily for c in fleet.downstream[i])]
        preferred = {
            IncidentKind.LATE_UPSTREAM: feeds_frequent,
            # A killed process ends in ABORT, which the demo should show once as well.
            IncidentKind.HUNG_RUN: [i for i in frequent if not fleet.pipelines[i].tasks],
        }
        used: set[int] = set()
        shows: list[_Showcase] = []
        at = self.origin_ms + to_ms(self.settings.showcase_after) + HOUR
        for number, kind in enumerate(SHOWCASE_ORDER):
            when = at + number * _SHOWCASE_SPACING
            if kind is IncidentKind.FAILURE_BURST:
                # The namespace with the most frequent pipelines: a burst that is hard to miss.
                groups = self._namespaces_of([p for p in frequent if p not in used])
                if not groups:
                    continue
                target = self._burst(max(groups, key=lambda g: len(g[1]))[1], when)
            else:
                pool = [p for p in preferred.get(kind, frequent) if p not in used] or [
                    p for p in frequent if p not in used]
                if not pool:
                    continue
                p = pool[int(rng.integers(len(pool)))]
                target = [(p, [fleet.pipelines[p].schedule.next_slot(when)])]
            if target:
                used.update(p for p, _ in target)
                shows.append(_Showcase(number, kind, target))
        return shows

    def _namespaces_of(self, indices: list[int]) -> list[tuple[str, list[int]]]:
        groups: dict[str, list[int]] = {}
        for i in indices:
            groups.setdefault(self.fleet.pipelines[i].namespace, []).append(i)
        return sorted(groups.items())

    def _record(self, incident_id: str, kind: IncidentKind, target: Target, rng: np.random.Generator) -> None:
        lead, first_slot = self.fleet.pipelines[target[0][0]], target[0][1][0]
        template, detail = _BUILDERS[kind](self, rng, lead)
        for p, slots in target:
            task = template.task
            if kind is IncidentKind.FAILURE_BURST:  # the outage hits each pipeline in its first task
                task = 0 if self.fleet.pipelines[p].tasks else None
            for s in slots:
                effect = replace(template, incident=incident_id, pipeline=p, nominal_ms=s, task=task)
                self._effects.setdefault(p, _PipelineEffects()).add(effect)
        if template.change is not None:
            times, versions = self._schema_timeline.setdefault(lead.index, ([], []))
            self._fields[lead.index] = template.change.apply(self._fields[lead.index])
            times.append(first_slot)
            versions.append(self._fields[lead.index])
        slots = [s for _, ss in target for s in ss]
        downstream = self.fleet.descendants(p for p, _ in target) if kind in _PROPAGATING else ()
        incident = Incident(
            id=incident_id, kind=kind, pipelines=tuple(self.fleet.pipelines[p].id for p, _ in target),
            start=to_seconds(min(slots)), end=to_seconds(max(slots)), detail=detail,
            task=lead.tasks[template.task] if template.task is not None else None, error=template.error,
            downstream=tuple(self.fleet.pipelines[d].id for d in downstream),
        )
        bisect.insort(self._incidents, incident, key=lambda i: (i.start, i.id))


# -- what each kind does: (Effect template for the lead pipeline, ground-truth detail) ----------

_Builder = Callable[[Planner, np.random.Generator, Pipeline], tuple[Effect, str]]


def _template(kind: IncidentKind, magnitude: float = 1.0, task: int | None = None,
              error: ErrorSpec | None = None, change: SchemaChange | None = None) -> Effect:
    return Effect("", kind, -1, -1, magnitude, task, error, change)


def _error(p: Pipeline, type_: str, template: str, task: int | None) -> ErrorSpec:
    task_name = p.tasks[task] if task is not None else p.name
    source = p.inputs[0] if p.inputs else p.outputs[0]
    message = template.format(task=task_name, source=f"{source.namespace}/{source.name}",
                              output=p.outputs[0].name, host=source.namespace.split("://")[-1].split(":")[0])
    where = f'  File "/opt/pipelines/{p.name}.py", line 88, in {task_name}\n'
    if LANGUAGE[p.integration] == "PYTHON":
        trace = f"Traceback (most recent call last):\n{where}{type_}: {message}"
    else:
        trace = f"{type_}: {message}\n\tat {p.name}.{task_name}(job:1)"
    return ErrorSpec(type_, message, LANGUAGE[p.integration], trace)


def _random_task(p: Pipeline, rng: np.random.Generator) -> int | None:
    return int(rng.integers(len(p.tasks))) if p.tasks else None


def _failure(planner: Planner, rng: np.random.Generator, p: Pipeline) -> tuple[Effect, str]:
    task = _random_task(p, rng)
    options = FAILURES[p.integration]
    error = _error(p, *options[int(rng.integers(len(options)))], task)
    where = f"task {p.tasks[task]}" if task is not None else p.name
    done = float(rng.uniform(0.2, 0.95))
    return _template(IncidentKind.FAILURE, done, task, error), f"{where} failed: {error.type}"


def _burst(planner: Planner, rng: np.random.Generator, p: Pipeline) -> tuple[Effect, str]:
    resource, type_, message = OUTAGES[p.integration]
    error = ErrorSpec(type_, message, LANGUAGE[p.integration])
    detail = f"{resource} outage: runs in {p.namespace} fail for {_BURST_MS // MINUTE} min ({type_})"
    done = float(rng.uniform(0.05, 0.3))
    return _template(IncidentKind.FAILURE_BURST, done, 0 if p.tasks else None, error), detail


def _hung(planner: Planner, rng: np.random.Generator, p: Pipeline) -> tuple[Effect, str]:
    task = _random_task(p, rng)
    hang_s = float(np.clip(10 * p.behaviour.duration_s, 45 * 60, 6 * 3600)) * float(rng.uniform(1.0, 1.3))
    error = _error(p, *TIMEOUTS[p.integration], task)
    where = f"task {p.tasks[task]}" if task is not None else p.name
    detail = f"{where} hung; killed after {hang_s / 3600:.1f} h"
    return _template(IncidentKind.HUNG_RUN, hang_s, task, error), detail


def _late(planner: Planner, rng: np.random.Generator, p: Pipeline) -> tuple[Effect, str]:
    low, high = (3600, 3 * 3600) if p.schedule.is_daily else (30 * 60, 150 * 60)
    delay = float(rng.uniform(low, high))
    detail = f"started {delay / 60:.0f} min late; downstream runs wait"
    return _template(IncidentKind.LATE_UPSTREAM, delay), detail


def _missing(planner: Planner, rng: np.random.Generator, p: Pipeline) -> tuple[Effect, str]:
    return _template(IncidentKind.MISSING_RUN), "scheduled run never started"


def _volume_drop(planner: Planner, rng: np.random.Generator, p: Pipeline) -> tuple[Effect, str]:
    factor = 0.0 if rng.random() < 0.3 else float(rng.uniform(0.02, 0.3))
    detail = "wrote 0 rows" if factor == 0 else f"wrote {factor:.0%} of the usual rows"
    return _template(IncidentKind.VOLUME_DROP, factor), detail


def _volume_spike(planner: Planner, rng: np.random.Generator, p: Pipeline) -> tuple[Effect, str]:
    factor = float(rng.uniform(3, 12))
    return _template(IncidentKind.VOLUME_SPIKE, factor), f"wrote {factor:.1f}x the usual rows"


def _duration_spike(planner: Planner, rng: np.random.Generator, p: Pipeline) -> tuple[Effect, str]:
    factor = float(rng.uniform(3, 8))
    return _template(IncidentKind.DURATION_SPIKE, factor), f"took {factor:.1f}x its usual time"


def _schema_change(planner: Planner, rng: np.random.Generator, p: Pipeline) -> tuple[Effect, str]:
    current = planner.current_fields(p.index)
    keys = {name for name, _ in KEY_FIELDS}
    optional = [f for f in current if f.name not in keys]
    addable = [f for f in ADDED_FIELDS if f[0] not in {c.name for c in current}]
    ops = (SchemaOp.ADD_COLUMN, SchemaOp.DROP_COLUMN, SchemaOp.CHANGE_TYPE)
    op = ops[int(rng.choice(3, p=[0.4, 0.3, 0.3]))] if optional else SchemaOp.ADD_COLUMN
    if op is SchemaOp.ADD_COLUMN and addable:
        name, type_ = addable[int(rng.integers(len(addable)))]
        change, detail = SchemaChange(op, name, type_), f"column {name} {type_} added"
    elif op is SchemaOp.CHANGE_TYPE:
        column = optional[int(rng.integers(len(optional)))]
        new = RETYPED.get(column.type, "VARCHAR")
        change, detail = SchemaChange(op, column.name, new), f"column {column.name}: {column.type} -> {new}"
    else:
        column = optional[int(rng.integers(len(optional)))] if optional else current[-1]
        change, detail = SchemaChange(SchemaOp.DROP_COLUMN, column.name), f"column {column.name} dropped"
    return _template(IncidentKind.SCHEMA_CHANGE, change=change), f"{p.outputs[0].name}: {detail}"


_BUILDERS: dict[IncidentKind, _Builder] = {
    IncidentKind.FAILURE: _failure,
    IncidentKind.FAILURE_BURST: _burst,
    IncidentKind.HUNG_RUN: _hung,
    IncidentKind.LATE_UPSTREAM: _late,
    IncidentKind.MISSING_RUN: _missing,
    IncidentKind.VOLUME_DROP: _volume_drop,
    IncidentKind.VOLUME_SPIKE: _volume_spike,
    IncidentKind.DURATION_SPIKE: _duration_spike,
    IncidentKind.SCHEMA_CHANGE: _schema_change,
}
