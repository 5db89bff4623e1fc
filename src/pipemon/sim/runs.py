"""Scheduled runs in simulated time: when each starts and ends, how it ends, what it writes.

`Simulation.step` computes one window of scheduled slots for every pipeline, in topological order,
as numpy arrays (`RunBatch`). A run starts at its slot plus scheduler jitter, or, when it has
upstreams, once the upstream run it waits for has finished; if that run did not succeed it is never
triggered (SKIPPED), so failures, hangs and missing runs propagate down the lineage. The run a
downstream slot waits for is each upstream's latest slot at or before it, which is all the state
that crosses windows: the result does not depend on how time is cut into windows.

`run_records` is the fast path over the same arrays: plain tuples, no OpenLineage, for bulk loads.
"""
from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

import numpy as np

from pipemon.sim import noise
from pipemon.sim.catalog import Integration
from pipemon.sim.fleet import Fleet, Pipeline
from pipemon.sim.incidents import DEFAULT_INCIDENTS, Effect, IncidentKind, IncidentSettings, Planner
from pipemon.sim.noise import Stream
from pipemon.sim.schedule import DAY, HOUR, SECOND, to_ms, weekday

_NEVER = np.iinfo(np.int64).min


class RunStatus(enum.IntEnum):
    SUCCESS = 0
    FAILED = 1
    ABORTED = 2  # killed from outside (a hung process)
    MISSING = 3  # never triggered: an injected missing run
    SKIPPED = 4  # never triggered: the upstream run it waits for did not succeed

    @property
    def happened(self) -> bool:
        return self <= RunStatus.ABORTED


_STATUSES = tuple(RunStatus)
_KILLED_NOT_FAILED = (Integration.SPARK, Integration.CRON)  # no task to fail: the process is killed


@dataclass(frozen=True, eq=False)
class RunBatch:
    """One pipeline's runs scheduled in one window: parallel arrays, one element per slot."""

    pipeline: Pipeline
    nominal: np.ndarray  # int64 ms, ascending
    start: np.ndarray  # int64 ms
    end: np.ndarray  # int64 ms
    status: np.ndarray  # int8 RunStatus
    rows: np.ndarray  # int64; -1 unless SUCCESS
    bytes: np.ndarray  # int64; -1 unless SUCCESS
    run_hi: np.ndarray  # uint64 halves of the run's UUID
    run_lo: np.ndarray
    effects: dict[int, Effect]  # slot position -> the incident effect on that run

    def run_ids(self) -> list[str]:
        return noise.uuid_strings(self.run_hi, self.run_lo)


class RunRecord(NamedTuple):
    """A finished pipeline run, the fast path's output (tasks are not included)."""

    pipeline: str  # Pipeline.id
    run_id: str  # the same UUID the OpenLineage stream uses for this run
    nominal_time: float  # unix seconds
    start: float
    end: float
    status: RunStatus  # SUCCESS, FAILED or ABORTED
    rows: int | None  # None unless SUCCESS
    bytes: int | None


