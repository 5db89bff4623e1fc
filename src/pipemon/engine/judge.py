"""The Judge: judges runs and the clock into health, detector verdicts and signals. Pure: no I/O, time
passed in.

For each pipeline it keeps a `PipelineHealth` (health.py) and, through the `DetectorSuite`, its learned
baselines and schedule. A finished run updates both; the clock (`on_tick`) raises what needs no event:
late and missing runs, runs running long, SLA deadlines. Every change of an open condition comes out as
a `Signal` (opened, repeated, closed): the alerts stage turns signals into alerts, one per condition.
The same code runs live (wall clock) and in replay (time following the events).
"""
from __future__ import annotations

import dataclasses
import enum
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pipemon.config import PipelineRule, Settings
from pipemon.engine.detect import DetectorSuite, DetectSpec, Finding, FindingKind, RunObservation, Verdict
from pipemon.engine.detect.cadence import overdue_since
from pipemon.engine.health import DAY, ConditionKind, HealthState, PipelineHealth, span
from pipemon.model import MANUAL_SCHEDULE, Run, RunStatus


class SignalType(enum.StrEnum):
    OPENED = "opened"
    REPEATED = "repeated"
    CLOSED = "closed"


@dataclass(frozen=True)
class Signal:
    """A condition of a pipeline opened, happened again, or cleared."""

    pipeline: str
    kind: ConditionKind
    key: str                 # the condition's key within the pipeline, e.g. "duration_anomaly:duration_s"
    type: SignalType
    at: float
    text: str
    score: float = 0.0
    run_id: str | None = None
    finding: Finding | None = None
    due: float | None = None   # late: the first unserved slot


@dataclass(frozen=True)
class Transition:
    pipeline: str
    old: HealthState
    new: HealthState
    reason: str
    at: float


@dataclass
class Outcome:
    signals: list[Signal] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)       # state, reason or conditions moved: show it now
    measured: set[str] = field(default_factory=set)      # only the metrics moved: may be shown a moment later

    def __bool__(self) -> bool:
        return bool(self.signals or self.findings or self.transitions or self.changed or self.measured)


_FINDING_KIND = {
    FindingKind.DURATION: ConditionKind.DURATION_ANOMALY,
    FindingKind.VOLUME: ConditionKind.VOLUME_ANOMALY,
    FindingKind.LATE: ConditionKind.LATE,
    FindingKind.MISSING: ConditionKind.LATE,
    FindingKind.EXTRA_RUN: ConditionKind.EXTRA_RUN,
    FindingKind.FAILURE_RATE: ConditionKind.FAILURE_RATE,
    FindingKind.RUNNING_LONG: ConditionKind.RUNNING_LONG,
    FindingKind.SCHEMA_CHANGE: ConditionKind.SCHEMA_CHANGE,
}
BACKFILL_MIN_S = 6 * 3600.0


def condition_key(f: Finding) -> tuple[ConditionKind, str]:
    kind = _FINDING_KIND[f.kind]
    if kind is ConditionKind.RUNNING_LONG:
        return kind, f.run_id or "?"
    if kind is ConditionKind.LATE:
        return kind, "schedule"
    return kind, f.metric


def spec_inputs(rule: PipelineRule | None, calendar: str | None) -> tuple:
    """What `Judge.spec_for` reads of the config (a rule's fields, the calendar from the rule or the
    team): a reload re-declares a pipeline to its detectors only when these changed."""
    fields = None if rule is None else (rule.schedule, rule.timezone, rule.grace, rule.max_duration,
                                        rule.sensitivity)
    return fields, calendar


