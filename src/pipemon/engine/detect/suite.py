"""The fleet's detectors: per-pipeline state, one timer heap, findings out.

    observe_start(pid, run_id, start, now)   cadence matches the start (EXTRA_RUN?); the run is timed
    observe_run(pid, run, now)               duration / rows / bytes scored then learned; failure
                                             streak; schema; (an unseen start is implied)
    observe_value(pid, ts, value, now)       a generic metric series
    tick(now)                                LATE / MISSING / RUNNING_LONG whose deadline has passed
    next_due()                               when tick next has something to do (a live timer)

The heap holds at most one cadence entry per pipeline plus one per running run (a backtest, which knows
when a run ends, queues only those due before that), keyed by deadline,
so a tick over 100,000 pipelines pops only what is due. Entries are checked, not deleted, when
their pipeline moved on (a lazily invalidated heap). A finished run's timer is dead for good: those
are swept out in bulk once they are half the heap, rather than each popped at its deadline.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import heapq
import itertools
from collections.abc import Iterator
from typing import Any, Final
from zoneinfo import ZoneInfo

from pipemon.engine.detect import explain
from pipemon.engine.detect.base import (
    ALARM_SCORE,
    DEFAULT_SENSITIVITY,
    DetectSpec,
    Direction,
    Finding,
    FindingKind,
    RunObservation,
    RunStatus,
    Verdict,
)
from pipemon.engine.detect.cadence import CadenceDetector
from pipemon.engine.detect.calendar import NO_CALENDAR, Calendar, calendar_of
from pipemon.engine.detect.failures import FailureRate
from pipemon.engine.detect.coupling import Coupling
from pipemon.engine.detect.metric import MIN_SCALE, SHIFT_Z, Expect, MetricBaseline
from pipemon.engine.detect.schema import SchemaWatch
from pipemon.engine.schedule import Schedule

METRIC_KINDS: Final = {"duration_s": FindingKind.DURATION, "rows": FindingKind.VOLUME,
                       "bytes": FindingKind.VOLUME, "value": FindingKind.VALUE}
_LABELS: Final = {"duration_s": "duration", "rows": "rows", "bytes": "bytes", "value": "value"}
_MAX_RUNNING: Final = 16  # in-flight runs kept per pipeline (a lost completion must not grow state)
_STALE_S: Final = 7 * 86400.0  # an in-flight run older than this no longer excuses missed slots
_SWEEP_MIN: Final = 256  # dead run timers before a sweep is worth it


class _Running:
    __slots__ = ("alarmed", "deadline", "expect", "queued", "run_id", "start")

    def __init__(self, start: float, deadline: float | None, alarmed: bool = False,
                 expect: tuple[int, Expect] | None = None, run_id: str = "") -> None:
        self.start = start
        self.deadline = deadline  # None once the run is over: its heap entry is dead
        self.alarmed = alarmed
        self.expect = expect  # (duration model version, its expectation for this run): reused at the end
        self.run_id = run_id
        self.queued = False  # its deadline has an entry in the heap


class _Timer:
    """A heap entry: (due, seq) order, seq keeping ties FIFO; a native object under mypyc, so a
    comparison reads two unboxed fields instead of a tuple and a boxed float."""
    __slots__ = ("due", "p", "rec", "seq")

    def __init__(self, due: float, seq: int, p: _Pipeline, rec: _Running | None) -> None:
        self.due = due
        self.seq = seq
        self.p = p
        self.rec = rec  # None for the pipeline's cadence check, else the run to time

    def __lt__(self, other: _Timer) -> bool:
        return self.due < other.due or (self.due == other.due and self.seq < other.seq)


class _Pipeline:
    __slots__ = (
        "cad_queued",
        "cadence",
        "cal",
        "duration",
        "failures",
        "max_duration_s",
        "metrics",
        "pid",
        "rows",
        "running",
        "schema",
        "sens",
        "spec",
        "zone",
    )

    def __init__(self, pid: str, spec: DetectSpec) -> None:
        self.pid = pid
        self.reset(spec)

    def reset(self, spec: DetectSpec) -> None:
        """Everything learned forgotten (as new), the object kept: the heap's entries point at it."""
        self.metrics: dict[str, MetricBaseline] = {}
        # metrics["duration_s"] and ["rows"] when there: read every run, a slot is cheaper than a lookup
        self.duration: MetricBaseline | None = None
        self.rows: MetricBaseline | None = None
        self.failures = FailureRate()
        self.schema = SchemaWatch()
        self.running: dict[str, _Running] = {}
        self.cad_queued: float | None = None
        self.spec = spec
        self.cadence = _cadence_for(spec)
        self._apply(spec)

    def set_spec(self, spec: DetectSpec) -> None:
        """A new spec keeps every baseline; only a changed schedule restarts the cadence detector."""
        if _schedule_of(spec) != _schedule_of(self.spec):
            self.cadence = _cadence_for(spec)
            self.cad_queued = None
        self.spec = spec
        self._apply(spec)

    def _apply(self, spec: DetectSpec) -> None:
        self.sens = spec.sensitivity
        self.max_duration_s = spec.max_duration_s
        self.cal: Calendar = calendar_of(spec.holidays) if spec.holidays else NO_CALENDAR
        for b in self.metrics.values():
            b.cal = self.cal
        self.cadence.holidays = spec.holidays
        self.zone = None if spec.timezone in ("UTC", "Etc/UTC") else ZoneInfo(spec.timezone)

    def local(self, t: float) -> float:
        """t shifted by the pipeline's UTC offset: seasonal buckets follow the local day."""
        if self.zone is None:
            return t
        off = self.zone.utcoffset(_dt.datetime.fromtimestamp(t, self.zone).replace(tzinfo=None))
        return t + (off.total_seconds() if off else 0.0)

    def baseline(self, metric: str) -> MetricBaseline:
        b = self.metrics.get(metric)
        if b is None:
            b = self.metrics[metric] = MetricBaseline(log=metric != "value")
            b.cal = self.cal
            if metric == "duration_s":
                b.given = Coupling()
            self.cache_metrics()
        return b

    def cache_metrics(self) -> None:
        self.duration = self.metrics.get("duration_s")
        self.rows = self.metrics.get("rows")