class Simulation:
    """Runs of a fleet, window by window; windows must follow each other without gaps."""

    def __init__(self, fleet: Fleet, planner: Planner) -> None:
        self.fleet, self.planner = fleet, planner
        n = len(fleet)
        # The latest slot seen so far per pipeline: what a downstream run waits for across windows.
        self._last_nominal = np.full(n, _NEVER, np.int64)
        self._last_end = np.full(n, _NEVER, np.int64)
        self._last_ok = np.ones(n, bool)
        self._cursor: int | None = None

    def step(self, start_ms: int, end_ms: int) -> Iterator[RunBatch]:
        """Runs scheduled in [start_ms, end_ms), one batch per pipeline that has any, in topological
        order. Lazy, to keep one window of a 10,000-pipeline fleet out of memory: consume it fully
        before the next step."""
        if self._cursor is not None and start_ms != self._cursor:
            raise ValueError(f"windows must be contiguous: expected start {self._cursor}, got {start_ms}")
        self._cursor = end_ms
        return self._step(start_ms, end_ms)

    def _step(self, start_ms: int, end_ms: int) -> Iterator[RunBatch]:
        waited_on: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for p in self.fleet.pipelines:
            batch = self._simulate(p, start_ms, end_ms, waited_on)
            i = p.index
            if self.fleet.downstream[i]:
                waited_on[i] = self._with_last(i, batch)
            if batch is not None:
                self._last_nominal[i] = batch.nominal[-1]
                self._last_end[i] = batch.end[-1]
                self._last_ok[i] = batch.status[-1] == RunStatus.SUCCESS
                yield batch

    def _with_last(self, i: int, batch: RunBatch | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What pipeline i's downstream runs may wait for: (nominal, end, succeeded) of its latest
        slot in earlier windows, then of this window's slots. Copies, never views of `_last_*`."""
        parts = []
        if self._last_nominal[i] != _NEVER:
            parts.append((self._last_nominal[i:i + 1], self._last_end[i:i + 1], self._last_ok[i:i + 1]))
        if batch is not None:
            parts.append((batch.nominal, batch.end, batch.status == RunStatus.SUCCESS))
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool)
        nominal, end, ok = (np.concatenate(column) for column in zip(*parts, strict=True))
        return nominal, end, ok

    def _simulate(self, p: Pipeline, start_ms: int, end_ms: int,
                  waited_on: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> RunBatch | None:
        slots = p.schedule.slots(start_ms, end_ms)
        n = len(slots)
        if not n:
            return None
        seed, i, b = self.fleet.seed, p.index, p.behaviour
        jitter = -np.log(noise.uniform(seed, i, Stream.JITTER, slots)) * (b.jitter_s * SECOND)  # exponential
        start = slots + jitter.astype(np.int64)
        volume = self._volume(p, slots)
        rows_noise = noise.normal(seed, i, Stream.ROWS_A, Stream.ROWS_B, slots)
        rows = b.rows * volume * np.exp(b.rows_sigma * rows_noise)
        duration_noise = noise.normal(seed, i, Stream.DURATION_A, Stream.DURATION_B, slots)
        duration = (b.duration_s * SECOND) * np.sqrt(volume) * np.exp(b.duration_sigma * duration_noise)
        status = np.zeros(n, np.int8)

        effects: dict[int, Effect] = {}
        for e in self.planner.effects(i, start_ms, end_ms):
            k = int(np.searchsorted(slots, e.nominal_ms))
            effects[k] = e
            m = e.magnitude
            match e.kind:
                case IncidentKind.FAILURE | IncidentKind.FAILURE_BURST:
                    status[k] = RunStatus.FAILED
                    duration[k] *= _share_before_failure(p, e.task, m)
                case IncidentKind.HUNG_RUN:
                    status[k] = RunStatus.ABORTED if p.integration in _KILLED_NOT_FAILED else RunStatus.FAILED
                    duration[k] = m * SECOND
                case IncidentKind.LATE_UPSTREAM:
                    start[k] += int(m * SECOND)
                case IncidentKind.MISSING_RUN:
                    status[k] = RunStatus.MISSING
                case IncidentKind.VOLUME_DROP | IncidentKind.VOLUME_SPIKE:
                    rows[k] *= m
                    duration[k] *= np.sqrt(max(m, 0.05))  # less data, quicker run; more, slower
                case IncidentKind.DURATION_SPIKE:
                    duration[k] *= m
                case IncidentKind.SCHEMA_CHANGE:
                    pass  # only the output's columns change; see Planner.fields_at

        if p.upstream:
            ready = np.full(n, _NEVER, np.int64)
            upstream_ok = np.ones(n, bool)
            for u in p.upstream:
                u_nominal, u_end, u_ok = waited_on[u]
                if not len(u_nominal):
                    continue  # nothing known before the simulation starts: assume it was there
                latest = np.searchsorted(u_nominal, slots, side="right") - 1
                known = latest >= 0
                latest = np.maximum(latest, 0)
                ready = np.where(known, np.maximum(ready, u_end[latest]), ready)
                upstream_ok &= ~known | u_ok[latest]
            poll = int(b.poll_s * SECOND)
            start = np.where(ready != _NEVER, np.maximum(start, ready + poll), start)
            status[~upstream_ok & (status != RunStatus.MISSING)] = RunStatus.SKIPPED

        success = status == RunStatus.SUCCESS
        rows_out = np.where(success, np.rint(rows).astype(np.int64), -1)
        width = b.row_bytes * (0.97 + 0.06 * noise.uniform(seed, i, Stream.BYTES, slots))
        bytes_out = np.where(success, np.rint(rows_out * width).astype(np.int64), -1)
        hi, lo = noise.uuid7_parts(slots, noise.bits(seed, i, Stream.RUN_ID_HI, slots),
                                   noise.bits(seed, i, Stream.RUN_ID_LO, slots))
        return RunBatch(p, slots, start, start + duration.astype(np.int64), status, rows_out, bytes_out,
                        hi, lo, effects)

    def _volume(self, p: Pipeline, slots: np.ndarray) -> np.ndarray:
        """Relative data volume: weekly shape, time-of-day curve, slow trend."""
        b = p.behaviour
        day = weekday(slots)
        factor = np.where(day >= 5, b.weekend, np.where(day == 0, b.monday, 1.0))
        if b.diurnal:
            hour = (slots % DAY) / HOUR
            factor = factor * (1.0 + b.diurnal * np.sin(2 * np.pi * (hour - 9.0) / 24.0))  # peaks at 15:00
        return factor * np.exp(b.growth_per_day * (slots - self.planner.origin_ms) / DAY)


def _share_before_failure(p: Pipeline, task: int | None, done: float) -> float:
    """Fraction of a normal run that passes before it fails `done` of the way into `task`."""
    if task is None:
        return done
    shares = p.behaviour.task_shares
    return sum(shares[:task]) + shares[task] * done


def run_records(fleet: Fleet, start: float, end: float, *, incidents: IncidentSettings = DEFAULT_INCIDENTS,
                window_days: float = 32) -> Iterator[RunRecord]:
    """Every pipeline run scheduled in [start, end) that happened, fast.

    Grouped per window (`window_days`) and per pipeline, not sorted by time. A run's end may lie
    past `end`. Same runs, ids and incidents as the event stream of a Feeder started at `start`.
    """
    planner = Planner(fleet, to_ms(start), incidents)
    sim = Simulation(fleet, planner)
    window = to_ms(window_days * DAY / SECOND)
    w0, stop = to_ms(start), to_ms(end)
    while w0 < stop:
        w1 = min(w0 + window, stop)
        for batch in sim.step(w0, w1):
            yield from _records(batch)
        w0 = w1


def _records(batch: RunBatch) -> Iterator[RunRecord]:
    happened = batch.status <= RunStatus.ABORTED
    pick: slice | np.ndarray = slice(None) if happened.all() else np.flatnonzero(happened)
    ids = noise.uuid_strings(batch.run_hi[pick], batch.run_lo[pick])
    nominal = (batch.nominal[pick] / SECOND).tolist()
    start = (batch.start[pick] / SECOND).tolist()
    end = (batch.end[pick] / SECOND).tolist()
    status = [_STATUSES[s] for s in batch.status[pick].tolist()]
    rows = [r if r >= 0 else None for r in batch.rows[pick].tolist()]
    size = [s if s >= 0 else None for s in batch.bytes[pick].tolist()]
    return map(RunRecord._make, zip(repeat(batch.pipeline.id), ids, nominal, start, end, status, rows, size))