class Judge:
    """Every pipeline's health and detectors; the health stage (writer/health.py) runs it in the writer."""

    def __init__(self, settings: Settings,
                 holidays: Callable[[str], frozenset[int]] | None = None,
                 team_of: Callable[[str], str | None] | None = None) -> None:
        self.settings = settings
        # a calendar name -> its holidays (days since 1970-01-01), built at the edge (pipemon.calendars)
        self.holidays = holidays
        self.team_of = team_of  # a pipeline's owning team (for its team's calendar), from the writer
        self.health: dict[str, PipelineHealth] = {}
        self.event_schedules: dict[str, tuple[str, str]] = {}  # pipeline -> (cron | manual, tz) sent
        self.detect = DetectorSuite()
        self._sla: list[tuple[float, int, str]] = []
        self._seq = itertools.count()

    # --- pipelines -------------------------------------------------------------------------------------
    def ensure(self, pipeline: str, first_seen: float, now: float) -> PipelineHealth:
        h = self.health.get(pipeline)
        if h is None:
            h = self.health[pipeline] = PipelineHealth(first_seen=first_seen, state_since=now)
            self.detect.configure(pipeline, self.spec_for(pipeline), now=now)
            self._queue_sla(pipeline, now)
        return h

    def reconfigure(self, settings: Settings, now: float) -> None:
        """New settings (a config reload): the SLA deadlines are queued again from the new rules."""
        self.settings = settings
        self._sla = []
        for pipeline in self.health:
            self._queue_sla(pipeline, now)

    def spec_for(self, pipeline: str) -> DetectSpec:
        """What the detectors are told: the rule's `spec_inputs`, else what the producer sent."""
        rule = self.settings.rule_for(pipeline)
        calendar = self.calendar(pipeline)
        holidays = self.holidays(calendar) if calendar and self.holidays else frozenset()
        spec = DetectSpec(calendar=calendar, holidays=holidays)
        if rule is not None:
            spec = DetectSpec(cron=rule.schedule, timezone=rule.timezone, grace_s=rule.grace,
                              max_duration_s=rule.max_duration,
                              sensitivity=rule.sensitivity or spec.sensitivity, calendar=calendar,
                              holidays=holidays)
        sent = self.event_schedules.get(pipeline)
        if sent is not None and not spec.cron:  # the config's schedule overrides the one the producer sent
            cron, tz = sent
            spec = (dataclasses.replace(spec, manual=True, from_events=True) if cron == MANUAL_SCHEDULE
                    else dataclasses.replace(spec, cron=cron, timezone=tz, from_events=True))
        return spec

    def calendar(self, pipeline: str, settings: Settings | None = None) -> str | None:
        team = self.team_of(pipeline) if self.team_of is not None else None
        return (settings or self.settings).calendar_for(pipeline, team)

    def event_schedule(self, pipeline: str, cron: str, tz: str, now: float) -> None:
        """The schedule the producer sends (Airflow's timetable: cron and time zone, or MANUAL_SCHEDULE), used
        when the config declares none for the pipeline."""
        if self.event_schedules.get(pipeline) == (cron, tz):
            return
        self.event_schedules[pipeline] = (cron, tz)
        if pipeline in self.health:
            self.detect.configure(pipeline, self.spec_for(pipeline), now=now)

    def rule(self, pipeline: str) -> PipelineRule | None:
        return self.settings.rule_for(pipeline)

    # --- runs ------------------------------------------------------------------------------------------
    def on_run(self, pipeline: str, first_seen: float, before: Run | None, after: Run, now: float,
               schemas: dict[str, tuple[tuple[str, str], ...]] | None = None,
               out: Outcome | None = None) -> Outcome:
        """A top-level run changed (tasks roll up into their run before they get here)."""
        out = out if out is not None else Outcome()
        h = self.ensure(pipeline, first_seen, now)
        was_running = before is not None and before.status is RunStatus.RUNNING
        found: list[Finding] = []
        with _Diff(self, pipeline, h, now, out):
            if after.status is RunStatus.RUNNING:
                if after.run_id not in h.running:
                    h.run_started(after)
                    if not self._is_backfill(pipeline, after):
                        found += self.detect.observe_start(pipeline, after.run_id, after.started_at, now,
                                                        after.nominal_time)
                else:
                    h.run_updated(after)
            elif before is None or was_running:
                backfill = self._is_backfill(pipeline, after)
                h.run_finished(after, backfill)
                if not backfill:
                    found += self.detect.observe_run(pipeline, RunObservation(
                        run_id=after.run_id, start=after.started_at, end=after.ended_at or after.started_at,
                        status=after.status, duration_s=after.duration, rows=after.rows,
                        bytes=after.bytes, nominal_time=after.nominal_time, schemas=schemas), now)
                    h.close_anomalies_not_in({f"{k.value}:{m}" for k, m in map(condition_key, found)})
            else:
                h.run_updated(after)  # a finished run corrected (a late START, a later terminal event)
            self._absorb(h, found)
        out.findings += found
        out.measured.add(pipeline)  # the metrics moved even when the state did not
        return out

    def _is_backfill(self, pipeline: str, run: Run) -> bool:
        """A rerun of an old date: its nominal time lies well before it ran."""
        if run.nominal_time is None:
            return False
        sched = self.detect.schedule(pipeline)
        interval = sched.interval_s if sched is not None else DAY
        return run.started_at - run.nominal_time > max(2 * interval, BACKFILL_MIN_S)

    def _absorb(self, h: PipelineHealth, findings: list[Finding]) -> None:
        for f in findings:
            if f.kind not in _FINDING_KIND:
                continue
            kind, key = condition_key(f)
            h.open(kind, key, f.time, f.explanation, f.score, f.run_id, overdue_since(f))

    # --- the clock ---------------------------------------------------------------------------------------
    def on_tick(self, now: float) -> Outcome:
        out = Outcome()
        by_pipeline: dict[str, list[Finding]] = {}
        for f in self.detect.tick(now):
            by_pipeline.setdefault(f.pipeline_id, []).append(f)
        for pipeline, found in by_pipeline.items():
            h = self.health.get(pipeline)
            if h is None:
                continue
            with _Diff(self, pipeline, h, now, out):
                self._absorb(h, found)
            out.findings += found
        while self._sla and self._sla[0][0] <= now:
            due, _, pipeline = heapq.heappop(self._sla)
            h = self.health.get(pipeline)
            if h is not None:
                with _Diff(self, pipeline, h, now, out):
                    self._check_sla(pipeline, h, due)
            self._queue_sla(pipeline, due + 1)
        return out

    def expire(self, now: float, out: Outcome) -> None:
        """Notices age out (an SLA miss, an extra run, a schema change speak for a day); run every minute."""
        for pipeline, h in self.health.items():
            if h.conditions and h.expiring(now):  # (a _Diff costs an assessment: only where one goes)
                with _Diff(self, pipeline, h, now, out):
                    h.expire(now)

    def next_due(self) -> float | None:
        dues = [d for d in (self.detect.next_due(), self._sla[0][0] if self._sla else None) if d is not None]
        return min(dues) if dues else None

    # --- SLA -----------------------------------------------------------------------------------------
    def _queue_sla(self, pipeline: str, after: float) -> None:
        rule = self.rule(pipeline)
        if rule is None or rule.sla is None:
            return
        heapq.heappush(self._sla, (_next_local_time(rule.sla, rule.timezone, after), next(self._seq),
                                   pipeline))

    def _check_sla(self, pipeline: str, h: PipelineHealth, deadline: float) -> None:
        """At the SLA time of a scheduled day: did a run for today's slot succeed?"""
        rule = self.rule(pipeline)
        assert rule is not None and rule.sla is not None
        sched = self.detect.schedule(pipeline)
        tz = ZoneInfo(rule.timezone)
        day_start = datetime.fromtimestamp(deadline, tz).replace(hour=0, minute=0, second=0, microsecond=0)
        slot = sched.prev_expected(deadline) if sched is not None else None
        if sched is not None and (slot is None or slot < day_start.timestamp()):
            return  # no run was due today before the SLA time: not a scheduled day
        since = ((slot - sched.early_tolerance()) if sched is not None and slot is not None
                 else day_start.timestamp())
        met = h.last_success is not None and h.last_success >= since
        h.record_sla(day_start.toordinal(), met)
        if not met:
            h.open(ConditionKind.SLA_MISS, day_start.date().isoformat(), deadline,
                   f"SLA {rule.sla} {rule.timezone} missed on {day_start.date().isoformat()}: "
                   f"no successful run since {span(deadline - since)} before the deadline", score=1.0)

    # --- operators -------------------------------------------------------------------------------------
    def feedback(self, pipeline: str, metric: str, verdict: Verdict, now: float, out: Outcome) -> None:
        """An operator's verdict on a finding. Expected ("new normal"): the detector re-baselines and the
        open condition on that metric closes now. Incident: the detector keeps it out of its baseline."""
        try:
            self.detect.feedback(pipeline, metric, verdict)
        except KeyError:
            raise ValueError(f"{pipeline} has no detector for {metric!r}") from None
        h = self.health.get(pipeline)
        if h is not None and verdict is Verdict.EXPECTED:
            with _Diff(self, pipeline, h, now, out):
                for k in [k for k, c in h.conditions.items() if c.kind is not ConditionKind.FAILURE
                          and (c.key == metric or (metric == "schedule" and c.kind is ConditionKind.LATE)
                               or (metric == "status" and c.kind is ConditionKind.FAILURE_RATE))]:
                    del h.conditions[k]

    def set_muted(self, pipeline: str, why: str | None, until: float | None, now: float,
                  out: Outcome) -> None:
        """A silence or maintenance window mutes the pipeline's notifications; its state stays what it is."""
        h = self.health.get(pipeline)
        if h is not None and (h.muted, h.muted_until) != (why, until):
            with _Diff(self, pipeline, h, now, out):  # re-assessed too: a state read from before may be stale
                h.muted, h.muted_until = why, until
            out.changed.add(pipeline)

    # --- views and persistence ----------------------------------------------------------------------------
    def view(self, pipeline: str, now: float) -> dict[str, Any]:
        """What the API shows of a pipeline's health (stored per change, so reads never compute)."""
        h = self.health[pipeline]
        sched = self.detect.schedule(pipeline)
        schedule = None
        if sched is not None:
            nxt = sched.next_expected(now)
            schedule = {"source": sched.source.value, "description": sched.describe(), "next_expected": nxt,
                        "deadline": sched.deadline(nxt) if nxt is not None else None}
        return {"state": h.state.value, "reason": h.reason, "state_since": h.state_since,
                "overdue_since": h.overdue_since(),
                "muted": {"reason": h.muted, "until": h.muted_until} if h.muted else None,
                "metrics": h.metrics(now), "schedule": schedule, "last_run": h.last_run,
                "conditions": [{"kind": c.kind.value, "key": k, "since": c.since, "text": c.text,
                                "score": round(c.score, 3), "run_id": c.run_id}
                               for k, c in h.conditions.items()]}

    def to_json(self, pipeline: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.health[pipeline].to_json(), self.detect.to_json(pipeline)

    def load_json(self, pipeline: str, health: dict[str, Any], detect: dict[str, Any] | None,
                  now: float) -> None:
        self.health[pipeline] = PipelineHealth.from_json(health)
        if detect:
            self.detect.load_json(pipeline, detect)
            spec = detect.get("spec") or {}
            if spec.get("from_events"):  # the schedule the producer sent survives a restart
                self.event_schedules[pipeline] = (MANUAL_SCHEDULE if spec.get("manual") else spec["cron"],
                                                  spec.get("timezone") or "UTC")
        self.detect.configure(pipeline, self.spec_for(pipeline), now=None if detect else now)
        self._queue_sla(pipeline, now)


class _Diff:
    """Around a change to one pipeline: signals for the conditions that opened, repeated or closed, and
    a transition when the state moved."""

    def __init__(self, ev: Judge, pipeline: str, h: PipelineHealth, now: float, out: Outcome) -> None:
        self.ev, self.pipeline, self.h, self.now, self.out = ev, pipeline, h, now, out

    def __enter__(self) -> None:
        self.before = {k: (c.since, c.run_id, c.text, c.due) for k, c in self.h.conditions.items()}

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            return
        h, now, out, p = self.h, self.now, self.out, self.pipeline
        after = h.conditions
        for k, c in after.items():
            prev = self.before.get(k)
            if prev is None:
                out.signals.append(Signal(p, c.kind, k, SignalType.OPENED, now, c.text, c.score, c.run_id,
                                          due=c.due))
            elif (c.run_id, c.text, c.due) != prev[1:]:
                out.signals.append(Signal(p, c.kind, k, SignalType.REPEATED, now, c.text, c.score, c.run_id,
                                          due=c.due))
        for k in self.before.keys() - after.keys():
            kind = ConditionKind(k.split(":", 1)[0])
            out.signals.append(Signal(p, kind, k, SignalType.CLOSED, now, self.before[k][2]))
        state, reason = h.assess(now)
        if state is not h.state:
            out.transitions.append(Transition(p, h.state, state, reason, now))
            h.state, h.state_since = state, now
        if reason != h.reason or self.before.keys() != after.keys():
            out.changed.add(p)
        h.reason = reason


def _next_local_time(hhmm: str, tz: str, after: float) -> float:
    """The first HH:MM in `tz` strictly after `after` (DST-safe: local dates, then zone conversion)."""
    zone = ZoneInfo(tz)
    t = dtime.fromisoformat(hhmm)
    day = datetime.fromtimestamp(after, zone).date()
    for _ in range(3):
        cand = datetime.combine(day, t, tzinfo=zone).timestamp()
        if cand > after:
            return cand
        day += timedelta(days=1)
    raise AssertionError("unreachable")  # pragma: no cover