def _schedule_of(spec: DetectSpec) -> tuple[object, ...]:
    return spec.cron, spec.timezone, spec.interval_s, spec.grace_s, spec.manual


def _cadence_for(spec: DetectSpec) -> CadenceDetector:
    if spec.manual:
        manual = CadenceDetector()
        manual.learner = None  # nothing to learn, nothing owed
        return manual
    if spec.cron or spec.interval_s:
        return CadenceDetector(Schedule.declared(spec.cron, spec.timezone, spec.interval_s, spec.grace_s))
    return CadenceDetector()  # learned from the runs


class DetectorSuite:
    def __init__(self, sensitivity: float = DEFAULT_SENSITIVITY) -> None:
        self.default_spec = DetectSpec(sensitivity=sensitivity)
        self._p: dict[str, _Pipeline] = {}
        self._heap: list[_Timer] = []
        self._seq = itertools.count()
        self._dead = 0  # entries of runs already over, still in the heap

    # ------------------------------------------------------------------------------ pipelines
    def configure(self, pipeline_id: str, spec: DetectSpec, now: float | None = None) -> None:
        """Declare (or re-declare) a pipeline. With `now`, a declared schedule is watched from then on,
        so a pipeline that never runs is late at its first deadline; without it, from its first run."""
        p = self._p.get(pipeline_id)
        if p is None:
            p = self._p[pipeline_id] = _Pipeline(pipeline_id, spec)
        else:
            p.set_spec(spec)
        if now is not None:
            p.cadence.watch_from(now)
            self._queue_cadence(p)

    def spec_of(self, pipeline_id: str) -> DetectSpec | None:
        """What a pipeline was declared with (None: not yet declared)."""
        p = self._p.get(pipeline_id)
        return p.spec if p is not None else None

    def pipelines(self) -> Iterator[str]:
        return iter(self._p)

    def schedule(self, pipeline_id: str) -> Schedule | None:
        p = self._p.get(pipeline_id)
        return None if p is None else p.cadence.schedule

    def _get(self, pid: str) -> _Pipeline:
        p = self._p.get(pid)
        if p is None:
            p = self._p[pid] = _Pipeline(pid, self.default_spec)
        return p

    # ---------------------------------------------------------------------------------- runs
    def observe_start(self, pipeline_id: str, run_id: str, start: float, now: float,
                      nominal: float | None = None, ends: float | None = None) -> list[Finding]:
        """A run started. `nominal`: the scheduled time it is for, when the scheduler says (OpenLineage
        nominalTime); an undeclared schedule is then learned from those, exactly. `ends`: when its
        completion will be observed, when the caller already knows (a backtest): a running-long timer
        due after that could never fire, so it is not queued (at fleet scale the heap's sifts over
        scattered timers are a large share of a run's cost)."""
        p = self._p.get(pipeline_id)
        if p is None:
            p = self._get(pipeline_id)
        running = p.running
        if run_id in running:
            return []
        in_flight = False
        for r in running.values():
            if start - r.start < _STALE_S:
                in_flight = True
                break
        out = self._start(p, run_id, start, nominal, in_flight)
        b = p.duration
        if b is None:
            expect = None
            deadline = self._long_deadline(p, start, None, None)
        else:
            e = b.expect(start if p.zone is None else p.local(start))
            expect = (b.version, e)
            deadline = self._long_deadline(p, start, b, e)
        if len(running) >= _MAX_RUNNING:
            self._retire(running.pop(next(iter(running))))
        rec = running[run_id] = _Running(start, deadline, False, expect, run_id)
        if deadline is not None and (ends is None or deadline <= ends):
            rec.queued = True
            heapq.heappush(self._heap, _Timer(deadline, next(self._seq), p, rec))
        return out

    def _start(self, p: _Pipeline, run_id: str, start: float, nominal: float | None = None,
               in_flight: bool = False) -> list[Finding]:
        f = p.cadence.on_start(p.pid, run_id, start, nominal, in_flight)
        self._queue_cadence(p)
        return [f] if f is not None else []

    def observe_run(self, pipeline_id: str, run: RunObservation, now: float) -> list[Finding]:
        """A finished run: each metric is scored with what came before, then learned."""
        return self.observe_completion(pipeline_id, run.run_id, run.start, run.status, run.duration_s,
                                       run.rows, run.bytes, now, run.nominal_time, run.schemas)

    def observe_completion(self, pipeline_id: str, run_id: str, start: float, status: RunStatus,
                           duration_s: float | None, rows: float | None, bytes_: float | None, now: float,
                           nominal: float | None = None,
                           schemas: dict[str, tuple[tuple[str, str], ...]] | None = None) -> list[Finding]:
        """observe_run with the run's fields as arguments: the backtest's million runs need no
        RunObservation each (a frozen dataclass costs a setattr per field to build)."""
        p = self._p.get(pipeline_id)
        if p is None:
            p = self._get(pipeline_id)
        rec = p.running.pop(run_id, None)
        if rec is None:
            out = self._start(p, run_id, start, nominal)
            long_alarmed, kept = False, None
        else:
            out = []
            self._retire(rec)
            long_alarmed, kept = rec.alarmed, rec.expect
        if status is RunStatus.SUCCEEDED:
            t = nominal if nominal is not None else start
            if p.zone is not None:
                t = p.local(t)
            # rows first: the duration is judged against the rows its run reported (coupling.py)
            given, ordinary, f_rows = None, False, None
            if rows is not None:
                br = p.rows if p.rows is not None else p.baseline("rows")
                er = br.expect(t)
                if duration_s is not None and rows > 0 and er[4] and br.dev_n >= MIN_SCALE:
                    given = br.residual(er, rows)
                    ordinary = -SHIFT_Z * er[5] < given < SHIFT_Z * er[5]
                f_rows = self._metric(p, "rows", t, rows, run_id, now, kept=(br.version, er))
                if br.jump and p.duration is not None:
                    p.duration.follow(br.jump)  # a volume shift moves the duration with it
            if duration_s is not None:
                f = self._metric(p, "duration_s", t, duration_s, run_id, now, quiet_high=long_alarmed,
                                 kept=kept if nominal is None else None, given=given, given_ordinary=ordinary)
                if f is not None:
                    out.append(f)
            if f_rows is not None:
                out.append(f_rows)
            if bytes_ is not None:
                f = self._metric(p, "bytes", t, bytes_, run_id, now)
                if f is not None:
                    out.append(f)
        if status is not RunStatus.ABORTED:
            failed = status is RunStatus.FAILED
            f = p.failures.observe(pipeline_id, run_id, now, failed, p.sens)
            if f is not None:
                out.append(f)
            p.cadence.on_finish(failed)
        if schemas:
            out.extend(p.schema.observe(pipeline_id, run_id, now, schemas))
        return out

    def _retire(self, rec: _Running) -> None:
        """A run is over: its timer, if still in the heap, is dead. Swept out once they are half of it."""
        if rec.queued and rec.deadline is not None and not rec.alarmed:
            self._dead += 1
            if self._dead >= _SWEEP_MIN and 2 * self._dead > len(self._heap):
                self._sweep()
        rec.deadline = None

    def _sweep(self) -> None:
        heap = self._heap
        heap[:] = [e for e in heap if e.rec is None or e.rec.deadline is not None]
        heapq.heapify(heap)
        self._dead = 0

    def observe_value(self, pipeline_id: str, ts: float, value: float, now: float) -> list[Finding]:
        """One point of a generic metric series (no runs, no schedule)."""
        p = self._get(pipeline_id)
        f = self._metric(p, "value", p.local(ts), value, None, now)
        return [] if f is None else [f]

    def _metric(self, p: _Pipeline, metric: str, t: float, x: float, run_id: str | None, now: float,
                quiet_high: bool = False, kept: tuple[int, Expect] | None = None, given: float | None = None,
                given_ordinary: bool = False) -> Finding | None:
        b = p.duration if metric == "duration_s" else p.rows if metric == "rows" else p.metrics.get(metric)
        if b is None:
            b = p.baseline(metric)
        line = ALARM_SCORE / p.sens
        res, _, report = b.update(t, x, line, kept[1] if kept is not None and kept[0] == b.version else None,
                                  given, given_ordinary)
        if not report or res is None:
            return None
        z, mu, s, season = res
        if quiet_high and z > 0:  # already raised as RUNNING_LONG while it ran
            return None
        lo, exp, hi = b.band_at(mu, s, line)
        v = explain.value
        # (a duration judged against its run's rows says so: the band is for that many rows)
        coupled = given is not None and b.given is not None and b.given.ready() and z > 0
        text = (f"{_LABELS[metric]} {v(metric, x)}"
                f"{' on a successful run' if metric != 'value' and x == 0 else ''}"
                f", expected {v(metric, exp)}{' for its rows' if coupled else ''}"
                f" ({v(metric, lo)}-{v(metric, hi)}){explain.season(*season)}")
        return Finding(p.pid, METRIC_KINDS[metric], metric, now, run_id, float(x), exp, lo, hi, abs(z),
                       Direction.HIGH if z > 0 else Direction.LOW, text)

    # --------------------------------------------------------------------------------- clock
    def tick(self, now: float) -> list[Finding]:
        """Everything due by `now`, each stamped with the moment it became due (<= now)."""
        out: list[Finding] = []
        heap = self._heap
        while heap and heap[0].due <= now:
            top = heap[0]
            due, p, rec = top.due, top.p, top.rec
            if rec is not None:  # a run's timer
                heapq.heappop(heap)
                if rec.deadline is None:
                    self._dead -= 1
                elif rec.deadline == due and not rec.alarmed:
                    rec.alarmed = True
                    out.append(self._long_finding(p, rec.run_id, rec, due))
                continue
            cadence, sens = p.cadence, p.sens
            dl = cadence.due(sens)
            if dl is not None and dl <= due:
                running = self._holds_schedule(p, due)
                out.extend(cadence.on_due(p.pid, due, sens, running))
                dl = cadence.due(sens)
            # the pipeline's next check replaces this one (one sift instead of a pop and a push)
            p.cad_queued = dl
            if dl is None:
                heapq.heappop(heap)
            else:
                top.due = dl
                top.seq = next(self._seq)
                heapq.heapreplace(heap, top)
        return out

    def _holds_schedule(self, p: _Pipeline, due: float) -> bool:
        """Whether a run in flight excuses a slot without its start at `due`. It does while it is young,
        unless the scheduler lately started runs beside running ones: there a run holds nothing back
        once it is a suspect itself (past half the running-long line, as a finished run is), and the
        missed slot is the sign of a hung run whose own line may lie hours beyond its window."""
        overlaps = p.cadence.overlaps(due)
        for r in p.running.values():
            age = due - r.start
            if age >= _STALE_S:
                continue
            if not overlaps:
                return True
            b, kept = p.duration, r.expect
            # the expectation the run got at its start (its running-long line's): any version will do
            half = b.upper_of(kept[1], SHIFT_Z / p.sens) if b is not None and kept is not None else None
            if half is None or age < half:
                return True
        return False

    def next_due(self) -> float | None:
        return self._heap[0].due if self._heap else None

    def _queue_cadence(self, p: _Pipeline) -> None:
        due = p.cadence.due(p.sens)
        if due is not None and (p.cad_queued is None or due < p.cad_queued):
            heapq.heappush(self._heap, _Timer(due, next(self._seq), p, None))
            p.cad_queued = due

    def _long_deadline(self, p: _Pipeline, start: float, b: MetricBaseline | None,
                       e: Expect | None) -> float | None:
        up = b.upper_of(e, ALARM_SCORE / p.sens) if b is not None and e is not None else None
        dl = None if up is None else start + up
        mx = p.max_duration_s
        if mx is not None and (dl is None or start + mx < dl):
            dl = start + mx
        return dl

    def _long_finding(self, p: _Pipeline, run_id: str, rec: _Running, now: float) -> Finding:
        elapsed = now - rec.start
        b = p.metrics.get("duration_s")
        t = p.local(rec.start)
        band = b.band(t, ALARM_SCORE / p.sens) if b is not None else None
        z = b.z_of(t, elapsed) if b is not None else None
        mx = p.spec.max_duration_s
        score = max(z or 0.0, ALARM_SCORE * elapsed / mx if mx else 0.0, ALARM_SCORE / p.sens)
        if band is not None:
            lo, exp, hi = band
            usual = f"usually {explain.duration(exp)} ({explain.duration(lo)}-{explain.duration(hi)})"
            return Finding(p.pid, FindingKind.RUNNING_LONG, "duration_s", now, run_id, elapsed, exp, lo, hi,
                           score, Direction.HIGH, f"still running after {explain.duration(elapsed)}, {usual}")
        return Finding(p.pid, FindingKind.RUNNING_LONG, "duration_s", now, run_id, elapsed, None, None, mx,
                       score, Direction.HIGH, f"still running after {explain.duration(elapsed)}, "
                                              f"declared max {explain.duration(mx)}")

    # ------------------------------------------------------------------------------ feedback
    def feedback(self, pipeline_id: str, metric: str, verdict: Verdict) -> None:
        """An operator's verdict on a finding of `metric`; honoured from the next run on."""
        p = self._p[pipeline_id]
        expected = verdict is Verdict.EXPECTED
        if metric in p.metrics:
            if expected:
                p.metrics[metric].accept_current()
            else:
                p.metrics[metric].hold_incident()
        elif metric == "schedule":
            if expected:
                p.cadence.accept_current()
                self._queue_cadence(p)
        elif metric == "status":
            if expected:
                p.failures.accept_current()
        elif metric.startswith("schema:"):
            if not expected:
                p.schema.restore(metric.split(":", 1)[1])
        else:
            raise KeyError(f"{pipeline_id} has no detector for {metric!r}")

    # ---------------------------------------------------------------------------------- JSON
    def to_json(self, pipeline_id: str) -> dict[str, Any]:
        p = self._p[pipeline_id]
        return {
            # (the holidays are not state: they come with the spec, which the owner configures again)
            "spec": {k: v for k, v in dataclasses.asdict(p.spec).items() if k != "holidays"},
            "metrics": {m: b.to_json() for m, b in p.metrics.items()},
            "cadence": p.cadence.to_json(),
            "failures": p.failures.to_json(),
            "schema": p.schema.to_json(),
            "running": {rid: [r.start, r.deadline, r.alarmed] for rid, r in p.running.items()},
        }

    def load_json(self, pipeline_id: str, d: dict[str, Any]) -> None:
        spec = DetectSpec(**d["spec"])
        p = self._p.get(pipeline_id)
        if p is None:
            p = _Pipeline(pipeline_id, spec)
        else:
            for r in p.running.values():
                self._retire(r)
            p.reset(spec)
        p.metrics = {m: MetricBaseline.from_json(v) for m, v in d["metrics"].items()}
        p.cache_metrics()
        if p.duration is not None and p.duration.given is None:
            p.duration.given = Coupling()  # (a state from before the coupling)
        for b in p.metrics.values():
            b.cal = p.cal
        p.cadence = CadenceDetector.from_json(d["cadence"])
        p.cadence.holidays = spec.holidays
        p.failures = FailureRate.from_json(d["failures"])
        p.schema = SchemaWatch.from_json(d["schema"])
        # (expectations are recomputed)
        p.running = {rid: _Running(v[0], v[1], v[2], run_id=rid) for rid, v in d["running"].items()}
        self._p[pipeline_id] = p
        for r in p.running.values():
            if r.deadline is not None and not r.alarmed:
                r.queued = True
                heapq.heappush(self._heap, _Timer(r.deadline, next(self._seq), p, r))
        self._queue_cadence(p)
